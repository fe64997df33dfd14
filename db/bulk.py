"""Many judgements at once (``rlmusic ratings import``): set-based writes in short
transactions that take their locks in one fixed order.

The lock order every writer of judgements keeps (so concurrent writers never deadlock,
on PostgreSQL as on SQLite): first the clip rows, in ascending id (``lock_clips``: ``SELECT
... ORDER BY id FOR UPDATE``), then the raters, in name order (``ensure_raters``: ``INSERT
... ON CONFLICT DO NOTHING``, so two writers creating the same new rater both succeed),
then the ratings or comparisons of those clips. ``add_rating`` and ``add_comparison``
(``db/ratings.py``) keep the same order for their one or two clips. Two writers touching a
clip therefore queue on its row, and nothing else they touch can cross.

A batch of ``BATCH_ROWS`` rows (in the order given, so ids follow the file) is one
transaction: lock its clips (in id order), create its raters (in name order), read the judgements it may replace, then write with one
executemany each: history rows, updates, inserts, and the clips' counters with one
``UPDATE clips SET n = n + k WHERE id IN (...)`` per distinct k. No lock is held longer
than one batch, so a rater's submit waits at most that long (``benchmarks/bench_db.py
--import-rows``); between batches on SQLite the writer pauses ``SQLITE_PAUSE_S`` so a
waiting app write can take the database-wide lock. Each batch commits whole; importing
the same file again changes nothing that is stored already, so an import that was
stopped half-way is finished by running it again.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    any_,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)

from db.checks import pair_verdict
from db.engine import DatabaseError, retrying_connection
from db.models import Clip, Comparison, Rater, Rating, RatingHistory, utcnow

RATERS, CLIPS = Rater.__table__, Clip.__table__
RATINGS, HISTORY, COMPARISONS = Rating.__table__, RatingHistory.__table__, Comparison.__table__

BATCH_ROWS = 2_000  # rows per transaction of an import (0: the whole file in one)
SQLITE_PAUSE_S = 0.02  # pause between batches on SQLite, so an app write gets the lock
IN_CHUNK = 5_000  # values per IN (...) list (SQLite allows 32,766 bound values a statement)


class ImportIncompleteError(DatabaseError):
    """An import stopped after some of its batches were committed (each batch whole);
    importing the same file again finishes it."""


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def is_in(connection: Connection, column: Column, values: Sequence[Any]):
    """``column IN (values)``; on PostgreSQL ``column = ANY(:array)``, one parameter
    instead of thousands (which the driver would parse one by one)."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def keys_in(connection: Connection, columns: Sequence[Column], keys: Sequence[tuple]):
    """``(columns) IN (keys)``, row values, as a subquery the database answers with an
    index search per key: PostgreSQL ``unnest`` of one array per column, SQLite
    ``json_each`` of one JSON list (a few parameters, however many keys)."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        arrays = [bindparam(None, [key[i] for key in keys], type_=ARRAY(col.type)) for i, col in enumerate(columns)]
        keyset = func.unnest(*arrays).table_valued(*(f"k{i}" for i in range(len(columns)))).render_derived()
        return tuple_(*columns).in_(select(*keyset.c))
    # SQLite: against json_each of one JSON parameter (a list of VALUES would be scanned
    # for every row of the table; this subquery lets it search the unique index instead).
    fields = [func.json_extract(literal_column("value"), f"$[{i}]") for i in range(len(columns))]
    return tuple_(*columns).in_(select(*fields).select_from(func.json_each(bindparam(None, json.dumps(keys)))))


def _insert_ignoring_conflicts(connection: Connection, table, index_elements: list[str]):
    """``INSERT ... ON CONFLICT (index_elements) DO NOTHING`` in the connection's dialect."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table).on_conflict_do_nothing(index_elements=index_elements)


# ----------------------------------------------------------------------------- the lock order


def lock_clips(connection: Connection, clip_ids: Iterable[int]) -> set[int]:
    """Lock the rows of ``clip_ids`` in ascending id (PostgreSQL; SQLite's lock is the
    whole database, taken at BEGIN IMMEDIATE); returns the ids that exist."""
    found: set[int] = set()
    for chunk in chunks(sorted(set(clip_ids))):
        query = select(CLIPS.c.id).where(is_in(connection, CLIPS.c.id, chunk)).order_by(CLIPS.c.id).with_for_update()
        found.update(connection.scalars(query))
    return found


def ensure_raters(connection: Connection, names: Iterable[str], now: datetime | None = None) -> dict[str, int]:
    """Ids of the raters ``names`` (already checked), the new ones created in name order
    with ``ON CONFLICT DO NOTHING`` (a concurrent writer creating the same rater is fine)."""
    wanted = sorted(set(names))
    ids: dict[str, int] = {}
    for chunk in chunks(wanted):
        ids.update(connection.execute(select(RATERS.c.name, RATERS.c.id).where(is_in(connection, RATERS.c.name, chunk))).all())
    missing = [name for name in wanted if name not in ids]
    if missing:
        now = now or utcnow()
        statement = _insert_ignoring_conflicts(connection, RATERS, ["name"])
        for chunk in chunks(missing, 1_000):
            connection.execute(statement, [{"name": name, "created_at": now} for name in chunk])
        for chunk in chunks(missing):
            ids.update(connection.execute(
                select(RATERS.c.name, RATERS.c.id).where(is_in(connection, RATERS.c.name, chunk))).all())
    return ids


