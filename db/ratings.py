"""Human judgements: raters, star ratings (with history) and pairwise comparisons.

Writes go through ``retrying`` (``db/engine.py``): under many concurrent writers SQLite's
"database is locked" and PostgreSQL's unique-key races are retried, never surfaced. The
upsert helpers (``upsert_rating``, ``upsert_comparison``) are shared with the CSV import
so both paths obey the same rules: one rating per rater and clip (a new value updates it
and logs the old one in ``rating_history``), one comparison per rater and unordered pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from numbers import Integral
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, bindparam, func, insert, select, update

from db.engine import retrying_connection, session_scope
from db.models import (
    RATER_NAME_MAX,
    RATING_TAGS,
    WINNERS,
    Clip,
    Comparison,
    Rater,
    Rating,
    RatingHistory,
    utcnow,
)

Outcome = Literal["inserted", "updated", "unchanged"]


# ----------------------------------------------------------------------------- validation


def check_rater_name(name: Any) -> str:
    """The stripped rater name; ``ValueError`` unless it is 1..64 characters."""
    if not isinstance(name, str):
        raise ValueError(f"rater name {name!r} is not a string")
    stripped = name.strip()
    if not 1 <= len(stripped) <= RATER_NAME_MAX:
        raise ValueError(
            f"rater name {name!r} must be 1..{RATER_NAME_MAX} characters once stripped"
        )
    return stripped


def check_stars(stars: Any) -> int:
    """``stars`` as an int in 1..5, else ``ValueError`` naming the value."""
    if isinstance(stars, bool) or not isinstance(stars, Integral) or not 1 <= stars <= 5:
        raise ValueError(f"stars {stars!r} is not an integer in 1..5")
    return int(stars)


def check_winner(winner: Any) -> str:
    """``winner`` if it is ``'a'``, ``'b'`` or ``'tie'``, else ``ValueError``."""
    if winner not in WINNERS:
        raise ValueError(f"winner {winner!r} is not one of {', '.join(WINNERS)}")
    return winner


def check_tags(tags: Iterable[str]) -> list[str]:
    """Known tags, deduplicated, in ``RATING_TAGS`` order; unknown ones raise."""
    if isinstance(tags, str):
        raise ValueError(f"tags {tags!r} must be a list of tags, not one string")
    given = set()
    for tag in tags:
        if tag not in RATING_TAGS:
            raise ValueError(f"tag {tag!r} is not one of {', '.join(RATING_TAGS)}")
        given.add(tag)
    return [t for t in RATING_TAGS if t in given]


# ----------------------------------------------------------------------------- upserts


# These run on a Core ``Connection`` (from ``retrying_connection``, or
# ``session.connection()`` in the CSV import): ``add_rating`` is the hot write path and
# the ORM unit of work would triple its cost.

RATERS, CLIPS = Rater.__table__, Clip.__table__
RATINGS, HISTORY, COMPARISONS = Rating.__table__, RatingHistory.__table__, Comparison.__table__

# Statements of the hot path, built once (building them costs more than running them).
_SELECT_RATER = select(RATERS.c.id).where(RATERS.c.name == bindparam("name"))
_INSERT_RATER = insert(RATERS).returning(RATERS.c.id)
_SELECT_CLIP = select(CLIPS.c.id).where(CLIPS.c.id == bindparam("clip_id"))
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
)
_COUNT_RATING = (
    update(CLIPS).where(CLIPS.c.id == bindparam("clip_id")).values(n_ratings=CLIPS.c.n_ratings + 1)
)


def ensure_rater(connection: Connection, name: str) -> int:
    """Id of the rater ``name`` (already checked), created if new."""
    rater_id = connection.scalar(_SELECT_RATER, {"name": name})
    if rater_id is None:
        # A concurrent insert of the same name fails here; ``retrying`` runs it again.
        rater_id = connection.scalar(_INSERT_RATER, {"name": name, "created_at": utcnow()})
    return rater_id


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


def _winner_of_lo(clip_a: int, clip_b: int, winner: str) -> str:
    """The verdict relative to the sorted pair: 'lo', 'hi' or 'tie'."""
    if winner == "tie":
        return "tie"
    winning_clip = clip_a if winner == "a" else clip_b
    return "lo" if winning_clip == min(clip_a, clip_b) else "hi"


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
    if _winner_of_lo(old.clip_a_id, old.clip_b_id, old.winner) == _winner_of_lo(
        clip_a, clip_b, winner
    ):
        return old.id, "unchanged"
    connection.execute(
        update(COMPARISONS)
        .where(c.id == old.id)
        .values(clip_a_id=clip_a, clip_b_id=clip_b, winner=winner, updated_at=now)
    )
    return old.id, "updated"


def _require_clips(connection: Connection, *clip_ids: int) -> None:
    for clip_id in clip_ids:
        if connection.scalar(_SELECT_CLIP, {"clip_id": clip_id}) is None:
            raise ValueError(f"clip id {clip_id!r} does not exist")


def _check_clip_id(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} {value!r} is not an integer clip id")
    return int(value)


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
) -> int:
    """Record ``rater``'s star rating of a clip; returns the rating id.

    Re-rating the same clip updates the rating (the old value goes to
    ``rating_history``); the same value again changes nothing.

    Args:
        rater: rater name (created on first use).
        clip_id: an existing clip.
        stars: integer 1..5.
        tags: any of ``RATING_TAGS`` ("boring", "no structure", "surprising", "pleasant").
    """
    name = check_rater_name(rater)
    clip_id = _check_clip_id("clip id", clip_id)
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

    return retrying_connection(engine, work)


def add_comparison(engine: Engine, rater: str, clip_a: int, clip_b: int, winner: str) -> int:
    """Record which of two clips ``rater`` preferred; returns the comparison id.

    Args:
        rater: rater name (created on first use).
        clip_a, clip_b: two different existing clips, in the order they were presented.
        winner: ``"a"``, ``"b"`` or ``"tie"``.
    """
    name = check_rater_name(rater)
    clip_a = _check_clip_id("clip_a", clip_a)
    clip_b = _check_clip_id("clip_b", clip_b)
    if clip_a == clip_b:
        raise ValueError(f"clip {clip_a!r} cannot be compared with itself")
    winner = check_winner(winner)

    def work(connection: Connection) -> int:
        _require_clips(connection, clip_a, clip_b)
        rater_id = ensure_rater(connection, name)
        comparison_id, _ = upsert_comparison(connection, rater_id, clip_a, clip_b, winner, utcnow())
        return comparison_id

    return retrying_connection(engine, work)


def rater_count(engine: Engine, rater: str) -> int:
    """How many judgements (star ratings + comparisons) ``rater`` has given."""
    with session_scope(engine) as session:
        rater_id = session.scalar(select(Rater.id).where(Rater.name == rater.strip()))
        if rater_id is None:
            return 0
        n_ratings = session.scalar(select(func.count()).where(Rating.rater_id == rater_id))
        n_pairs = session.scalar(select(func.count()).where(Comparison.rater_id == rater_id))
        return int(n_ratings or 0) + int(n_pairs or 0)


def list_raters(engine: Engine) -> list[dict[str, Any]]:
    """All raters with their counts of ratings and comparisons, by name."""
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
            }
            for r in session.scalars(select(Rater).order_by(Rater.name))
        ]
