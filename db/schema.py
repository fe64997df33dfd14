"""Schema versions: upgrade, downgrade and check, all through Alembic.

The migrations live in the top-level ``alembic/`` folder next to this package (found
from ``db.__file__``, so it works from a checkout, an editable install and the tests).
The URL reaches ``alembic/env.py`` through ``Config.attributes["url"]``; the ``alembic``
command line may pass it as ``-x url=...``; otherwise env.py uses ``database_url()``.
``upgrade`` and ``downgrade`` hold ``migration_lock``, so two runs at once on one
database queue instead of failing.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from db.engine import (
    DatabaseError,
    SchemaOutOfDateError,
    database_url,
    explain_error,
    get_engine,
    redacted,
    sqlite_path,
)

LOCK_SUFFIX = ".migrate.lock"  # beside a SQLite file: held while its schema changes

ALEMBIC_DIR = Path(__file__).resolve().parent.parent / "alembic"
ALEMBIC_INI = ALEMBIC_DIR.parent / "alembic.ini"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` for ``url`` (default ``database_url()``).

    Reads ``alembic.ini`` when it is there (logging setup) but always points
    ``script_location`` at the ``alembic/`` folder beside this package.
    """
    if not ALEMBIC_DIR.is_dir():
        raise FileNotFoundError(f"alembic migrations folder not found at {ALEMBIC_DIR}")
    config = Config(str(ALEMBIC_INI) if ALEMBIC_INI.is_file() else None)
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["url"] = url or database_url()
    # env.py must not reconfigure logging when we are called as a library.
    config.attributes["configure_logging"] = False
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    """The newest migration's revision id (what this code expects)."""
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1, f"alembic history has several heads: {heads}"
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty (never migrated) database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Migrate the database at ``url`` (default ``database_url()``) up to ``revision``;
    concurrent calls on one database run one after the other (``migration_lock``)."""
    url = url or database_url()
    with migration_lock(url):
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"``: empty). This drops
    what the reverted migrations added (``"base"``: every rating): back up first
    (``db.backup``; ``rlmusic db downgrade`` asks and does)."""
    url = url or database_url()
    with migration_lock(url):
        command.downgrade(alembic_config(url), revision)


@contextmanager
def migration_lock(url: str) -> Iterator[None]:
    """Hold the lock that serialises schema changes of one database across processes:
    SQLite, an exclusive ``flock`` on ``<file>.migrate.lock`` beside it; PostgreSQL, an
    advisory lock keyed by the database and its first schema. A second ``rlmusic db
    upgrade`` waits, then finds the schema at head and does nothing."""
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + LOCK_SUFFIX), "a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return
    if make_url(url).get_backend_name() != "postgresql":
        yield
        return
    key = text("SELECT hashtext('rlmusic-migrate:' || current_database() || ':' || current_schema())")
    with get_engine(url).connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        lock_id = connection.scalar(key)
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_id})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_id})


def check_schema(engine: Engine | None = None) -> None:
    """Raise ``SchemaOutOfDateError`` unless the database is at the head revision, and
    ``DatabaseError`` (one line: URL, problem, what to do) when it cannot be reached."""
    engine = engine or get_engine()
    try:
        current = current_revision(engine)
    except OperationalError as exc:
        raise DatabaseError(explain_error(exc, engine.url.render_as_string(hide_password=False))) from None
    head = head_revision()
    if current != head:
        raise SchemaOutOfDateError(
            f"database schema is at {current or 'empty'}, code expects {head}: "
            f"run `rlmusic db upgrade` (database {redacted(engine.url)})"
        )
