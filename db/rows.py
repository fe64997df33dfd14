"""Judgements read back as plain rows: what the reward model fits on (``star_rows``,
``pair_rows``) and a rating's history of changes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import aliased

from db.engine import session_scope
from db.models import Clip, Comparison, Rater, Rating, RatingHistory


def _in_chunks(session: Any, query: Any, id_column: Any, ids: Iterable[int] | None) -> Iterator[Any]:
    """The rows of ``query``, all of them (``ids`` None) or those whose ``id_column`` is in
    ``ids``, asked in chunks of 5,000 ids (a database caps the parameters of one statement)."""
    if ids is None:
        yield from session.execute(query)
        return
    wanted = sorted(set(ids))
    for i in range(0, len(wanted), 5000):
        yield from session.execute(query.where(id_column.in_(wanted[i : i + 5000])))


def star_rows(engine: Engine, *, rating_ids: Iterable[int] | None = None,
              kind: str | None = "melody") -> list[dict[str, Any]]:
    """Star ratings as plain rows for the reward model, by rating id.

    Each row: ``rating_id``, ``clip_id``, ``rater``, ``rater_id``, ``stars``, ``tags``,
    ``tokens`` (the clip's), ``steps``, ``model_id``, ``updated_at``.

    Args:
        rating_ids: only these ratings (e.g. a round's); None for all.
        kind: only ratings of clips of this kind (``"melody"``: what the melody reward
            model fits on; ``"harmony"``; None: every clip).
    """
    query = (
        select(Rating, Rater.name, Clip.tokens, Clip.steps, Clip.model_id)
        .join(Rater, Rater.id == Rating.rater_id)
        .join(Clip, Clip.id == Rating.clip_id)
        .order_by(Rating.id)
    )
    if kind is not None:
        query = query.where(Clip.kind == kind)
    with session_scope(engine) as session:
        rows = []
        for rating, rater, tokens, steps, model_id in _in_chunks(session, query, Rating.id, rating_ids):
            rows.append(
                {
                    "rating_id": rating.id,
                    "clip_id": rating.clip_id,
                    "rater": rater,
                    "rater_id": rating.rater_id,
                    "stars": rating.stars,
                    "tags": list(rating.tags),
                    "tokens": list(tokens),
                    "steps": steps,
                    "model_id": model_id,
                    "updated_at": rating.updated_at,
                }
            )
        return rows


def pair_rows(
    engine: Engine, *, comparison_ids: Iterable[int] | None = None, kind: str | None = "melody"
) -> list[dict[str, Any]]:
    """Pairwise comparisons as plain rows for the reward model, by comparison id.

    Each row: ``comparison_id``, ``clip_a``, ``clip_b`` (presentation order), ``rater``,
    ``rater_id``, ``winner`` (``'a'``, ``'b'``, ``'tie'``), ``tokens_a``, ``tokens_b``,
    ``model_a``, ``model_b``, ``steps``, ``updated_at``.

    Args:
        comparison_ids: only these comparisons (e.g. a round's); None for all.
        kind: only comparisons of clips of this kind (as ``star_rows``).
    """
    clip_a, clip_b = aliased(Clip), aliased(Clip)
    query = (
        select(Comparison, Rater.name, clip_a, clip_b)
        .join(Rater, Rater.id == Comparison.rater_id)
        .join(clip_a, clip_a.id == Comparison.clip_a_id)
        .join(clip_b, clip_b.id == Comparison.clip_b_id)
        .order_by(Comparison.id)
    )
    if kind is not None:
        query = query.where(clip_a.kind == kind)
    with session_scope(engine) as session:
        rows = []
        for comparison, rater, a, b in _in_chunks(session, query, Comparison.id, comparison_ids):
            rows.append(
                {
                    "comparison_id": comparison.id,
                    "clip_a": a.id,
                    "clip_b": b.id,
                    "rater": rater,
                    "rater_id": comparison.rater_id,
                    "winner": comparison.winner,
                    "tokens_a": list(a.tokens),
                    "tokens_b": list(b.tokens),
                    "model_a": a.model_id,
                    "model_b": b.model_id,
                    "steps": a.steps,
                    "updated_at": comparison.updated_at,
                }
            )
        return rows


def rating_history(engine: Engine, rating_id: int) -> list[dict[str, Any]]:
    """The values a rating held before its current one, oldest first.

    Each row: ``stars``, ``tags``, ``rated_at`` (when given), ``replaced_at``.
    """
    with session_scope(engine) as session:
        if session.get(Rating, rating_id) is None:
            raise ValueError(f"rating id {rating_id!r} does not exist")
        history = session.scalars(
            select(RatingHistory)
            .where(RatingHistory.rating_id == rating_id)
            .order_by(RatingHistory.id)
        )
        return [
            {
                "stars": h.stars,
                "tags": list(h.tags),
                "rated_at": h.rated_at,
                "replaced_at": h.replaced_at,
            }
            for h in history
        ]
