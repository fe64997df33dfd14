"""The music-theory rules: plain functions ``fn(view, ctx) -> (B,) float array``.

Each rule scores the *last* step of a ``MelodyView`` (history + next token) for B
melodies at once. Sign convention: a rule returns a value in its natural unit
(penalties <= 0, rewards >= 0); weights (``rlmusic.music.reward.TheoryConfig``) are
non-negative multipliers. The formulas are in docs/theory.md.

Reads in this order: rlmusic's own rules after Magenta's RL Tuner (Jaques et al. 2017),
in pitches and intervals (key, tonic start, repeats, motifs, intervals, leaps, unique
extremes, autocorrelation) -> the phrase-structure rules (bar repetition, cadence,
structure), which call ``rlmusic.music.structure``. These are *our* variants of RL
Tuner's ideas; RL Tuner's reward as Magenta computes it is ``rlmusic.music.rl_tuner_rewards``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlmusic.music.context import MelodyView, RuleContext, last_true
from rlmusic.music.representation import Vocabulary
from rlmusic.music.structure import bar_similarity_matrix, cadence_scores, structure_terms_batch

# --------------------------------------------------------------------------- RL Tuner rules


def rule_in_key(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """-1 when the next token starts a note whose pitch class is outside the key's scale."""
    out_of_key = b.new_onset & ~ctx.scale_mask[b.new_pitch % 12]
    return -out_of_key.astype(np.float64)


