"""Human judgements: raters, star ratings (with history) and pairwise comparisons.

Writes go through ``retrying`` (``db/engine.py``): under many concurrent writers SQLite's
"database is locked" and PostgreSQL's lock waits are retried, never surfaced; with
``timeout_s`` (the listening app) a write gives up after that many seconds with
``DatabaseBusyError``, having written nothing. Every write locks its clip rows first, then
creates its rater, then writes the judgement: the lock order of ``db/bulk.py``, which the
CSV import keeps too, so no two writers deadlock. The rules are the same on both paths:
one rating per rater and clip (a new value updates it and logs the old one in
``rating_history``), one comparison per rater and unordered pair.

Values are checked by ``db/checks.py`` before anything is written.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, select, update

from db.bulk import ensure_raters, lock_clips
from db.checks import (
    check_clip_id,
    check_rater_name,
    check_stars,
    check_tags,
    check_winner,
    pair_verdict,
    rater_key,
)
from db.engine import retrying_connection, session_scope
from db.models import (
    Clip,
    Comparison,
    Rater,
    Rating,
    RatingHistory,
    utcnow,
)

Outcome = Literal["inserted", "updated", "unchanged"]


# ----------------------------------------------------------------------------- upserts


# These run on a Core ``Connection`` (from ``retrying_connection``, or
# ``session.connection()`` in the CSV import): ``add_rating`` is the hot write path and
# the ORM unit of work would triple its cost.

RATERS, CLIPS = Rater.__table__, Clip.__table__
RATINGS, HISTORY, COMPARISONS = Rating.__table__, RatingHistory.__table__, Comparison.__table__

# Statements of the hot path, built once (building them costs more than running them).
_SELECT_RATING = (
    select(RATINGS.c.id, RATINGS.c.stars, RATINGS.c.tags, RATINGS.c.updated_at)
    .where(RATINGS.c.rater_id == bindparam("rater_id"), RATINGS.c.clip_id == bindparam("clip_id"))
    .with_for_update()
)
_INSERT_RATING = insert(RATINGS).returning(RATINGS.c.id)
_LOOKUP_RATING = (
    select(CLIPS.c.id, RATERS.c.id, RATINGS.c.id)
    .select_from(
        CLIPS.outerjoin(RATERS, RATERS.c.name == bindparam("name")).outerjoin(
            RATINGS, and_(RATINGS.c.clip_id == CLIPS.c.id, RATINGS.c.rater_id == RATERS.c.id)
        )
    )
    .where(CLIPS.c.id == bindparam("clip_id"))
    .with_for_update(of=CLIPS)  # the clip row first: the lock order of db/bulk.py
)
_COUNT_RATING = (
    update(CLIPS).where(CLIPS.c.id == bindparam("clip_id")).values(n_ratings=CLIPS.c.n_ratings + 1)
)


def ensure_rater(connection: Connection, name: str) -> int:
    """Id of the rater ``name`` (already checked), created if new (``ON CONFLICT DO
    NOTHING``: a concurrent writer creating the same rater is no error)."""
    return ensure_raters(connection, [name])[name]


def upsert_rating(
    connection: Connection,
    rater_id: int,
    clip_id: int,
    stars: int,
    tags: list[str] | None,
    now: datetime,
    *,
    known_new: bool = False,
) -> tuple[int, Outcome]:
    """Insert or update the (rater, clip) rating; ``tags=None`` keeps the stored tags.

    ``known_new``: the caller just saw no such rating (skips one look-up; if a
    concurrent writer inserts it meanwhile, the insert fails and ``retrying`` reruns).
    """
    c = RATINGS.c
    old = None
    if not known_new:
        old = connection.execute(_SELECT_RATING, {"rater_id": rater_id, "clip_id": clip_id}).first()
    if old is None:
        rating_id = connection.scalar(
            _INSERT_RATING,
            {
                "rater_id": rater_id,
                "clip_id": clip_id,
                "stars": stars,
                "tags": tags or [],
                "created_at": now,
                "updated_at": now,
            },
        )
        connection.execute(_COUNT_RATING, {"clip_id": clip_id})
        return rating_id, "inserted"
    old_tags = list(old.tags)
    new_tags = old_tags if tags is None else tags
    if old.stars == stars and old_tags == new_tags:
        return old.id, "unchanged"
    connection.execute(
        insert(HISTORY).values(
            rating_id=old.id,
            stars=old.stars,
            tags=old_tags,
            rated_at=old.updated_at,
            replaced_at=now,
        )
    )
    connection.execute(
        update(RATINGS).where(c.id == old.id).values(stars=stars, tags=new_tags, updated_at=now)
    )
    return old.id, "updated"


def upsert_comparison(
    connection: Connection,
    rater_id: int,
    clip_a: int,
    clip_b: int,
    winner: str,
    now: datetime,
) -> tuple[int, Outcome]:
    """Insert or update the rater's comparison of the unordered pair {clip_a, clip_b}.

    The same verdict given again (in either order of presentation) is unchanged; a
    different verdict replaces the stored one, with the new presentation order.
    """
    c = COMPARISONS.c
    lo, hi = min(clip_a, clip_b), max(clip_a, clip_b)
    old = connection.execute(
        select(c.id, c.clip_a_id, c.clip_b_id, c.winner)
        .where(c.rater_id == rater_id, c.pair_lo == lo, c.pair_hi == hi)
        .with_for_update()
    ).first()
    if old is None:
        comparison_id = connection.scalar(
            insert(COMPARISONS)
            .values(
                rater_id=rater_id,
                clip_a_id=clip_a,
                clip_b_id=clip_b,
                pair_lo=lo,
                pair_hi=hi,
                winner=winner,
                created_at=now,
                updated_at=now,
            )
            .returning(c.id)
        )
        connection.execute(
            update(CLIPS)
            .where(CLIPS.c.id.in_((lo, hi)))
            .values(n_comparisons=CLIPS.c.n_comparisons + 1)
        )
        return comparison_id, "inserted"
    if pair_verdict(old.clip_a_id, old.clip_b_id, old.winner) == pair_verdict(
        clip_a, clip_b, winner
    ):
        return old.id, "unchanged"
    connection.execute(
        update(COMPARISONS)
        .where(c.id == old.id)
        .values(clip_a_id=clip_a, clip_b_id=clip_b, winner=winner, updated_at=now)
    )
    return old.id, "updated"


def _lock_existing_clips(connection: Connection, *clip_ids: int) -> None:
    found = lock_clips(connection, clip_ids)
    for clip_id in clip_ids:
        if clip_id not in found:
            raise ValueError(f"clip id {clip_id!r} does not exist")


# ----------------------------------------------------------------------------- public API


def get_or_create_rater(engine: Engine, name: str) -> int:
    """Id of the rater called ``name`` (stripped; 1..64 characters), created if new."""
    name = check_rater_name(name)
    return retrying_connection(engine, lambda connection: ensure_rater(connection, name))


def add_rating(
    engine: Engine,
    rater: str,
    clip_id: int,
    stars: int,
    tags: Iterable[str] = (),
    *,
    timeout_s: float | None = None,
) -> int:
    """Record ``rater``'s star rating of a clip; returns the rating id.

    Re-rating the same clip updates the rating (the old value goes to
    ``rating_history``); the same value again changes nothing.

    Args:
        rater: rater name (created on first use).
        clip_id: an existing clip.
        stars: integer 1..5.
        tags: any of ``RATING_TAGS`` ("boring", "no structure", "surprising", "pleasant").
        timeout_s: wait at most this long for other writers (the app: a few seconds),
            then raise ``DatabaseBusyError`` having written nothing; None: the default waits.
    """
    name = check_rater_name(rater)
    clip_id = check_clip_id("clip id", clip_id)
    stars = check_stars(stars)
    tag_list = check_tags(tags)

    def work(connection: Connection) -> int:
        # One round trip for the common case: does the clip exist, who is the rater,
        # has the rater rated it already?
        found = connection.execute(_LOOKUP_RATING, {"clip_id": clip_id, "name": name}).first()
        if found is None:
            raise ValueError(f"clip id {clip_id!r} does not exist")
        _, rater_id, rating_id = found
        if rater_id is None:
            rater_id = ensure_rater(connection, name)
        rating_id, _ = upsert_rating(
            connection, rater_id, clip_id, stars, tag_list, utcnow(), known_new=rating_id is None
        )
        return rating_id

    return retrying_connection(engine, work, timeout_s=timeout_s)


def add_comparison(
    engine: Engine,
    rater: str,
    clip_a: int,
    clip_b: int,
    winner: str,
    *,
    timeout_s: float | None = None,
) -> int:
    """Record which of two clips ``rater`` preferred; returns the comparison id.

    Args:
        rater: rater name (created on first use).
        clip_a, clip_b: two different existing clips, in the order they were presented.
        winner: ``"a"``, ``"b"`` or ``"tie"``.
        timeout_s: as for ``add_rating``.
    """
    name = check_rater_name(rater)
    clip_a = check_clip_id("clip_a", clip_a)
    clip_b = check_clip_id("clip_b", clip_b)
    if clip_a == clip_b:
        raise ValueError(f"clip {clip_a!r} cannot be compared with itself")
    winner = check_winner(winner)

    def work(connection: Connection) -> int:
        _lock_existing_clips(connection, clip_a, clip_b)
        rater_id = ensure_rater(connection, name)
        comparison_id, _ = upsert_comparison(connection, rater_id, clip_a, clip_b, winner, utcnow())
        return comparison_id

    return retrying_connection(engine, work, timeout_s=timeout_s)


def rater_count(engine: Engine, rater: str) -> int:
    """How many judgements (star ratings + comparisons) ``rater`` has given."""
    with session_scope(engine) as session:
        rater_id = session.scalar(select(Rater.id).where(Rater.name == rater_key(rater)))
        if rater_id is None:
            return 0
        n_ratings = session.scalar(select(func.count()).where(Rating.rater_id == rater_id))
        n_pairs = session.scalar(select(func.count()).where(Comparison.rater_id == rater_id))
        return int(n_ratings or 0) + int(n_pairs or 0)


def list_raters(engine: Engine) -> list[dict[str, Any]]:
    """All raters with their counts of ratings and comparisons, by name; with their role
    (``researcher``) and invite (``invited_at``, ``revoked_at``: None when never)."""
    with session_scope(engine) as session:
        n_ratings = dict(
            session.execute(select(Rating.rater_id, func.count()).group_by(Rating.rater_id)).all()
        )
        n_pairs = dict(
            session.execute(
                select(Comparison.rater_id, func.count()).group_by(Comparison.rater_id)
            ).all()
        )
        return [
            {
                "id": r.id,
                "name": r.name,
                "ratings": n_ratings.get(r.id, 0),
                "comparisons": n_pairs.get(r.id, 0),
                "created_at": r.created_at,
                "researcher": r.researcher,
                "invited_at": r.invited_at if r.invite_sha256 is not None else None,
                "revoked_at": r.revoked_at,
            }
            for r in session.scalars(select(Rater).order_by(Rater.name))
        ]
