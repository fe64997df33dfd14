"""Per-melody figures of rlmusic's own rules: our variants of RL Tuner's metrics.

``music_theory_metrics`` pools over N melodies the share of notes each of our rules
fires on (see docs/theory.md); ``melody_scores`` gives the cheap per-melody scores a
generated clip carries in its manifest. RL Tuner's metrics as Magenta computes them
are ``rlmusic.music.rl_tuner_metrics``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from rlmusic.music.context import MelodyView, RuleContext
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary
from rlmusic.music.reward import melody_step_terms
from rlmusic.music.rules import leap_outcome, note_autocorrelation, unique_extremes
from rlmusic.music.structure import structure_scores

# --------------------------------------------------------------------------- per-melody metrics


def leap_counts(tokens: np.ndarray, ctx: RuleContext) -> tuple[np.ndarray, np.ndarray]:
    """(N,) leaps that could be resolved (not into the last note) and (N,) resolved ones."""
    b = MelodyView(np.atleast_2d(tokens), ctx)
    n, k = b.notes
    if b.L < 3:
        return np.zeros(b.B, int), np.zeros(b.B, int)
    p0, p1, p2 = n[:, :-2], n[:, 1:-1], n[:, 2:]
    valid = p2 >= 0  # the leap p0->p1 has a following note
    leaps = valid & (p0 >= 0) & (np.abs(p1 - p0) >= ctx.leap)
    resolved = leap_outcome(np.where(valid, p0, -1), p1, p2, ctx) > 0
    return leaps.sum(axis=1), resolved.sum(axis=1)


ONSET_SHARES = {  # metric -> (rule of melody_step_terms, sign of a firing)
    "onsets_excessively_repeated": ("non_repeating", -1), "onsets_not_in_key": ("in_key", -1),
    "onsets_in_motif": ("motif", 1), "onsets_in_repeated_motif": ("repeated_motif", 1),
}


def music_theory_parts(tokens: np.ndarray, ctx: RuleContext | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per melody, the numerator and denominator (N,) of each ``music_theory_metrics`` figure:
    the figure is ``numerator.sum() / denominator.sum()`` (pooled), with the empty cases of
    ``music_theory_metrics`` (0.0 for onset shares, 1.0 for leaps without leaps). Onset shares:
    (firings on onsets, onsets); leaps: (resolved, leaps); per-melody figures: (value, 1)."""
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    ctx = ctx or RuleContext()
    if ctx.steps is None:
        ctx = replace(ctx, steps=tokens.shape[1])
    terms = melody_step_terms(
        tokens, ctx, rules=["in_key", "tonic_start", "non_repeating", "motif", "repeated_motif"]
    )
    b = MelodyView(tokens, ctx)
    onset = b.onset
    n_onsets = onset.sum(axis=1)
    one = np.ones(len(tokens))
    out = {name: (((terms[rule] * sign > 0) & onset).sum(axis=1), n_onsets)
           for name, (rule, sign) in ONSET_SHARES.items()}
    leaps, resolved = leap_counts(tokens, ctx)
    hi_u, lo_u = unique_extremes(b)
    ac = note_autocorrelation(b, ctx.lags)
    out["starts_with_tonic_pitch_class"] = ((terms["tonic_start"] > 0).any(axis=1).astype(np.float64), one)
    out["leaps_resolved_by_next_note"] = (resolved, leaps)
    out["unique_highest_note"] = (hi_u.astype(np.float64), one)
    out["unique_lowest_note"] = (lo_u.astype(np.float64), one)
    for j, lag in enumerate(ctx.lags):
        out[f"note_autocorrelation_lag{lag}"] = (ac[:, j], one)
    return out


def music_theory_metrics(tokens: np.ndarray, ctx: RuleContext | None = None) -> dict[str, float]:
    """rlmusic's own variants of RL Tuner's metrics over N melodies (N, T), pooled; RL
    Tuner's metrics as Magenta computes them are ``rlmusic.music.rl_tuner_metrics``.

    Shares of note onsets (pooled over all melodies, rules of ``rlmusic.music.rules``):
    ``onsets_excessively_repeated``, ``onsets_not_in_key``, ``onsets_in_motif``,
    ``onsets_in_repeated_motif``; shares of melodies: ``starts_with_tonic_pitch_class``
    (the first note, after any rests, is the tonic in any octave), ``unique_highest_note``,
    ``unique_lowest_note`` (among note onsets); ``leaps_resolved_by_next_note`` (leaps of
    ``ctx.leap`` semitones or more followed at once by a step back, over such leaps; 1.0
    when there is none); ``note_autocorrelation_lag{1,2,3}`` (mean signed autocorrelation
    of the note-pitch sequence, rests and holds skipped). See docs/theory.md. Per melody:
    ``music_theory_parts``.
    """
    parts = music_theory_parts(tokens, ctx)
    out = {}
    for name in ("onsets_excessively_repeated", "onsets_not_in_key", "starts_with_tonic_pitch_class",
                 "leaps_resolved_by_next_note", "unique_highest_note", "unique_lowest_note",
                 "onsets_in_motif", "onsets_in_repeated_motif"):
        num, den = parts[name]
        if name == "leaps_resolved_by_next_note":
            out[name] = float(num.sum() / den.sum()) if den.sum() else 1.0
        elif name in ONSET_SHARES:
            out[name] = float(num.sum() / max(int(den.sum()), 1))
        else:
            out[name] = float(num.mean())
    out.update({k: float(v[0].mean()) for k, v in parts.items() if k.startswith("note_autocorrelation")})
    return out


def melody_scores(tokens: np.ndarray, vocab: Vocabulary = DEFAULT_VOCAB) -> list[dict[str, float]]:
    """Cheap per-melody scores (no corpus, no model) for manifests."""
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    ctx = RuleContext(vocab=vocab, steps=tokens.shape[1])
    structure_score = structure_scores(tokens, ctx)
    rows = []
    for i, t in enumerate(tokens):
        m = music_theory_metrics(t[None, :], ctx)
        rows.append({"structure": round(float(structure_score[i]), 4),
                     "onsets_not_in_key": round(m["onsets_not_in_key"], 4),
                     "leaps_resolved_by_next_note": round(m["leaps_resolved_by_next_note"], 4)})
    return rows
