"""Form and phrase structure of melodies: the structure score, bar similarity, cadences.

The structure score measures form the way real tunes have it: material comes back (a
phrase returns some bars later, ``repetition``) without the melody looping
(``variety``). It needs no bar grid, so reels (16 steps a bar) and jigs (12) are
measured alike. On the first 128 steps of held-out Irish tunes it is about 2.4 times the
shipped prior's samples (docs/theory.md, "Structure").

Reads in this order: the form score (``lag_matches``, ``window_variety``, ``form_terms``)
-> bars and their similarity -> cadences at phrase ends -> the per-melody components
(``structure_terms_batch``: the form score plus the older bar-grid components) -> the
whole-melody entry points (``structure_terms``, ``structure_scores``, ``structure_score``).

Builds on ``rlmusic.music.context`` (``RuleContext``, ``MelodyView``); the per-step
rules ``bar_repetition``, ``cadence`` and ``structure`` of ``rlmusic.music.rules`` call
into this module. The formulas are in docs/theory.md ("Structure").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rlmusic.music.context import MelodyView, RuleContext, last_true
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary

# --------------------------------------------------------------------------- form

FORM_MIN_LAG = 16  # a phrase comes back no sooner than this many steps (one bar of 4/4)
FORM_MAX_LAG = 64  # ... and no later than this (four bars of 4/4); at most half the melody
FORM_WINDOW = 16  # steps of a window whose exact repeats count against variety
FORM_STRIDE = 4  # windows start every this many steps (a beat)
VARIETY_TARGET = 0.8  # distinct windows (share) from which on variety stops costing


def lag_matches(seq: np.ndarray, lags: Sequence[int]) -> np.ndarray:
    """(B, L) tokens -> (B, len(lags)): for each lag, the share of steps t whose token equals
    the token ``lag`` steps later, among the steps where either of the two starts a note
    (so long rests or holds alone match nothing). 0 where there is nothing to compare."""
    seq = np.asarray(seq)
    out = np.zeros((seq.shape[0], len(lags)))
    for j, lag in enumerate(lags):
        if lag >= seq.shape[1]:
            continue
        a, b = seq[:, :-lag], seq[:, lag:]
        care = (a >= Vocabulary.FIRST_PITCH_TOKEN) | (b >= Vocabulary.FIRST_PITCH_TOKEN)
        out[:, j] = ((a == b) & care).sum(axis=1) / np.maximum(care.sum(axis=1), 1)
    return out


def window_variety(seq: np.ndarray, window: int = FORM_WINDOW, stride: int = FORM_STRIDE) -> np.ndarray:
    """(B, L) tokens -> (B,) share of the ``window``-step windows (every ``stride`` steps)
    that are not an exact copy of an earlier one; 1.0 when there is not a single window."""
    seq = np.asarray(seq)
    starts = range(0, seq.shape[1] - window + 1, stride)
    if not len(starts):
        return np.ones(seq.shape[0])
    return np.array([len({row[i : i + window].tobytes() for i in starts}) / len(starts) for row in seq])


def form_terms(seq: np.ndarray) -> dict[str, np.ndarray]:
    """(B, L) tokens -> name -> (B,) in [0, 1]:

    - ``repetition``: the best ``lag_matches`` over lags ``FORM_MIN_LAG``..min(``FORM_MAX_LAG``,
      L/2): how much of the melody comes back, note for note, at one distance;
    - ``variety``: ``window_variety`` (a loop of one bar scores about 1/8 over 8 bars);
    - ``structure`` = repetition * min(1, variety / ``VARIETY_TARGET``): material that
      returns, in a melody that does not loop.
    """
    seq = np.atleast_2d(np.asarray(seq))
    lags = range(FORM_MIN_LAG, min(FORM_MAX_LAG, seq.shape[1] // 2) + 1)
    repetition = lag_matches(seq, lags).max(axis=1) if len(lags) else np.zeros(seq.shape[0])
    variety = window_variety(seq)
    return {"repetition": repetition, "variety": variety,
            "structure": repetition * np.minimum(1.0, variety / VARIETY_TARGET)}


# --------------------------------------------------------------------------- bars


def _bars(seq: np.ndarray, pitch: np.ndarray, sounding: np.ndarray, spb: int):
    """Per bar: rhythm class (0 rest, 1 sounding hold, 2 onset) and pitch relative to the
    bar's first note (-999 off onsets). Shapes (B, nbars, spb)."""
    nb = seq.shape[1] // spb
    T = nb * spb
    cls = np.where(pitch[:, :T] >= 0, 2, np.where(sounding[:, :T], 1, 0)).reshape(-1, nb, spb)
    p = pitch[:, :T].reshape(-1, nb, spb)
    on = p >= 0
    first_idx = np.argmax(on, axis=2)
    first = np.take_along_axis(p, first_idx[..., None], axis=2)
    rel = np.where(on, p - first, -999)
    return cls, rel, on


def bar_similarity_matrix(seq: np.ndarray, pitch: np.ndarray, sounding: np.ndarray, spb: int):
    """(B, nbars, nbars) similarity of every pair of bars in [0, 1]:
    0.25 * rhythm (share of steps with the same class: onset/hold/rest) + 0.75 * melody
    (onsets at the same step with the same pitch, or the same pitch relative to each bar's
    first note, whichever matches more, over the larger number of onsets); 0 when either
    bar has no note."""
    cls, rel, on = _bars(seq, pitch, sounding, spb)
    p = pitch[:, : cls.shape[1] * spb].reshape(cls.shape)
    rhythm = (cls[:, :, None, :] == cls[:, None, :, :]).mean(axis=3)
    both_on = on[:, :, None, :] & on[:, None, :, :]
    same_rel = (both_on & (rel[:, :, None, :] == rel[:, None, :, :])).sum(axis=3)
    same_abs = (both_on & (p[:, :, None, :] == p[:, None, :, :])).sum(axis=3)
    n_on = on.sum(axis=2)
    denom = np.maximum(n_on[:, :, None], n_on[:, None, :])
    melody = np.maximum(same_rel, same_abs) / np.maximum(denom, 1)
    sim = 0.25 * rhythm + 0.75 * melody
    return np.where((n_on[:, :, None] > 0) & (n_on[:, None, :] > 0), sim, 0.0)