def rule_tonic_start(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """+1 when the next token is the melody's first note and it is the tonic (any octave)."""
    first = b.new_onset & ~b.onset[:, :-1].any(axis=1)
    return (first & (b.new_pitch % 12 == ctx.key.tonic)).astype(np.float64)


def repeat_run(b: MelodyView) -> tuple[np.ndarray, np.ndarray]:
    """For the next note: how many times in a row (ignoring rests and holds) its pitch is
    played, counting itself, and whether rests/holds lie between those repeats. (B,), (B,)."""
    new_p = b.new_pitch
    other = b.onset & (b.pitch != new_p[:, None])
    last_other = last_true(other)  # step of the last different note, -1 if none
    after = np.arange(b.L)[None, :] > last_other[:, None]
    run = (b.onset & after).sum(axis=1)
    breaks = (b.L - 1 - last_other) > run
    return np.where(b.new_onset, run, 0), breaks


def rule_non_repeating(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """-1 when the next note is the same pitch as more than ``max_repeats`` notes before it
    in a row (``max_repeats_with_breaks`` when rests or holds lie between them)."""
    run, breaks = repeat_run(b)
    limit = np.where(breaks, ctx.max_repeats_with_breaks, ctx.max_repeats)
    return -(run > limit).astype(np.float64)


def _distinct_pitches(window: np.ndarray) -> np.ndarray:
    """(B, m) pitches (-1 = none) -> (B,) number of distinct pitches."""
    s = np.sort(window, axis=1)
    new = np.ones_like(s, dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    return (new & (s >= 0)).sum(axis=1)


def rule_motif(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """The last ``motif_length`` steps form a motif when they hold >= 3 distinct pitches:
    1 + 0.1 * (distinct - 3) (RL Tuner's 3 + 0.3 * (distinct - 3), divided by 3)."""
    m = ctx.motif_length
    if b.L < m:
        return np.zeros(b.B)
    u = _distinct_pitches(b.pitch[:, -m:])
    return np.where(u >= 3, 1.0 + 0.1 * (u - 3), 0.0)


def rule_repeated_motif(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """A motif (see ``motif``) whose exact tokens already appeared, ending at least
    ``motif_length`` steps earlier: 1 + 0.25 * (distinct - 3) (RL Tuner: 4 + (distinct - 3))."""
    m = ctx.motif_length
    if b.L < 2 * m:
        return np.zeros(b.B)
    window = b.seq[:, -m:]
    u = _distinct_pitches(b.pitch[:, -m:])
    earlier = np.lib.stride_tricks.sliding_window_view(b.seq[:, : b.L - m], m, axis=1)
    seen = (earlier == window[:, None, :]).all(axis=2).any(axis=1)
    return np.where((u >= 3) & seen, 1.0 + 0.25 * (u - 3), 0.0)


def interval_values(interval: np.ndarray, both_in_triad: np.ndarray) -> np.ndarray:
    """RL Tuner's interval preferences, by absolute interval in semitones."""
    d = np.abs(interval)
    v = np.zeros(d.shape)
    v[(d >= 1) & (d <= 2)] = 0.08  # seconds
    v[(d >= 3) & (d <= 4)] = 0.09  # thirds
    v[(d >= 3) & (d <= 4) & both_in_triad] = 0.15  # thirds within the tonic triad
    v[d == 5] = 0.07  # fourth
    v[d == 7] = 0.02  # fifth
    v[(d == 7) & both_in_triad] = 0.10  # tonic-dominant fifth
    v[(d >= 8) & (d <= 9)] = 0.05  # sixths
    v[(d >= 10) & (d <= 11)] = -0.3  # sevenths
    v[d > 12] = -1.0  # leaps over an octave
    return v  # unison, tritone and octave: 0


def rule_preferred_intervals(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """Interval from the previous note (rests skipped) to the next note, scored by
    ``interval_values``; 0.05 for the first rest after a note (RL Tuner: "rests can be good")."""
    prev = b.note_back(2)  # the new note is note_back(1) when it is an onset
    new_p = b.new_pitch
    has = b.new_onset & (prev >= 0)
    triad = ctx.triad_mask
    both = triad[new_p % 12] & triad[prev % 12]
    v = np.where(has, interval_values(new_p - prev, both), 0.0)
    if b.L >= 2:
        first_rest = (b.seq[:, -1] == Vocabulary.REST) & b.sounding[:, -2]
        v = np.where(first_rest, 0.05, v)
    return v


def leap_outcome(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, ctx: RuleContext) -> np.ndarray:
    """Three consecutive notes (-1 = none) -> +1 when the interval p0->p1 is a leap resolved
    by p1->p2 (opposite direction, 1..step_back_max semitones), -1 when p1->p2 is a second
    leap in the same direction, 0 otherwise."""
    valid = (p0 >= 0) & (p1 >= 0) & (p2 >= 0)
    d1, d2 = p1 - p0, p2 - p1
    leap1 = np.abs(d1) >= ctx.leap
    resolved = leap1 & (np.sign(d2) == -np.sign(d1)) & (np.abs(d2) <= ctx.step_back_max)
    doubled = leap1 & (np.abs(d2) >= ctx.leap) & (np.sign(d2) == np.sign(d1))
    return np.where(valid, resolved.astype(np.float64) - doubled.astype(np.float64), 0.0)


def rule_leap_up_back(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """+1 when the next note resolves a leap (see ``leap_outcome``), -1 when it leaps again
    in the same direction."""
    out = leap_outcome(b.note_back(3), b.note_back(2), b.note_back(1), ctx)
    return np.where(b.new_onset, out, 0.0)


def unique_extremes(b: MelodyView) -> tuple[np.ndarray, np.ndarray]:
    """(B,) bools: the highest / lowest pitch is played (as an onset) exactly once."""
    p, on = b.pitch, b.onset
    any_note = on.any(axis=1)
    hi = np.where(on, p, -1).max(axis=1)
    lo = np.where(on, p, 10**6).min(axis=1)
    hi_u = (on & (p == hi[:, None])).sum(axis=1) == 1
    lo_u = (on & (p == lo[:, None])).sum(axis=1) == 1
    return hi_u & any_note, lo_u & any_note


def rule_high_low_unique(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """At the melody's last step (``ctx.steps``): +1 if its highest note is unique, +1 if
    its lowest note is unique."""
    if ctx.steps is None or b.L != ctx.steps:
        return np.zeros(b.B)
    hi_u, lo_u = unique_extremes(b)
    return hi_u.astype(np.float64) + lo_u.astype(np.float64)


def note_autocorrelation(b: MelodyView, lags: Sequence[int]) -> np.ndarray:
    """(B, len(lags)) autocorrelation of each melody's note-pitch sequence (rests and holds
    skipped): r(lag) = sum_i x_i x_{i+lag} / (n var), x = pitch - mean. 0 where undefined."""
    n, k = b.notes
    valid = n >= 0
    kf = np.maximum(k, 1).astype(np.float64)
    mean = np.where(valid, n, 0).sum(axis=1) / kf
    x = np.where(valid, n - mean[:, None], 0.0)
    c0 = (x * x).sum(axis=1) / kf
    out = np.zeros((b.B, len(lags)))
    for j, lag in enumerate(lags):
        if lag >= b.L:
            continue
        s = (x[:, lag:] * x[:, :-lag]).sum(axis=1)
        ok = (c0 > 1e-12) & (k > lag + 1)
        out[:, j] = np.where(ok, s / kf / np.where(ok, c0, 1.0), 0.0)
    return out


def rule_autocorrelation(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """-sum over lags of |r(lag)| where |r(lag)| > threshold (the whole melody so far)."""
    r = np.abs(note_autocorrelation(b, ctx.lags))
    return -np.where(r > ctx.autocorrelation_threshold, r, 0.0).sum(axis=1)


# --------------------------------------------------------------------------- phrase-structure rules


def rule_bar_repetition(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """At the last step of each bar after the first: the bar's best similarity to an
    earlier bar (``bar_similarity_matrix``), in [0, 1]."""

    spb = ctx.steps_per_bar
    if b.L % spb or b.L < 2 * spb:
        return np.zeros(b.B)
    sim = bar_similarity_matrix(b.seq, b.pitch, b.sounding, spb)
    return sim[:, -1, :-1].max(axis=1)


def rule_cadence(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """At the last step of each phrase (``phrase_bars`` bars; the melody length ``ctx.steps``
    picks the default): the phrase's cadence score (``cadence_scores``), in [0, 1]."""

    span = ctx.steps_per_bar * ctx.phrase_bars_for(ctx.steps or b.L)
    if b.L % span:
        return np.zeros(b.B)
    return cadence_scores(b, ctx, b.L)


def rule_structure(b: MelodyView, ctx: RuleContext) -> np.ndarray:
    """At the melody's last step (``ctx.steps``): its structure score in [0, 1]."""

    if ctx.steps is None or b.L != ctx.steps:
        return np.zeros(b.B)
    return structure_terms_batch(b, ctx)["structure"]
