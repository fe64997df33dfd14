"""Human judgements as the reward model sees them: plain rows -> indexed melodies,
per-rater normalised stars, pairwise outcomes; held-out splits and their metrics.

The rows (``db.star_rows`` / ``db.pair_rows`` give them; this package never reads the
database itself):

- star rows ``{rating_id, clip_id, rater, stars, tokens}``;
- pair rows ``{comparison_id, clip_a, clip_b, rater, winner, tokens_a, tokens_b}``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- rows to data


def melody_key(tokens: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(t) for t in tokens)


def by_length(melodies: Sequence[Sequence[int]]) -> dict[int, list[int]]:
    """Indices of the melodies grouped by length (so each group runs as one batch)."""
    groups: dict[int, list[int]] = {}
    for i, m in enumerate(melodies):
        groups.setdefault(len(m), []).append(i)
    return groups


def per_melody(fn, melodies: Sequence[Sequence[int]]) -> np.ndarray:
    """``fn((B, T) tokens) -> (B, ...)`` over melodies of any lengths, one batch per length,
    rows back in the melodies' order."""
    out = None
    for idx in by_length(melodies).values():
        part = np.asarray(fn(np.array([melodies[i] for i in idx], dtype=np.int64)))
        if out is None:
            out = np.zeros((len(melodies), *part.shape[1:]), dtype=part.dtype)
        out[idx] = part
    return out


