"""Alembic environment: runs the migrations against the rlmusic database.

The URL, first match wins: ``config.attributes["url"]`` (set by ``db.upgrade`` and the
tests), ``-x url=...`` on the alembic command line, then ``db.database_url()``
(``RLMUSIC_DATABASE_URL`` or the default SQLite file). The engine is ``db.get_engine``'s,
so SQLite gets the same pragmas (WAL, busy timeout, foreign keys) as the application.
SQLite cannot ALTER most things, so migrations run in batch mode there
(``render_as_batch``: copy-and-rename tables). Copying a table that other rows point to
(clips under ratings) is refused while SQLite enforces foreign keys, so they are off for
the migration (SQLite's documented procedure for schema changes), every reference is
checked with ``PRAGMA foreign_key_check`` before the migration commits, and they are on
again afterwards.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from db.engine import database_url, get_engine
from db.models import Base

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name)

target_metadata = Base.metadata


def _url() -> str:
    return (
        config.attributes.get("url")
        or context.get_x_argument(as_dictionary=True).get("url")
        or database_url()
    )


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    """What autogenerate / ``alembic check`` compares.

    SQLite cannot reflect an index with a sort order (``priority DESC``) as such, so
    comparing one always reports a false change there; those indexes are compared on
    PostgreSQL only (the test suite runs the check on both backends).
    """
    if type_ == "index" and context.get_context().dialect.name == "sqlite":
        index = compare_to if reflected else obj
        if index is not None and any(not hasattr(e, "name") for e in index.expressions):
            return False
    return True


def _configure_kwargs(dialect_name: str) -> dict:
    return {
        "target_metadata": target_metadata,
        "include_object": _include_object,
        "render_as_batch": dialect_name == "sqlite",
        "compare_type": True,
        "compare_server_default": False,  # server defaults render differently per backend
    }


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) instead of running it."""
    url = _url()
    dialect_name = url.split(":", 1)[0].split("+", 1)[0]
    context.configure(url=url, literal_binds=True, **_configure_kwargs(dialect_name))
    with context.begin_transaction():
        context.run_migrations()


def _check_foreign_keys(connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"migration left {len(broken)} broken references, e.g. {tuple(broken[0])}; "
                           "nothing was changed")


def run_migrations_online() -> None:
    engine = get_engine(_url())
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        raw = connection.connection.dbapi_connection  # autocommit (db.engine): no BEGIN of SQLAlchemy's
        if sqlite:  # outside any transaction: SQLite ignores the pragma inside one
            raw.execute("PRAGMA foreign_keys = OFF")
        try:
            context.configure(connection=connection, **_configure_kwargs(connection.dialect.name))
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    _check_foreign_keys(connection)
        finally:
            if sqlite:
                connection.rollback()
                raw.execute("PRAGMA foreign_keys = ON")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
