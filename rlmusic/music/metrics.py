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
    of the note-pitch sequence, rests and holds skipped). See docs/theory.md.
    """
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    ctx = ctx or RuleContext()
    if ctx.steps is None:
        ctx = replace(ctx, steps=tokens.shape[1])
    terms = melody_step_terms(
        tokens, ctx, rules=["in_key", "tonic_start", "non_repeating", "motif", "repeated_motif"]
    )
    b = MelodyView(tokens, ctx)
    onset = b.onset
    n_notes = max(int(onset.sum()), 1)

    def share(name: str, sign: float) -> float:
        return float(((terms[name] * sign > 0) & onset).sum() / n_notes)

    leaps, resolved = leap_counts(tokens, ctx)
    hi_u, lo_u = unique_extremes(b)
    ac = note_autocorrelation(b, ctx.lags)
    out = {
        "onsets_excessively_repeated": share("non_repeating", -1),
        "onsets_not_in_key": share("in_key", -1),
        "starts_with_tonic_pitch_class": float((terms["tonic_start"] > 0).any(axis=1).mean()),
        "leaps_resolved_by_next_note": float(resolved.sum() / leaps.sum()) if leaps.sum() else 1.0,
        "unique_highest_note": float(hi_u.mean()),
        "unique_lowest_note": float(lo_u.mean()),
        "onsets_in_motif": share("motif", 1),
        "onsets_in_repeated_motif": share("repeated_motif", 1),
    }
    for j, lag in enumerate(ctx.lags):
        out[f"note_autocorrelation_lag{lag}"] = float(ac[:, j].mean())
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