# --------------------------------------------------------------------------- cadences


def cadence_scores(b: MelodyView, ctx: RuleContext, end: int) -> np.ndarray:
    """(B,) cadence of a phrase ending at step ``end`` (exclusive): the last note starting in
    the phrase's last half bar is on a stable degree (tonic, mediant, dominant: +0.5) and
    lasts (holds plus following rests, up to ``end``) at least a quarter note (+0.5)."""
    half = ctx.steps_per_bar // 2
    lo = max(0, end - half)
    on = b.onset[:, lo:end]
    if on.shape[1] == 0:
        return np.zeros(b.B)
    last = last_true(on)
    has = last >= 0
    step = lo + np.clip(last, 0, None)
    p = b.pitch[np.arange(b.B), step]
    stable = ctx.triad_mask[p % 12] & has
    idx = np.arange(on.shape[1])[None, :]
    after = on & (idx > last[:, None])
    nxt_step = np.where(after.any(axis=1), lo + np.argmax(after, axis=1), end)
    long = (nxt_step - step) >= 4
    return 0.5 * stable + 0.5 * (long & has)


# --------------------------------------------------------------------------- structure score


def structure_terms_batch(b: MelodyView, ctx: RuleContext) -> dict[str, np.ndarray]:
    """Per-melody structure components, each (B,) in [0, 1] (see docs/theory.md): the form
    score's ``structure``, ``repetition`` and ``variety`` (``form_terms``), and the older
    bar-grid components ``bar_repetition`` (mean best match of each bar against an earlier
    bar), ``cadence`` (mean cadence score at phrase ends), ``rhythm_consistency`` (mean rhythm
    agreement of neighbouring bars in a phrase), ``bar_variety`` (penalises loops of one bar)
    and their composite ``bar_structure`` = bar_variety * (0.5 bar_repetition + 0.3 cadence
    + 0.2 rhythm), which does not see the order of the bars."""
    form = form_terms(b.seq)
    spb = ctx.steps_per_bar
    nb = b.L // spb
    zeros = np.zeros(b.B)
    if nb < 2:
        return {**form, **{k: zeros for k in ("bar_repetition", "cadence", "rhythm_consistency",
                                              "bar_variety", "bar_structure")}}
    sim = bar_similarity_matrix(b.seq, b.pitch, b.sounding, spb)
    tri = np.tril(np.ones((nb, nb), dtype=bool), k=-1)  # a < b
    best = np.where(tri[None], sim, 0.0).max(axis=2)[:, 1:]  # (B, nb-1)
    repetition = best.mean(axis=1)
    pb = min(ctx.phrase_bars_for(b.L), nb)
    ends = [e * spb for e in range(pb, nb + 1, pb)]
    cadence = np.mean([cadence_scores(b, ctx, e) for e in ends], axis=0)
    cls, _, on = _bars(b.seq, b.pitch, b.sounding, spb)
    rhythm_pairs = (cls[:, 1:] == cls[:, :-1]).mean(axis=2)  # (B, nb-1) bar i vs i+1
    has_notes = on.any(axis=2)
    same_phrase = (np.arange(1, nb) % pb) != 0
    rp = rhythm_pairs * (has_notes[:, 1:] & has_notes[:, :-1])
    rhythm = rp[:, same_phrase].mean(axis=1) if same_phrase.any() else rp.mean(axis=1)
    bars = b.seq[:, : nb * spb].reshape(b.B, nb, spb)
    copies = (bars[:, :, None, :] == bars[:, None, :, :]).all(axis=3) & tri[None]
    distinct = nb - copies.any(axis=2).sum(axis=1)
    variety = np.minimum(1.0, 2.0 * distinct / nb)
    bar_structure = variety * (0.5 * repetition + 0.3 * cadence + 0.2 * rhythm)
    return {**form, "bar_repetition": repetition, "cadence": cadence, "rhythm_consistency": rhythm,
            "bar_variety": variety, "bar_structure": bar_structure}


def structure_terms(
    tokens: np.ndarray, ctx: RuleContext | None = None, *, vocab: Vocabulary | None = None
) -> dict[str, np.ndarray]:
    """Structure components of whole melodies (N, T) -> name -> (N,) in [0, 1] (see
    ``structure_terms_batch``); ``"structure"`` is the form score."""
    ctx = ctx or RuleContext(vocab=vocab or DEFAULT_VOCAB)
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    return structure_terms_batch(MelodyView(tokens, ctx), ctx)


def structure_scores(
    tokens: np.ndarray, ctx: RuleContext | None = None, *, vocab: Vocabulary | None = None
) -> np.ndarray:
    """(N, T) melodies -> (N,) structure (form) scores in [0, 1] (the end-of-melody reward)."""
    return form_terms(np.atleast_2d(np.asarray(tokens)))["structure"]


def structure_score(tokens: Sequence[int], ctx: RuleContext | None = None) -> float:
    """The structure score in [0, 1] of one melody."""
    return float(structure_scores(np.asarray(tokens)[None, :], ctx)[0])
