"""Simulated raters: ``rlmusic simulate-raters`` (tests and demos of the feedback loop).

A simulated rater has a *taste* the music-theory reward does not encode, a personal
bias (an offset in stars: harsh or kind), a sharpness (how strongly taste moves their
stars) and noise. They rate queued clips through the same path a real study uses: the
clips come from ``db.next_clip`` and the judgements are written to a ratings CSV
(``clip_id,rater,stars`` and ``clip_a,clip_b,rater,winner``) that ``db.import_ratings``
imports.

Tastes (``taste_score(tokens, taste)``, in "taste units": about one unit per star):

- ``contour``: an arch: the melody rises then falls. Mean pitch sounding in the middle
  half minus the mean pitch of the first and last quarters, per 3 semitones.
- ``rising``: ends higher than it starts: mean pitch of the last quarter minus the
  first quarter, per 3 semitones.
- ``smooth``: dislikes large leaps: ``-(mean |interval| - 2) / 2`` over successive notes
  (steps of a tone score 0, leaps of a fourth about -1.5).

A melody with too few notes to judge scores ``SILENT`` (-1.5): raters dislike silence.
Stars: ``clip(round(3 + sharpness * taste + bias + noise * N(0, 1)), 1, 5)``. A
comparison: ``a`` wins when ``sharpness * (taste_a - taste_b) + noise * N(0, 1)`` is above
``TIE_BAND``, ``b`` when below ``-TIE_BAND``, else ``tie``.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlmusic.representation import DEFAULT_VOCAB, Vocabulary

TASTES = ("contour", "rising", "smooth")
SILENT = -1.5  # taste of a melody with too few notes to judge
TIE_BAND = 0.1  # |preference| below this is a tie


# --------------------------------------------------------------------------- tastes


def _sounding(tokens: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    from rlmusic.reward_model import sounding_pitches

    return sounding_pitches(tokens, vocab)


def _part_means(sounding: np.ndarray, lo: int, hi: int) -> np.ndarray:
    part = sounding[:, lo:hi]
    count = np.sum(~np.isnan(part), axis=1)
    return np.where(count > 0, np.nansum(part, axis=1) / np.maximum(count, 1), np.nan)


def taste_score(tokens: np.ndarray, taste: str, vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    """How much a rater of ``taste`` likes each melody: (N, T) tokens -> (N,) float."""
    if taste not in TASTES:
        raise ValueError(f"unknown taste {taste!r}; valid: {list(TASTES)}")
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    vocab.validate(tokens.reshape(-1))
    n, steps = tokens.shape
    if taste == "smooth":
        out = np.full(n, SILENT)
        pitches = vocab.pitches(tokens)
        for i in range(n):
            p = pitches[i][pitches[i] >= 0]
            if len(p) >= 2:
                out[i] = -(np.abs(np.diff(p)).mean() - 2.0) / 2.0
        return out
    sounding = _sounding(tokens, vocab)
    q1, q3 = steps // 4, steps - steps // 4
    if taste == "contour":
        middle = _part_means(sounding, q1, q3)
        outer = _part_means(np.concatenate([sounding[:, :q1], sounding[:, q3:]], axis=1), 0, steps)
        value = (middle - outer) / 3.0
    else:  # rising
        value = (_part_means(sounding, q3, steps) - _part_means(sounding, 0, q1)) / 3.0
    return np.where(np.isnan(value), SILENT, value)


# --------------------------------------------------------------------------- raters


@dataclass(frozen=True)
class SimulatedRater:
    name: str
    taste: str
    bias: float  # offset in stars (negative: harsh)
    sharpness: float  # stars per taste unit
    noise: float  # std of the noise, in stars

    def stars(self, taste_values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raw = 3 + self.sharpness * taste_values + self.bias + self.noise * rng.standard_normal(len(taste_values))
        return np.clip(np.round(raw), 1, 5).astype(int)

    def winners(self, taste_a: np.ndarray, taste_b: np.ndarray, rng: np.random.Generator) -> list[str]:
        pref = self.sharpness * (taste_a - taste_b) + self.noise * rng.standard_normal(len(taste_a))
        return ["a" if p > TIE_BAND else "b" if p < -TIE_BAND else "tie" for p in pref]


def make_raters(n: int, taste: str, noise: float, seed: int = 0) -> list[SimulatedRater]:
    """``n`` raters with personal biases in [-1, 1] stars and sharpness in [0.7, 1.3];
    the same (n, taste, seed) always give the same raters."""
    if n < 1:
        raise ValueError(f"n_raters must be >= 1, got {n}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if taste not in TASTES:
        raise ValueError(f"unknown taste {taste!r}; valid: {list(TASTES)}")
    raters = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        raters.append(SimulatedRater(f"sim-{taste}-{i}", taste, float(rng.uniform(-1, 1)),
                                     float(rng.uniform(0.7, 1.3)), float(noise)))
    return raters


# --------------------------------------------------------------------------- rating through the import path


def simulate_raters(
    engine=None,
    n_raters: int = 5,
    taste: str = "contour",
    noise: float = 0.5,
    per_rater: int = 20,
    pairs: int = 0,
    seed: int = 0,
    order: str = "fewest",
    csv_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Each rater takes up to ``per_rater`` clips from ``db.next_clip(order=order)`` and
    rates them, and compares ``pairs`` random same-length pairs of the clips the queue
    offers them; everything goes through ratings CSVs and ``db.import_ratings``.

    Returns counts, the CSV paths and the mean taste of the rated clips."""
    import db

    if per_rater < 0 or pairs < 0:
        raise ValueError(f"per_rater and pairs must be >= 0, got {per_rater}, {pairs}")
    engine = engine or db.get_engine()
    db.check_schema(engine)
    raters = make_raters(n_raters, taste, noise, seed)
    csv_dir = Path(csv_dir) if csv_dir is not None else Path(tempfile.mkdtemp(prefix="simulated-ratings-"))
    csv_dir.mkdir(parents=True, exist_ok=True)
    star_lines: list[tuple[int, str, int]] = []
    pair_lines: list[tuple[int, int, str, str]] = []
    tastes_rated: list[float] = []
    for rater in raters:
        already = db.rater_count(engine, rater.name) if rater.name in {r["name"] for r in db.list_raters(engine)} else 0
        rng = np.random.default_rng([seed, already, len(rater.name), *map(ord, rater.name)])
        pool, seen = [], []
        while len(pool) < max(per_rater, 2 * pairs):
            clip = db.next_clip(engine, rater.name, order=order, exclude=seen)
            if clip is None:
                break
            seen.append(clip.id)
            pool.append(clip)
        if not pool:
            continue
        vocab_tokens = [np.asarray(c.tokens, dtype=np.int64) for c in pool]
        values = np.array([taste_score(t[None, :], taste)[0] for t in vocab_tokens])
        rated = pool[:per_rater]
        for clip, stars in zip(rated, rater.stars(values[: len(rated)], rng)):
            star_lines.append((clip.id, rater.name, int(stars)))
        tastes_rated.extend(values[: len(rated)].tolist())
        by_steps: dict[int, list[int]] = {}
        for i, c in enumerate(pool):
            by_steps.setdefault(c.steps, []).append(i)
        groups = [g for g in by_steps.values() if len(g) >= 2]
        chosen: set[tuple[int, int]] = set()
        for _ in range(pairs * 4):
            if len(chosen) >= pairs or not groups:
                break
            g = groups[int(rng.integers(len(groups)))]
            a, b = rng.choice(g, 2, replace=False)
            key = (min(pool[a].id, pool[b].id), max(pool[a].id, pool[b].id))
            if key not in chosen:
                chosen.add(key)
                winner = rater.winners(values[[a]], values[[b]], rng)[0]
                pair_lines.append((pool[a].id, pool[b].id, rater.name, winner))
    result: dict[str, Any] = {"raters": [r.name for r in raters], "taste": taste, "stars": 0, "pairs": 0}
    if star_lines:
        path = csv_dir / "stars.csv"
        _write_csv(path, ("clip_id", "rater", "stars"), star_lines)
        result["stars"] = db.import_ratings(engine, path)["rows"]
        result["stars_csv"] = str(path)
    if pair_lines:
        path = csv_dir / "pairs.csv"
        _write_csv(path, ("clip_a", "clip_b", "rater", "winner"), pair_lines)
        result["pairs"] = db.import_ratings(engine, path)["rows"]
        result["pairs_csv"] = str(path)
    if not star_lines and not pair_lines:
        warnings.warn("simulate-raters: the queue had nothing left for these raters", stacklevel=2)
    result["mean_taste_rated"] = float(np.mean(tastes_rated)) if tastes_rated else float("nan")
    return result


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-raters", type=int, default=5, help="simulated raters (names sim-TASTE-0..)")
    parser.add_argument("--taste", default="contour", choices=TASTES,
                        help="what they like: contour (arch), rising (ends higher), smooth (no large leaps)")
    parser.add_argument("--noise", type=float, default=0.5, help="std of each judgement's noise, in stars")
    parser.add_argument("--per-rater", type=int, default=20, help="star ratings per rater (0: none)")
    parser.add_argument("--pairs", type=int, default=0, help="pairwise comparisons per rater (0: none)")
    parser.add_argument("--order", default="fewest", choices=("fewest", "priority"),
                        help="queue order: fewest ratings first, or priority (active selection)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the raters' biases and noise")
    parser.add_argument("--csv-dir", help="folder for the ratings CSVs (default: a temporary folder)")


def main(args: argparse.Namespace) -> int:
    result = simulate_raters(n_raters=args.n_raters, taste=args.taste, noise=args.noise, per_rater=args.per_rater,
                             pairs=args.pairs, seed=args.seed, order=args.order, csv_dir=args.csv_dir)
    print(f"simulate-raters: {len(result['raters'])} raters ({args.taste}) imported {result['stars']} star "
          f"ratings and {result['pairs']} comparisons (mean taste of rated clips {result['mean_taste_rated']:+.2f})")
    for key in ("stars_csv", "pairs_csv"):
        if key in result:
            print(f"simulate-raters: {result[key]}")
    return 0
