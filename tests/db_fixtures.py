"""Fixtures shared by the tests/test_db*.py files (loaded with ``pytest_plugins``).

Every database test runs twice: on a SQLite file under ``tmp_path`` and on the
PostgreSQL server at ``RLMUSIC_TEST_POSTGRES_URL`` (default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). PostgreSQL is required, never
skipped: an unreachable server fails the tests. Each PostgreSQL test gets its own
schema (unique name, selected through ``search_path`` in the connection options) which
is dropped afterwards, so reruns and parallel runs never see each other's tables.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

import db

PG_URL = os.environ.get(
    "RLMUSIC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SCHEMA_PREFIX = "rlmusic_test_"

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """An autocommit engine on the PostgreSQL test database, to create/drop schemas."""
    engine = create_engine(
        PG_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 10}
    )
    # Schemas left by runs that were killed (their pid is gone) are dropped; those of
    # live runs, e.g. a parallel one, are left alone.
    with engine.connect() as connection:
        names = connection.exec_driver_sql(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %(p)s", {"p": SCHEMA_PREFIX + "%"}
        ).scalars()
        for name in list(names):
            pid = name[len(SCHEMA_PREFIX) :].split("_")[0]
            if pid.isdigit() and not _alive(int(pid)):
                connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
    yield engine
    engine.dispose()


def pg_schema_url(schema: str) -> str:
    """``PG_URL`` with ``search_path`` pinned to ``schema``."""
    assert re.fullmatch(r"[a-z0-9_]+", schema), schema
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path) -> Iterator[str]:
    """URL of an empty database (no tables, no alembic_version) on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'rlmusic.db'}"
        yield url
        db.dispose_engine(url)
        return
    admin = request.getfixturevalue("pg_admin")
    schema = f"{SCHEMA_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = pg_schema_url(schema)
    try:
        yield url
    finally:
        db.dispose_engine(url)
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def engine(db_url) -> Engine:
    """Engine on a database migrated to head."""
    db.upgrade(db_url)
    return db.get_engine(db_url)


@pytest.fixture
def two_models(engine, tmp_path) -> tuple[int, int]:
    """A prior and a model tuned from it."""
    prior = db.register_model(engine, name="prior", directory=tmp_path / "prior", kind="prior")
    tuned = db.register_model(
        engine, name="tuned", directory=tmp_path / "tuned", kind="tuned", parent_id=prior
    )
    return prior, tuned


def make_clips(n: int, steps: int = 16, seed: int = 0) -> list[dict]:
    """``n`` clip dicts of ``steps`` random tokens (deterministic for a seed)."""
    rng = random.Random(seed)
    return [
        {
            "tokens": [rng.randrange(0, 39) for _ in range(steps)],
            "midi_path": f"clips/{seed}_{i:04d}.mid",
            "seed": seed * 100_000 + i,
        }
        for i in range(n)
    ]


def snapshot(engine: Engine) -> tuple:
    """Everything the rating tables hold, to assert that a failed call changed nothing."""
    stars = db.star_rows(engine)
    history = [db.rating_history(engine, r["rating_id"]) for r in stars]
    return db.stats(engine), stars, db.pair_rows(engine), history


# Test modules get the helpers through these fixtures rather than by importing this
# module (an import before pytest loads it as a plugin would skip assert rewriting).


@pytest.fixture(name="make_clips")
def make_clips_fixture():
    """``make_clips(n, steps=16, seed=0)``: clip dicts for ``enqueue_clips``."""
    return make_clips


@pytest.fixture(name="rate_many")
def rate_many_fixture():
    """``rate_many(url, rater, clip_ids, seed)``: the writer of the concurrency tests."""
    return rate_many


@pytest.fixture(name="long_writer")
def long_writer_fixture():
    """``with long_writer(url, clip_id):`` another writer holds the lock a judgement of
    that clip needs (SQLite: the database's write lock; PostgreSQL: the clip's row)."""
    return long_writer


@pytest.fixture(name="state")
def state_fixture(engine):
    """``state()``: a snapshot of the rating tables of ``engine``."""
    return lambda: snapshot(engine)


# ----------------------------------------------------------------------------- workers
# Module-level so that multiprocessing (spawn) can import them in the children.


def rate_many(url: str, rater: str, clip_ids: list[int], seed: int) -> list[tuple[int, int]]:
    """Rate ``clip_ids`` in a shuffled order with random stars; returns (clip, stars)."""
    engine = db.get_engine(url)
    rng = random.Random(seed)
    order = list(clip_ids)
    rng.shuffle(order)
    given = []
    for clip_id in order:
        stars = rng.randint(1, 5)
        db.add_rating(engine, rater, clip_id, stars)
        given.append((clip_id, stars))
    return given


@contextmanager
def long_writer(url: str, clip_id: int) -> Iterator[None]:
    """Another writer holding the lock a rating of ``clip_id`` needs, until the block ends:
    SQLite's database-wide write lock, PostgreSQL's row lock on the clip."""
    path = db.sqlite_path(url)
    if path is not None:
        conn = sqlite3.connect(str(path), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            conn.execute("ROLLBACK")
            conn.close()
        return
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT id FROM clips WHERE id = :c FOR UPDATE"), {"c": clip_id})
        try:
            yield
        finally:
            conn.rollback()
    engine.dispose()