def insert_many(connection: Connection, table, rows: list[dict[str, Any]]) -> None:
    """INSERT ``rows`` (dicts with the same keys) in bulk: PostgreSQL ``COPY``, SQLite the
    driver's executemany; each column's type conversion runs once per distinct value, not
    once per row (a batch shares its timestamps, and mostly its tags)."""
    if not rows:
        return
    dialect = connection.dialect
    columns = list(rows[0])
    compiled = insert(table).inline().values({c: bindparam(c) for c in columns}).compile(dialect=dialect)
    converters = []
    for column in columns:
        process = table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
        if process is None:
            converters.append(None)
            continue
        cache: dict[Any, Any] = {}

        def convert(value, process=process, cache=cache):
            key = tuple(value) if isinstance(value, list) else value
            if key not in cache:
                cache[key] = process(value)
            return cache[key]

        converters.append(convert)
    values = [[v if f is None else f(v) for f, v in zip(converters, (row[c] for c in columns))] for row in rows]
    if dialect.name == "postgresql":  # COPY: PostgreSQL's bulk load, in this transaction
        names = ", ".join(connection.dialect.identifier_preparer.quote(c) for c in columns)
        with connection.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        return
    if compiled.positiontup is not None:  # qmark (SQLite): tuples in the statement's order
        order = [columns.index(name) for name in compiled.positiontup]
        params: list[Any] = [tuple(v[i] for i in order) for v in values]
    else:  # pyformat (psycopg): dicts
        params = [dict(zip(columns, v)) for v in values]
    connection.exec_driver_sql(compiled.string, params)


def add_counts(connection: Connection, column: Column, counts: Counter) -> None:
    """``column += k`` for each clip id -> k of ``counts``: one statement per distinct k."""
    by_increment: dict[int, list[int]] = defaultdict(list)
    for clip_id, k in counts.items():
        if k:
            by_increment[k].append(clip_id)
    for k, ids in sorted(by_increment.items()):
        for chunk in chunks(sorted(ids)):
            connection.execute(update(CLIPS).where(is_in(connection, CLIPS.c.id, chunk)).values({column.name: column + k}))


def _locked_and_raters(connection: Connection, clip_ids: set[int], raters: Iterable[str], now: datetime):
    missing = clip_ids - lock_clips(connection, clip_ids)
    if missing:
        shown = sorted(missing)[:10]
        raise ValueError(f"clip ids {shown}{'...' if len(missing) > 10 else ''} do not exist (removed meanwhile?)")
    return ensure_raters(connection, raters, now)


# ----------------------------------------------------------------------------- batches

def _by_id(table, **values: str):
    """``UPDATE table SET column = :b_<name> ... WHERE id = :b_id``, for executemany."""
    params = {column: bindparam(f"b_{name}", type_=table.c[column].type) for column, name in values.items()}
    return update(table).where(table.c.id == bindparam("b_id")).values(params)


_UPDATE_RATING = _by_id(RATINGS, stars="stars", tags="tags", updated_at="updated_at")
_UPDATE_COMPARISON = _by_id(COMPARISONS, clip_a_id="clip_a", clip_b_id="clip_b", winner="winner",
                            updated_at="updated_at")


def write_star_batch(connection: Connection, rows: Sequence[Any], now: datetime) -> Counter:
    """Star rows (``clip_id``, ``rater``, ``stars``, ``tags``; ``tags=None`` keeps the stored
    ones) in one transaction; returns the counts of ``inserted``, ``updated``, ``unchanged``."""
    clip_ids = {r.clip_id for r in rows}
    raters = _locked_and_raters(connection, clip_ids, (r.rater for r in rows), now)
    c = RATINGS.c
    existing = {}  # (rater_id, clip_id) -> (rating id, stars): the ratings this batch may replace
    for chunk in chunks(sorted({(raters[r.rater], r.clip_id) for r in rows})):
        query = select(c.rater_id, c.clip_id, c.id, c.stars).where(keys_in(connection, (c.rater_id, c.clip_id), chunk))
        existing.update({(rater_id, clip_id): (i, stars) for rater_id, clip_id, i, stars in connection.execute(query)})
    # Tags and times (JSON, datetimes: slow to read) only of the ratings that may change.
    maybe = sorted({existing[key][0] for r in rows if (key := (raters[r.rater], r.clip_id)) in existing
                    and (r.tags is not None or existing[key][1] != r.stars)})
    details = {}
    for chunk in chunks(maybe):
        details.update({i: (list(tags), at) for i, tags, at in
                        connection.execute(select(c.id, c.tags, c.updated_at).where(is_in(connection, c.id, chunk)))})
    counts: Counter = Counter()
    new, history, changes = [], [], []
    for r in rows:
        rater_id = raters[r.rater]
        old = existing.get((rater_id, r.clip_id))
        if old is None:
            new.append({"rater_id": rater_id, "clip_id": r.clip_id, "stars": r.stars, "tags": r.tags or [],
                        "created_at": now, "updated_at": now})
            counts["inserted"] += 1
            continue
        rating_id, old_stars = old
        if rating_id not in details:  # same stars, no tags given: nothing to change
            counts["unchanged"] += 1
            continue
        old_tags, rated_at = details[rating_id]
        tags = old_tags if r.tags is None else r.tags
        if old_stars == r.stars and old_tags == tags:
            counts["unchanged"] += 1
            continue
        history.append({"rating_id": rating_id, "stars": old_stars, "tags": old_tags, "rated_at": rated_at,
                        "replaced_at": now})
        changes.append({"b_id": rating_id, "b_stars": r.stars, "b_tags": tags, "b_updated_at": now})
        counts["updated"] += 1
    if history:
        insert_many(connection, HISTORY, history)
        connection.execute(_UPDATE_RATING, changes)
    insert_many(connection, RATINGS, new)
    add_counts(connection, CLIPS.c.n_ratings, Counter(row["clip_id"] for row in new))
    return counts


