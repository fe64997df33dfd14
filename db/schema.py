"""Schema versions: upgrade, downgrade and check, all through Alembic.

The migrations live in the top-level ``alembic/`` folder next to this package (found
from ``db.__file__``, so it works from a checkout, an editable install and the tests).
The URL reaches ``alembic/env.py`` through ``Config.attributes["url"]``; the ``alembic``
command line may pass it as ``-x url=...``; otherwise env.py uses ``database_url()``.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from db.engine import (
    DatabaseError,
    SchemaOutOfDateError,
    database_url,
    explain_error,
    get_engine,
    redacted,
)

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
    """Migrate the database at ``url`` (default ``database_url()``) up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``"base"``: empty)."""
    command.downgrade(alembic_config(url), revision)


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