def normalise_stars(rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """Stars z-scored within each rater -> (targets (N,), {rater: {mean, std, n}}).

    A rater whose stars never vary (or who gave one rating) gets targets of 0."""
    stars = np.array([float(r["stars"]) for r in rows])
    raters = [str(r["rater"]) for r in rows]
    return zscore_within_raters(stars, raters, np.arange(len(rows)))


def zscore_within_raters(stars: np.ndarray, raters: Sequence[str], fit_rows: np.ndarray
                         ) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """Stars z-scored within each rater with that rater's mean and std over ``fit_rows``
    only (held-out rows never shape the targets of training rows); a rater with no row
    in ``fit_rows`` is z-scored on their own rows (a transform of their stars alone).
    Returns (targets (N,), {rater: {mean, std, n}} of the fit rows); a rater whose
    fitted stars never vary gets targets of 0."""
    stars = np.asarray(stars, dtype=np.float64)
    z = np.zeros(len(stars))
    fit = np.zeros(len(stars), dtype=bool)
    fit[np.asarray(fit_rows, dtype=np.int64)] = True
    stats: dict[str, dict[str, float]] = {}
    for name in sorted(set(raters)):
        idx = np.array([i for i, r in enumerate(raters) if r == name])
        basis = idx[fit[idx]] if fit[idx].any() else idx
        mean, std = float(stars[basis].mean()), float(stars[basis].std())
        if fit[idx].any():
            stats[name] = {"mean": mean, "std": std, "n": len(basis)}
        if std > 0:
            z[idx] = (stars[idx] - mean) / std
    return z, stats


@dataclass
class Judgements:
    """Rows turned into indices of unique melodies."""

    melodies: list[tuple[int, ...]]  # unique melodies (token tuples)
    star_idx: np.ndarray  # (S,) melody index of each star row
    star_value: np.ndarray  # (S,) the stars as given
    star_z: np.ndarray  # (S,) stars z-scored within each rater over all rows (see zscore_within_raters)
    star_rater: list[str]
    star_clip: list[Any]
    pair_a: np.ndarray  # (P,) melody indices
    pair_b: np.ndarray
    pair_y: np.ndarray  # (P,) 1 a won, 0 b won, 0.5 tie
    pair_rater: list[str]
    pair_clips: list[tuple[Any, Any]]


def prepare(star_rows: Sequence[Mapping[str, Any]], pair_rows: Sequence[Mapping[str, Any]], ties: str) -> Judgements:
    index: dict[tuple[int, ...], int] = {}

    def idx(tokens) -> int:
        return index.setdefault(melody_key(tokens), len(index))

    z, _ = normalise_stars(star_rows)
    star_idx = np.array([idx(r["tokens"]) for r in star_rows], dtype=np.int64)
    a, b, y, raters, clips = [], [], [], [], []
    for r in pair_rows:
        winner = r["winner"]
        if winner not in ("a", "b", "tie"):
            raise ValueError(f"comparison {r.get('comparison_id')}: winner must be 'a', 'b' or 'tie', got {winner!r}")
        if winner == "tie" and ties == "skip":
            continue
        a.append(idx(r["tokens_a"]))
        b.append(idx(r["tokens_b"]))
        y.append({"a": 1.0, "b": 0.0, "tie": 0.5}[winner])
        raters.append(str(r["rater"]))
        clips.append((r.get("clip_a", a[-1]), r.get("clip_b", b[-1])))
    return Judgements(
        melodies=list(index), star_idx=star_idx, star_z=z,
        star_value=np.array([float(r["stars"]) for r in star_rows]), star_rater=[str(r["rater"]) for r in star_rows],
        star_clip=[r.get("clip_id", star_idx[i]) for i, r in enumerate(star_rows)],
        pair_a=np.array(a, dtype=np.int64), pair_b=np.array(b, dtype=np.int64), pair_y=np.array(y),
        pair_rater=raters, pair_clips=clips,
    )


def check_enough(star_rows: Sequence, pair_rows: Sequence, min_ratings: int) -> None:
    """``ValueError`` saying how many judgements there are and how many are needed."""
    have = len(star_rows) + len(pair_rows)
    if have < min_ratings:
        raise ValueError(
            f"too few ratings to fit a reward model: {have} ({len(star_rows)} star ratings + "
            f"{len(pair_rows)} comparisons), need at least {min_ratings} (min_ratings)"
        )


# --------------------------------------------------------------------------- held-out splits and metrics


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (NaN with fewer than 3 points or a constant input)."""
    if len(a) < 3:
        return math.nan
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def split_rows(data: Judgements, split: str, holdout: float, seed: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(train star rows, test star rows, train pair rows, test pair rows, split used).

    ``clip``: a share ``holdout`` of the melodies is held out; every row touching one is a
    test row, so test melodies are never trained on. ``rater``: a share of the raters is
    held out, and the split is clip-disjoint as well: training rows on any melody a
    held-out rater judged are dropped (neither train nor test), so a test melody is
    neither trained on nor rated by a training rater's row on it."""
    rng = np.random.default_rng(seed + 7919)
    raters = sorted(set(data.star_rater) | set(data.pair_rater))
    if split == "rater" and len(raters) < 2:
        warnings.warn(f"split='rater' needs >= 2 raters, got {len(raters)}; using a clip-disjoint split",
                      stacklevel=3)
        split = "clip"
    m = len(data.melodies)
    if split == "rater":
        n_out = min(len(raters) - 1, max(1, round(holdout * len(raters))))
        held = set(rng.permutation(raters)[:n_out].tolist())
        s_test = np.array([r in held for r in data.star_rater], dtype=bool).reshape(-1)
        p_test = np.array([r in held for r in data.pair_rater], dtype=bool).reshape(-1)
        tested = np.zeros(m, dtype=bool)
        tested[data.star_idx[s_test]] = True
        tested[data.pair_a[p_test]] = tested[data.pair_b[p_test]] = True
        s_train = ~s_test & ~tested[data.star_idx]
        p_train = ~p_test & ~tested[data.pair_a] & ~tested[data.pair_b]
    else:
        held_m = np.zeros(m, dtype=bool)
        held_m[rng.permutation(m)[: max(1, round(holdout * m))]] = True
        s_test = held_m[data.star_idx].reshape(-1)
        p_test = (held_m[data.pair_a] | held_m[data.pair_b]).reshape(-1)  # any held-out clip: test
        s_train, p_train = ~s_test, ~p_test
    return (np.flatnonzero(s_train), np.flatnonzero(s_test), np.flatnonzero(p_train), np.flatnonzero(p_test), split)


def heldout_metrics(scores: np.ndarray, data: Judgements, s_rows: np.ndarray, p_rows: np.ndarray,
                    star_z: np.ndarray | None = None) -> dict[str, Any]:
    """Held-out figures of melody scores (M,) on the given star and pair rows:
    ``pairwise_accuracy`` (decided comparisons), ``star_pair_accuracy`` (pairs of one
    rater's star ratings with different stars: the stars themselves, no normalisation) and
    ``spearman`` between score and ``star_z`` (default ``data.star_z``)."""
    star_z = data.star_z if star_z is None else star_z
    out: dict[str, Any] = {}
    decided = p_rows[data.pair_y[p_rows] != 0.5]
    if len(decided):
        d = scores[data.pair_a[decided]] - scores[data.pair_b[decided]]
        correct = np.where(d == 0, 0.5, (d > 0) == (data.pair_y[decided] == 1.0))
        out["pairwise_accuracy"], out["n_test_pairs"] = float(np.mean(correct)), int(len(decided))
    else:
        out["pairwise_accuracy"], out["n_test_pairs"] = math.nan, 0
    # pairs of star ratings by the same held-out rater with different stars
    right = total = 0.0
    by_rater: dict[str, list[int]] = {}
    for i in s_rows:
        by_rater.setdefault(data.star_rater[i], []).append(int(i))
    for rows in by_rater.values():
        z = data.star_value[rows]
        s = scores[data.star_idx[rows]]
        dz = z[:, None] - z[None, :]
        ds = s[:, None] - s[None, :]
        mask = dz > 0
        total += mask.sum()
        right += np.where(ds[mask] == 0, 0.5, ds[mask] > 0).sum()
    out["star_pair_accuracy"] = float(right / total) if total else math.nan
    out["n_test_star_pairs"] = int(total)
    out["spearman"] = spearman(scores[data.star_idx[s_rows]], star_z[s_rows]) if len(s_rows) else math.nan
    out["n_test_ratings"] = int(len(s_rows))
    return out