def write_pair_batch(connection: Connection, rows: Sequence[Any], now: datetime) -> Counter:
    """Pairwise rows (``clip_a``, ``clip_b``, ``rater``, ``winner``) in one transaction;
    the same verdict in either presentation order is unchanged, another one replaces it."""
    clip_ids = {r.clip_a for r in rows} | {r.clip_b for r in rows}
    raters = _locked_and_raters(connection, clip_ids, (r.rater for r in rows), now)
    c = COMPARISONS.c
    existing = {}
    keys = sorted({(raters[r.rater], min(r.clip_a, r.clip_b), max(r.clip_a, r.clip_b)) for r in rows})
    for chunk in chunks(keys, IN_CHUNK // 2):
        query = select(c.id, c.rater_id, c.pair_lo, c.pair_hi, c.clip_a_id, c.clip_b_id, c.winner).where(
            keys_in(connection, (c.rater_id, c.pair_lo, c.pair_hi), chunk))
        existing.update({(row.rater_id, row.pair_lo, row.pair_hi): row for row in connection.execute(query)})
    counts: Counter = Counter()
    new, changes, pair_counts = [], [], Counter()
    for r in rows:
        lo, hi = min(r.clip_a, r.clip_b), max(r.clip_a, r.clip_b)
        old = existing.get((raters[r.rater], lo, hi))
        if old is None:
            new.append({"rater_id": raters[r.rater], "clip_a_id": r.clip_a, "clip_b_id": r.clip_b, "pair_lo": lo,
                        "pair_hi": hi, "winner": r.winner, "created_at": now, "updated_at": now})
            pair_counts.update((lo, hi))
            counts["inserted"] += 1
        elif pair_verdict(old.clip_a_id, old.clip_b_id, old.winner) == pair_verdict(r.clip_a, r.clip_b, r.winner):
            counts["unchanged"] += 1
        else:
            changes.append({"b_id": old.id, "b_clip_a": r.clip_a, "b_clip_b": r.clip_b, "b_winner": r.winner,
                            "b_updated_at": now})
            counts["updated"] += 1
    if changes:
        connection.execute(_UPDATE_COMPARISON, changes)
    insert_many(connection, COMPARISONS, new)
    add_counts(connection, CLIPS.c.n_comparisons, pair_counts)
    return counts


def write_rows(
    engine: Engine,
    kind: str,
    rows: Sequence[Any],
    *,
    batch_rows: int = BATCH_ROWS,
    timeout_s: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Counter:
    """Write checked star (``kind="stars"``) or pairwise rows in batches of ``batch_rows``
    (0: one transaction), in their order (so ids follow the file); each batch locks its
    clips in id order first. Returns the counts of each outcome.

    ``progress(done, total)`` is called after each committed batch. If a batch fails after
    others were committed, ``ImportIncompleteError`` says how far it got.
    """
    if batch_rows < 0:
        raise ValueError(f"batch_rows must be >= 0, got {batch_rows}")
    write = write_star_batch if kind == "stars" else write_pair_batch
    ordered = list(rows)
    size = batch_rows or max(1, len(ordered))
    now = utcnow()
    totals: Counter = Counter()
    done = 0
    for start in range(0, len(ordered), size):
        batch = ordered[start : start + size]
        if start and engine.dialect.name == "sqlite":
            time.sleep(SQLITE_PAUSE_S)
        try:
            totals += retrying_connection(engine, lambda c, b=batch: write(c, b, now), timeout_s=timeout_s)
        except Exception as exc:
            if not done:
                raise
            raise ImportIncompleteError(
                f"stopped after {done:,} of {len(ordered):,} rows ({type(exc).__name__}: {exc}); the rows "
                "written are whole batches: import the same file again to finish (stored rows stay unchanged)"
            ) from exc
        done += len(batch)
        if progress is not None:
            progress(done, len(ordered))
    return totals
