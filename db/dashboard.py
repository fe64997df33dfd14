"""Figures for the dashboard page and the CLI: counts, per-model means, activity, agreement.

Everything returns plain dicts / lists of dicts (no ORM objects), ready for
``st.dataframe`` or ``json.dumps(default=str)``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations
from typing import Any

from sqlalchemy import Engine, func, select

from db.engine import session_scope
from db.jobs import list_jobs
from db.models import Clip, Comparison, Job, Model, Rater, Rating, Round

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def stats(engine: Engine) -> dict[str, int]:
    """Row counts: raters, models, clips, clips_unrated, clips_without_audio, ratings,
    comparisons, jobs, jobs_running, rounds."""
    with session_scope(engine) as session:

        def count(*where, of=None) -> int:
            query = select(func.count()).select_from(of) if of is not None else select(func.count())
            return int(session.scalar(query.where(*where)) or 0)

        return {
            "raters": count(of=Rater),
            "models": count(of=Model),
            "clips": count(of=Clip),
            "clips_unrated": count(Clip.n_ratings == 0, of=Clip),
            "clips_without_audio": count(Clip.audio_path.is_(None), of=Clip),
            "ratings": count(of=Rating),
            "comparisons": count(of=Comparison),
            "jobs": count(of=Job),
            "jobs_running": count(Job.status == "running", of=Job),
            "rounds": count(of=Round),
        }


def ratings_per_model(engine: Engine) -> list[dict[str, Any]]:
    """Star ratings per model: ``n``, ``mean``, ``std`` and a normal 95% CI of the mean
    (``ci_low``/``ci_high``; None below 2 ratings). Models without ratings have n=0."""
    with session_scope(engine) as session:
        aggregates = {
            model_id: (n, total, squares)
            for model_id, n, total, squares in session.execute(
                select(
                    Clip.model_id,
                    func.count(Rating.id),
                    func.sum(Rating.stars),
                    func.sum(Rating.stars * Rating.stars),
                )
                .join(Clip, Clip.id == Rating.clip_id)
                .group_by(Clip.model_id)
            )
        }
        rows = []
        for model in session.scalars(select(Model).order_by(Model.id)):
            n, total, squares = aggregates.get(model.id, (0, 0, 0))
            mean = std = low = high = None
            if n:
                mean = total / n
            if n >= 2:
                variance = max(0.0, (squares - n * mean * mean) / (n - 1))
                std = math.sqrt(variance)
                half = Z_95 * std / math.sqrt(n)
                low, high = mean - half, mean + half
            rows.append(
                {
                    "model_id": model.id,
                    "model_name": model.name,
                    "kind": model.kind,
                    "n": int(n),
                    "mean": mean,
                    "std": std,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        return rows


def ratings_by_day(engine: Engine) -> list[dict[str, Any]]:
    """Judgements per UTC day: ``day`` (ISO date), ``ratings``, ``comparisons``, oldest first.

    A re-rating counts on the day of the first rating (``created_at``)."""
    days: dict[str, dict[str, int]] = defaultdict(lambda: {"ratings": 0, "comparisons": 0})
    with session_scope(engine) as session:
        for (created,) in session.execute(select(Rating.created_at)):
            days[created.date().isoformat()]["ratings"] += 1
        for (created,) in session.execute(select(Comparison.created_at)):
            days[created.date().isoformat()]["comparisons"] += 1
    return [{"day": day, **days[day]} for day in sorted(days)]


def _ranks(values: list[float]) -> list[float]:
    """Ranks 1..n, ties sharing their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman rank correlation; None when undefined (< 3 pairs or a constant side)."""
    if len(x) != len(y) or len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def rater_agreement(engine: Engine, min_shared: int = 1) -> list[dict[str, Any]]:
    """Agreement of every two raters on the clips both star-rated.

    Each row: ``rater_a``, ``rater_b`` (names, a < b), ``shared`` (clips), ``exact``
    and ``within_one`` (shares of shared clips with equal / at most 1 star apart) and
    ``spearman`` (rank correlation; None under 3 shared clips or constant ratings).

    Args:
        min_shared: leave out pairs of raters with fewer shared clips.
    """
    with session_scope(engine) as session:
        names = dict(session.execute(select(Rater.id, Rater.name)).all())
        by_clip: dict[int, dict[int, int]] = defaultdict(dict)
        query = (
            select(Rating.clip_id, Rating.rater_id, Rating.stars)
            .join(Clip, Clip.id == Rating.clip_id)
            .where(Clip.n_ratings >= 2)
        )
        for clip_id, rater_id, stars in session.execute(query):
            by_clip[clip_id][rater_id] = stars
    pairs: dict[tuple[str, str], tuple[list[int], list[int]]] = defaultdict(lambda: ([], []))
    for ratings in by_clip.values():
        for r1, r2 in combinations(sorted(ratings, key=lambda r: names[r]), 2):
            xs, ys = pairs[(names[r1], names[r2])]
            xs.append(ratings[r1])
            ys.append(ratings[r2])
    rows = []
    for (a, b), (xs, ys) in sorted(pairs.items()):
        n = len(xs)
        if n < min_shared:
            continue
        rows.append(
            {
                "rater_a": a,
                "rater_b": b,
                "shared": n,
                "exact": sum(x == y for x, y in zip(xs, ys, strict=True)) / n,
                "within_one": sum(abs(x - y) <= 1 for x, y in zip(xs, ys, strict=True)) / n,
                "spearman": spearman(xs, ys),
            }
        )
    return rows


def recent_jobs(engine: Engine, limit: int = 10) -> list[dict[str, Any]]:
    """The most recent jobs, newest first (``list_jobs``)."""
    return list_jobs(engine, limit=limit)
