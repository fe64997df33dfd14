"""Music-theory rules: per-step rewards and the RL Tuner per-melody metrics.

Reads in this order: keys and modes -> the rule context -> the batched melody view ->
the rules of Magenta's RL Tuner (Jaques et al. 2017) -> phrase-structure rules ->
the registry and ``RewardConfig`` -> the batched reward (``step_rewards``) -> the
per-melody metrics (``music_theory_metrics``) -> names kept importable from here.

Every rule is written in pitches and intervals, decoded with the ``Vocabulary``;
token numbers appear only through ``Vocabulary.REST`` / ``Vocabulary.HOLD``. A rule is
a plain function ``fn(batch, ctx) -> (B,) float array`` that scores the *last* step
of ``batch`` (history + next token) for B melodies at once; ``Rule.step(history,
next_token, ctx)`` is the one-melody form. The formulas are in docs/theory.md.

Sign convention: a rule returns a value in its natural unit (penalties <= 0, rewards
>= 0); ``RewardConfig`` weights are non-negative multipliers, so a weight can switch
a rule off or scale it but never turn a penalty into a reward.

Elsewhere, and still importable from here: phrase-structure scoring
(``structure_scores``, ``structure_terms``, ...) in ``rlmusic.structure``; novelty,
copying and diversity (``NgramIndex``, ``originality_scores``, ``batch_diversity``,
...) in ``rlmusic.originality``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rlmusic.originality import (  # noqa: F401  (moved there; re-exported, see __all__)
    INTERVAL_CLIP,
    MAX_NGRAM,
    NgramIndex,
    batch_diversity,
    corpus_index,
    interval_ngrams,
    note_pitches,
    originality_scores,
)
from rlmusic.representation import DEFAULT_VOCAB, Vocabulary

# --------------------------------------------------------------------------- keys and modes


# Scale of each mode as semitones above the tonic (data, not code).
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),  # natural minor (aeolian)
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
PITCH_CLASSES: dict[str, int] = {
    "C": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "F": 5, "F#": 6,
    "GB": 6, "G": 7, "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11,
}


@dataclass(frozen=True)
class Key:
    """A tonic pitch class (0 = C .. 11 = B) and a mode (a name in ``MODES``)."""

    tonic: int = 0
    mode: str = "major"

    def __post_init__(self) -> None:
        if not (isinstance(self.tonic, int) and 0 <= self.tonic <= 11):
            raise ValueError(f"tonic must be a pitch class 0..11, got {self.tonic!r}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid: {sorted(MODES)}")

    @classmethod
    def parse(cls, text: str | Key) -> Key:
        """``"C major"``, ``"A minor"``, ``"F# dorian"``, ``"Bb mixolydian"`` -> Key."""
        if isinstance(text, Key):
            return text
        parts = str(text).split()
        if len(parts) != 2 or parts[0].upper().replace("-", "B") not in PITCH_CLASSES:
            raise ValueError(
                f"key must be '<tonic> <mode>' like 'C major' or 'A minor', got {text!r}; "
                f"modes: {sorted(MODES)}"
            )
        return cls(PITCH_CLASSES[parts[0].upper().replace("-", "B")], parts[1].lower())

    @property
    def scale(self) -> tuple[int, ...]:
        """Pitch classes of the scale, tonic first."""
        return tuple((self.tonic + i) % 12 for i in MODES[self.mode])

    @property
    def triad(self) -> tuple[int, int, int]:
        """Pitch classes of the tonic triad: degrees 1, 3, 5 of the scale."""
        s = self.scale
        return s[0], s[2], s[4]

    def __str__(self) -> str:
        names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
        return f"{names[self.tonic]} {self.mode}"


C_MAJOR = Key(0, "major")
A_MINOR = Key(9, "minor")


# --------------------------------------------------------------------------- rule context


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule needs besides the tokens. Build with ``RewardConfig.context``."""

    vocab: Vocabulary = DEFAULT_VOCAB  # decodes tokens to pitches
    key: Key = C_MAJOR  # key of the melody (in_key, tonic_start, cadences)
    steps: int | None = None  # melody length; rules of the last step fire only when known
    motif_length: int = 8  # steps of a motif window (RL Tuner's bar_length)
    max_repeats: int = 4  # same note more than this many times in a row is penalised
    max_repeats_with_breaks: int = 6  # ... when rests/holds lie between the repeats
    leap: int = 7  # an interval of at least this many semitones is a leap
    step_back_max: int = 4  # a leap resolves by an opposite move of 1..this many semitones
    autocorrelation_threshold: float = 0.15  # |r| above this is penalised (RL Tuner: 0.15)
    lags: tuple[int, ...] = (1, 2, 3)  # autocorrelation lags penalised
    steps_per_bar: int = 16  # 4/4 on the 16th grid
    phrase_bars: int | None = None  # bars per phrase; None: 2 up to 64 steps, else 4

    def __post_init__(self) -> None:
        for name in ("motif_length", "max_repeats", "max_repeats_with_breaks", "leap",
                     "step_back_max", "steps_per_bar"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 or None, got {self.steps}")
        if self.phrase_bars is not None and self.phrase_bars < 1:
            raise ValueError(f"phrase_bars must be >= 1 or None, got {self.phrase_bars}")
        if any(lag < 1 for lag in self.lags):
            raise ValueError(f"lags must be >= 1, got {self.lags}")

    def phrase_bars_for(self, steps: int) -> int:
        if self.phrase_bars is not None:
            return self.phrase_bars
        return 2 if steps <= 4 * self.steps_per_bar else 4

    @cached_property
    def scale_mask(self) -> np.ndarray:
        """(12,) bool: pitch class in the scale."""
        m = np.zeros(12, dtype=bool)
        m[list(self.key.scale)] = True
        return m

    @cached_property
    def triad_mask(self) -> np.ndarray:
        m = np.zeros(12, dtype=bool)
        m[list(self.key.triad)] = True
        return m


# --------------------------------------------------------------------------- batched view


def _last_true(mask: np.ndarray) -> np.ndarray:
    """(B, L) bool -> (B,) index of the last True per row, -1 when none."""
    if mask.shape[1] == 0:
        return np.full(mask.shape[0], -1, dtype=np.int64)
    rev = mask[:, ::-1]
    idx = mask.shape[1] - 1 - rev.argmax(axis=1)
    return np.where(rev.any(axis=1), idx, -1)


class MelodyBatch:
    """B melodies of equal length L (history + next token); derived views computed once.

    The last step (index L-1) is the step being scored.
    """

    def __init__(self, seq: np.ndarray, ctx: RuleContext):
        seq = np.asarray(seq, dtype=np.int64)
        if seq.ndim != 2:
            raise ValueError(f"melodies must have shape (B, L), got {seq.shape}")
        if seq.size and (seq.min() < 0 or seq.max() >= ctx.vocab.size):
            bad = seq[(seq < 0) | (seq >= ctx.vocab.size)][0]
            raise ValueError(f"token {int(bad)} is outside the vocabulary (0..{ctx.vocab.size - 1})")
        self.seq = seq
        self.ctx = ctx
        self.B, self.L = seq.shape

    @cached_property
    def pitch(self) -> np.ndarray:
        """(B, L) MIDI pitch at note onsets, -1 elsewhere."""
        return self.ctx.vocab.pitches(self.seq)

    @cached_property
    def onset(self) -> np.ndarray:
        return self.pitch >= 0

    @property
    def new_pitch(self) -> np.ndarray:
        return self.pitch[:, -1]

    @property
    def new_onset(self) -> np.ndarray:
        return self.onset[:, -1]

    @cached_property
    def notes(self) -> tuple[np.ndarray, np.ndarray]:
        """Left-aligned note pitches (B, L) padded with -1, and note counts (B,)."""
        order = np.argsort(~self.onset, axis=1, kind="stable")
        return np.take_along_axis(self.pitch, order, axis=1), self.onset.sum(axis=1)

    def note_back(self, j: int) -> np.ndarray:
        """(B,) pitch of the j-th last note (j=1: the last), -1 when there is none."""
        n, k = self.notes
        idx = k - j
        vals = np.take_along_axis(n, np.clip(idx, 0, None)[:, None], axis=1)[:, 0]
        return np.where(idx >= 0, vals, -1)

    @cached_property
    def sounding(self) -> np.ndarray:
        """(B, L) bool: a note sounds (onset, or HOLD continuing a note)."""
        not_hold = self.seq != Vocabulary.HOLD
        idx = np.where(not_hold, np.arange(self.L), -1)
        last = np.maximum.accumulate(idx, axis=1)
        src = np.take_along_axis(self.onset, np.clip(last, 0, None), axis=1)
        return src & (last >= 0)


# --------------------------------------------------------------------------- RL Tuner rules


def rule_in_key(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
    """-1 when the next token starts a note whose pitch class is outside the key's scale."""
    out_of_key = b.new_onset & ~ctx.scale_mask[b.new_pitch % 12]
    return -out_of_key.astype(np.float64)


def rule_tonic_start(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
    """+1 when the next token is the melody's first note and it is the tonic (any octave)."""
    first = b.new_onset & ~b.onset[:, :-1].any(axis=1)
    return (first & (b.new_pitch % 12 == ctx.key.tonic)).astype(np.float64)


def repeat_run(b: MelodyBatch) -> tuple[np.ndarray, np.ndarray]:
    """For the next note: how many times in a row (ignoring rests and holds) its pitch is
    played, counting itself, and whether rests/holds lie between those repeats. (B,), (B,)."""
    new_p = b.new_pitch
    other = b.onset & (b.pitch != new_p[:, None])
    last_other = _last_true(other)  # step of the last different note, -1 if none
    after = np.arange(b.L)[None, :] > last_other[:, None]
    run = (b.onset & after).sum(axis=1)
    breaks = (b.L - 1 - last_other) > run
    return np.where(b.new_onset, run, 0), breaks


def rule_non_repeating(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
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


def rule_motif(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
    """The last ``motif_length`` steps form a motif when they hold >= 3 distinct pitches:
    1 + 0.1 * (distinct - 3) (RL Tuner's 3 + 0.3 * (distinct - 3), divided by 3)."""
    m = ctx.motif_length
    if b.L < m:
        return np.zeros(b.B)
    u = _distinct_pitches(b.pitch[:, -m:])
    return np.where(u >= 3, 1.0 + 0.1 * (u - 3), 0.0)


def rule_repeated_motif(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
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


def rule_preferred_intervals(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
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


def rule_leap_up_back(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
    """+1 when the next note resolves a leap (see ``leap_outcome``), -1 when it leaps again
    in the same direction."""
    out = leap_outcome(b.note_back(3), b.note_back(2), b.note_back(1), ctx)
    return np.where(b.new_onset, out, 0.0)


def unique_extremes(b: MelodyBatch) -> tuple[np.ndarray, np.ndarray]:
    """(B,) bools: the highest / lowest pitch is played (as an onset) exactly once."""
    p, on = b.pitch, b.onset
    any_note = on.any(axis=1)
    hi = np.where(on, p, -1).max(axis=1)
    lo = np.where(on, p, 10**6).min(axis=1)
    hi_u = (on & (p == hi[:, None])).sum(axis=1) == 1
    lo_u = (on & (p == lo[:, None])).sum(axis=1) == 1
    return hi_u & any_note, lo_u & any_note


def rule_high_low_unique(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
    """At the melody's last step (``ctx.steps``): +1 if its highest note is unique, +1 if
    its lowest note is unique."""
    if ctx.steps is None or b.L != ctx.steps:
        return np.zeros(b.B)
    hi_u, lo_u = unique_extremes(b)
    return hi_u.astype(np.float64) + lo_u.astype(np.float64)


def note_autocorrelation(b: MelodyBatch, lags: Sequence[int]) -> np.ndarray:
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


def rule_autocorrelation(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
    """-sum over lags of |r(lag)| where |r(lag)| > threshold (the whole melody so far)."""
    r = np.abs(note_autocorrelation(b, ctx.lags))
    return -np.where(r > ctx.autocorrelation_threshold, r, 0.0).sum(axis=1)


# --------------------------------------------------------------------------- phrase-structure rules
# The scoring lives in rlmusic/structure.py, which imports this module; these rules
# import it when they first run, so either module can be imported first.


def rule_bar_repetition(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
    """At the last step of each bar after the first: the bar's best similarity to an
    earlier bar (``bar_similarity_matrix``), in [0, 1]."""
    from rlmusic.structure import bar_similarity_matrix

    spb = ctx.steps_per_bar
    if b.L % spb or b.L < 2 * spb:
        return np.zeros(b.B)
    sim = bar_similarity_matrix(b.seq, b.pitch, b.sounding, spb)
    return sim[:, -1, :-1].max(axis=1)


def rule_cadence(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
    """At the last step of each phrase (``phrase_bars`` bars; the melody length ``ctx.steps``
    picks the default): the phrase's cadence score (``cadence_scores``), in [0, 1]."""
    from rlmusic.structure import cadence_scores

    span = ctx.steps_per_bar * ctx.phrase_bars_for(ctx.steps or b.L)
    if b.L % span:
        return np.zeros(b.B)
    return cadence_scores(b, ctx, b.L)


def rule_structure(b: MelodyBatch, ctx: RuleContext) -> np.ndarray:
    """At the melody's last step (``ctx.steps``): its structure score in [0, 1]."""
    from rlmusic.structure import structure_terms_batch

    if ctx.steps is None or b.L != ctx.steps:
        return np.zeros(b.B)
    return structure_terms_batch(b, ctx)["structure"]


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Rule:
    """A named rule: ``fn(batch, ctx) -> (B,)`` scores the last step of each melody."""

    name: str
    fn: Callable[[MelodyBatch, RuleContext], np.ndarray]
    default_weight: float  # RL Tuner's amount for its rules; 0 (off) for structure rules
    summary: str

    def step(self, history: Sequence[int], next_token: int, ctx: RuleContext | None = None) -> float:
        """Reward of ``next_token`` after ``history`` (one melody)."""
        ctx = ctx or RuleContext()
        seq = np.asarray([*list(np.asarray(history).tolist()), int(next_token)], dtype=np.int64)
        return float(self.fn(MelodyBatch(seq[None, :], ctx), ctx)[0])

    def melody(self, tokens: Sequence[int], ctx: RuleContext | None = None) -> np.ndarray:
        """(T,) this rule's reward at every step of one melody."""
        ctx = ctx or RuleContext()
        arr = np.asarray(tokens, dtype=np.int64)
        return melody_step_terms(arr[None, :], ctx, rules=[self.name])[self.name][0]


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("in_key", rule_in_key, 1.0, "-1 per note outside the key (RL Tuner reward_key)"),
        Rule("tonic_start", rule_tonic_start, 3.0, "+1 when the first note is the tonic"),
        Rule("non_repeating", rule_non_repeating, 100.0, "-1 per note repeated too often in a row"),
        Rule("motif", rule_motif, 3.0, "+1 (+0.1 per extra pitch) when the last 8 steps form a motif"),
        Rule("repeated_motif", rule_repeated_motif, 4.0, "+1 (+0.25 per extra pitch) for a motif heard before"),
        Rule("preferred_intervals", rule_preferred_intervals, 5.0, "small steps and consonant leaps good, sevenths and > octave bad"),
        Rule("leap_up_back", rule_leap_up_back, 5.0, "+1 leap resolved by a step back, -1 two leaps one way"),
        Rule("high_low_unique", rule_high_low_unique, 3.0, "last step: +1 unique highest, +1 unique lowest note"),
        Rule("autocorrelation", rule_autocorrelation, 3.0, "-sum |r(lag)| over lags 1-3 above 0.15"),
        Rule("bar_repetition", rule_bar_repetition, 0.0, "bar end: best similarity to an earlier bar"),
        Rule("cadence", rule_cadence, 0.0, "phrase end: stable degree and long note"),
        Rule("structure", rule_structure, 0.0, "last step: structure score in [0, 1]"),
    )
}
RL_TUNER_RULES = ("in_key", "tonic_start", "non_repeating", "motif", "repeated_motif",
                  "preferred_intervals", "leap_up_back", "high_low_unique", "autocorrelation")


def get_rule(name: str) -> Rule:
    """The rule called ``name``; raises ``ValueError`` listing the valid names."""
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown theory rule {name!r}; valid: {', '.join(RULES)}") from None


def _check_rules(names: Sequence[str]) -> list[str]:
    return [get_rule(n).name for n in names]


# --------------------------------------------------------------------------- reward config


@dataclass
class RewardConfig:
    """Weights of the theory rules and the settings the rules read.

    A TOML table gives any subset of the fields below and of the rule names (weights)::

        [theory]
        key = "A minor"
        motif = 0.0          # switch a rule off
        preferred_intervals = 2.5
    """

    weights: dict[str, float] = field(default_factory=lambda: {n: r.default_weight for n, r in RULES.items()})  # rule name -> weight >= 0
    key: str = "C major"  # "<tonic> <mode>", mode in MODES
    motif_length: int = 8  # steps of a motif window
    max_repeats: int = 4  # see RuleContext
    max_repeats_with_breaks: int = 6  # see RuleContext
    leap: int = 7  # semitones of a leap
    step_back_max: int = 4  # semitones of the step that resolves a leap
    phrase_bars: int | None = None  # bars per phrase (None: 2 up to 64 steps, else 4)

    def __post_init__(self) -> None:
        full = {n: r.default_weight for n, r in RULES.items()}
        for name, w in self.weights.items():
            get_rule(name)
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w):
                raise ValueError(f"weight of rule {name!r} must be a finite number, got {w!r}")
            if w < 0:
                raise ValueError(
                    f"weight of rule {name!r} must be >= 0 (rules carry their own sign), got {w}"
                )
            full[name] = float(w)
        self.weights = full
        self._key = Key.parse(self.key)
        self.context()  # validates the settings

    @classmethod
    def valid_keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "weights"] + list(RULES)

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> RewardConfig:
        """Flat mapping of settings and rule weights (``{"key": "A minor", "motif": 0.5}``);
        a nested ``weights`` table is accepted too. Unknown keys raise listing the valid ones."""
        table = dict(table)
        weights = dict(table.pop("weights", {}) or {})
        settings = {f.name for f in fields(cls)} - {"weights"}
        kwargs: dict[str, Any] = {}
        for k, v in table.items():
            if k in settings:
                kwargs[k] = v
            elif k in RULES:
                weights[k] = v
            else:
                raise ValueError(f"unknown theory config key {k!r}; valid: {', '.join(cls.valid_keys())}")
        return cls(weights=weights, **kwargs)

    @classmethod
    def from_toml(cls, path: str | Path, table: str | None = "theory") -> RewardConfig:
        """Read ``[theory]`` (or the dotted ``table``, e.g. ``"reward.theory"``; None: the
        whole file) from a TOML file. A file without the table gives the defaults."""
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        data: Any = tomllib.loads(Path(path).read_text())
        for part in (table.split(".") if table else []):
            data = data.get(part, {})
            if not isinstance(data, dict):
                raise ValueError(f"{path}: [{table}] must be a table, got {type(data).__name__}")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "weights"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.weights}

    def context(self, vocab: Vocabulary = DEFAULT_VOCAB, steps: int | None = None) -> RuleContext:
        """The ``RuleContext`` these settings describe, for melodies of ``steps`` tokens."""
        return RuleContext(
            vocab=vocab, key=Key.parse(self.key), steps=steps, motif_length=self.motif_length,
            max_repeats=self.max_repeats, max_repeats_with_breaks=self.max_repeats_with_breaks,
            leap=self.leap, step_back_max=self.step_back_max, phrase_bars=self.phrase_bars,
        )

    def active(self) -> list[str]:
        return [n for n, w in self.weights.items() if w != 0]


# --------------------------------------------------------------------------- batched reward


def _batch(histories: np.ndarray, next_tokens: np.ndarray, ctx: RuleContext) -> MelodyBatch:
    h = np.asarray(histories, dtype=np.int64)
    n = np.asarray(next_tokens, dtype=np.int64).reshape(-1)
    if h.ndim == 1 and h.size == 0:
        h = h.reshape(len(n), 0)
    if h.ndim != 2 or h.shape[0] != n.shape[0]:
        raise ValueError(f"histories must be (B, t) with B = len(next_tokens) = {n.shape[0]}, got {h.shape}")
    return MelodyBatch(np.concatenate([h, n[:, None]], axis=1), ctx)


def step_reward_terms(
    histories: np.ndarray,
    next_tokens: np.ndarray,
    config: RewardConfig | None = None,
    *,
    vocab: Vocabulary = DEFAULT_VOCAB,
    steps: int | None = None,
    ctx: RuleContext | None = None,
    rules: Sequence[str] | None = None,
    weighted: bool = False,
) -> dict[str, np.ndarray]:
    """Per-rule reward of ``next_tokens`` (B,) after ``histories`` (B, t): name -> (B,).

    ``rules``: which rules (default: those with a non-zero weight in ``config``);
    ``weighted``: multiply by the config's weights; ``steps``: the melody length, which
    the last-step rules (``high_low_unique``, ``structure``) need.
    """
    config = config or RewardConfig()
    ctx = ctx or config.context(vocab, steps)
    names = config.active() if rules is None else _check_rules(rules)
    b = _batch(histories, next_tokens, ctx)
    out = {}
    for name in names:
        v = RULES[name].fn(b, ctx)
        out[name] = v * config.weights[name] if weighted else v
    return out


def step_rewards(
    histories: np.ndarray,
    next_tokens: np.ndarray,
    config: RewardConfig | None = None,
    *,
    vocab: Vocabulary = DEFAULT_VOCAB,
    steps: int | None = None,
    ctx: RuleContext | None = None,
) -> np.ndarray:
    """Weighted sum of the rules for ``next_tokens`` (B,) after ``histories`` (B, t) -> (B,)."""
    terms = step_reward_terms(histories, next_tokens, config, vocab=vocab, steps=steps,
                              ctx=ctx, weighted=True)
    total = np.zeros(np.asarray(next_tokens).reshape(-1).shape[0])
    for v in terms.values():
        total += v
    return total


def melody_step_terms(
    tokens: np.ndarray, ctx: RuleContext | None = None, rules: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Each rule's reward at every step of whole melodies: (N, T) -> name -> (N, T)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (N, T), got {tokens.shape}")
    N, T = tokens.shape
    ctx = ctx or RuleContext()
    if ctx.steps is None:
        ctx = replace(ctx, steps=T)
    names = list(RULES) if rules is None else _check_rules(rules)
    out = {n: np.zeros((N, T)) for n in names}
    for t in range(T):
        b = MelodyBatch(tokens[:, : t + 1], ctx)
        for n in names:
            out[n][:, t] = RULES[n].fn(b, ctx)
    return out


# --------------------------------------------------------------------------- per-melody metrics


def leap_counts(tokens: np.ndarray, ctx: RuleContext) -> tuple[np.ndarray, np.ndarray]:
    """(N,) leaps that could be resolved (not into the last note) and (N,) resolved ones."""
    b = MelodyBatch(np.atleast_2d(tokens), ctx)
    n, k = b.notes
    if b.L < 3:
        return np.zeros(b.B, int), np.zeros(b.B, int)
    p0, p1, p2 = n[:, :-2], n[:, 1:-1], n[:, 2:]
    valid = p2 >= 0  # the leap p0->p1 has a following note
    leaps = valid & (p0 >= 0) & (np.abs(p1 - p0) >= ctx.leap)
    resolved = leap_outcome(np.where(valid, p0, -1), p1, p2, ctx) > 0
    return leaps.sum(axis=1), resolved.sum(axis=1)


def music_theory_metrics(tokens: np.ndarray, ctx: RuleContext | None = None) -> dict[str, float]:
    """RL Tuner's evaluation metrics over N melodies (N, T), pooled (see docs/theory.md).

    Shares of notes (note onsets, pooled over all melodies): ``notes_excessively_repeated``,
    ``notes_not_in_key``, ``notes_in_motif``, ``notes_in_repeated_motif``; shares of
    melodies: ``starts_with_tonic``, ``unique_max_note``, ``unique_min_note``;
    ``leaps_resolved`` (resolved / leaps, 1.0 when there is no leap);
    ``autocorrelation_lag{1,2,3}`` (mean signed autocorrelation of the note sequence).
    """
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    ctx = ctx or RuleContext()
    if ctx.steps is None:
        ctx = replace(ctx, steps=tokens.shape[1])
    terms = melody_step_terms(
        tokens, ctx, rules=["in_key", "tonic_start", "non_repeating", "motif", "repeated_motif"]
    )
    b = MelodyBatch(tokens, ctx)
    onset = b.onset
    n_notes = max(int(onset.sum()), 1)

    def share(name: str, sign: float) -> float:
        return float(((terms[name] * sign > 0) & onset).sum() / n_notes)

    leaps, resolved = leap_counts(tokens, ctx)
    hi_u, lo_u = unique_extremes(b)
    ac = note_autocorrelation(b, ctx.lags)
    out = {
        "notes_excessively_repeated": share("non_repeating", -1),
        "notes_not_in_key": share("in_key", -1),
        "starts_with_tonic": float((terms["tonic_start"] > 0).any(axis=1).mean()),
        "leaps_resolved": float(resolved.sum() / leaps.sum()) if leaps.sum() else 1.0,
        "unique_max_note": float(hi_u.mean()),
        "unique_min_note": float(lo_u.mean()),
        "notes_in_motif": share("motif", 1),
        "notes_in_repeated_motif": share("repeated_motif", 1),
    }
    for j, lag in enumerate(ctx.lags):
        out[f"autocorrelation_lag{lag}"] = float(ac[:, j].mean())
    return out


# --------------------------------------------------------------------------- names kept importable from here


# rlmusic.structure imports this module, so its names are looked up on first use.
_STRUCTURE_NAMES = ("bar_similarity_matrix", "cadence_scores", "structure_terms_batch",
                    "structure_terms", "structure_scores", "structure_score")


def __getattr__(name: str) -> Any:
    if name in _STRUCTURE_NAMES:
        from rlmusic import structure

        return getattr(structure, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_STRUCTURE_NAMES})


__all__ = [
    # keys and context
    "MODES", "PITCH_CLASSES", "Key", "C_MAJOR", "A_MINOR", "RuleContext", "MelodyBatch",
    # rules and their helpers
    "rule_in_key", "rule_tonic_start", "repeat_run", "rule_non_repeating", "rule_motif",
    "rule_repeated_motif", "interval_values", "rule_preferred_intervals", "leap_outcome",
    "rule_leap_up_back", "unique_extremes", "rule_high_low_unique", "note_autocorrelation",
    "rule_autocorrelation", "rule_bar_repetition", "rule_cadence", "rule_structure",
    # registry, config, rewards, metrics
    "Rule", "RULES", "RL_TUNER_RULES", "get_rule", "RewardConfig", "step_reward_terms",
    "step_rewards", "melody_step_terms", "leap_counts", "music_theory_metrics",
    # rlmusic.structure
    *_STRUCTURE_NAMES,
    # rlmusic.originality
    "INTERVAL_CLIP", "MAX_NGRAM", "note_pitches", "interval_ngrams", "NgramIndex",
    "corpus_index", "batch_diversity", "originality_scores",
]
