"""``rlmusic simulate-raters``: simulated raters with a defined taste
(``rlmusic.feedback.simulate``) rate queued clips through the path a real study uses:
clips from the rating queue, judgements written to a ratings CSV and imported.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rlmusic.feedback.simulate import TASTES, make_raters, taste_score


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

    Returns counts, the CSV paths and the mean taste of the rated clips. An empty queue
    (no clip for any rater) raises ``ValueError``."""
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
        queued = db.stats(engine).get("clips", 0)
        raise ValueError(f"the rating queue has no clip these raters have not rated yet ({queued} clips queued); "
                         "fill it first: rlmusic generate -n 64 --enqueue --out DIR")
    result["mean_taste_rated"] = float(np.mean(tastes_rated)) if tastes_rated else float("nan")
    return result


def _write_csv(path: Path, header: tuple[str, ...], rows: list[tuple]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n-raters", type=int, default=5, help="simulated raters (names sim-TASTE-0..)")
    parser.add_argument("--taste", default="contour", choices=TASTES,
                        help="what they like: contour (lines that turn), rhythm (notes on the beat), "
                             "pitch (notes of the tonic triad), ending (a long final tonic)")
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
