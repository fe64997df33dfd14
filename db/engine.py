"""Where the database is, the engine (one per URL), sessions, and retrying on contention.

``RLMUSIC_DATABASE_URL`` picks the database; by default it is a SQLite file
``$RLMUSIC_HOME/rlmusic.db`` (``RLMUSIC_HOME`` defaults to ``~/.rlmusic``). SQLite runs
in WAL mode (readers never block the writer) with a busy timeout, and every write
transaction starts with ``BEGIN IMMEDIATE`` so two writers queue on the lock instead of
deadlocking on a read-to-write upgrade. What still fails under contention ("database is
locked", a PostgreSQL serialization failure or a unique-key race) is retried with backoff
by ``retrying``, so callers never see it.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

T = TypeVar("T")

ENV_URL = "RLMUSIC_DATABASE_URL"
ENV_HOME = "RLMUSIC_HOME"
DEFAULT_HOME = "~/.rlmusic"
DB_FILENAME = "rlmusic.db"

SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for the lock before "locked"
RETRY_ATTEMPTS = 12  # attempts of a write transaction before the error surfaces
RETRY_BASE_DELAY_S = 0.005  # first backoff; doubles each attempt, with jitter, capped below
RETRY_MAX_DELAY_S = 0.5

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def rlmusic_home() -> Path:
    """``$RLMUSIC_HOME`` (default ``~/.rlmusic``), expanded; not created here."""
    return Path(os.environ.get(ENV_HOME) or DEFAULT_HOME).expanduser()


def database_url() -> str:
    """``$RLMUSIC_DATABASE_URL``, else the SQLite file ``$RLMUSIC_HOME/rlmusic.db``."""
    url = os.environ.get(ENV_URL)
    if url:
        return url
    return f"sqlite:///{rlmusic_home() / DB_FILENAME}"


class DatabaseError(RuntimeError):
    """The database cannot be used as configured: a bad URL, a server that cannot be
    reached, a database that does not exist, a schema behind the code. The message names
    the URL (password hidden) and what to do."""


class SchemaOutOfDateError(RuntimeError):
    """The database's schema revision is not the one this code was written for."""


def redacted(url: str | object) -> str:
    """The URL with its password hidden (``***``)."""
    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL: show its scheme only
        return str(url).split("://", 1)[0] + "://..."


def check_url(url: str) -> None:
    """Raise ``DatabaseError`` for a URL no installed driver can open, saying what to write."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseError(f"cannot parse the database URL {redacted(url)!r}: {exc}; "
                            "write e.g. sqlite:////path/rlmusic.db or "
                            "postgresql+psycopg://USER@HOST:5432/DBNAME") from None
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        fixed = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=True)
        raise DatabaseError(f"database URL {redacted(url)} names a driver that is not installed; "
                            f"rlmusic uses psycopg 3: write {fixed}")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(f"database URL {redacted(url)}: only SQLite and PostgreSQL are supported")


def explain_error(exc: BaseException, url: str | None = None) -> str | None:
    """One line for a database problem a user can fix (None for anything else): the URL
    (password hidden), what went wrong, what to do."""
    if isinstance(exc, (DatabaseError, SchemaOutOfDateError)):
        return str(exc)
    where = redacted(url or database_url())
    if isinstance(exc, OperationalError):
        text = str(exc.orig if getattr(exc, "orig", None) is not None else exc).strip().splitlines()[0]
        if "does not exist" in text and "database" in text:
            return (f"{where}: {text}; create it (e.g. createdb) or point RLMUSIC_DATABASE_URL "
                    "at an existing database")
        if any(k in text.lower() for k in ("connection refused", "could not connect", "connection failed",
                                           "timeout", "no such host", "name or service not known")):
            return (f"cannot reach the database server of {where}: {text}; is the server running? "
                    "(RLMUSIC_DATABASE_URL selects the database)")
        if "unable to open database file" in text:
            return f"{where}: cannot open the SQLite file: {text}; check the folder exists and is writable"
        return f"{where}: {text}"
    return None


def _configure_sqlite(engine: Engine) -> None:
    """WAL, busy timeout, foreign keys, and explicit BEGIN (IMMEDIATE for writes)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; fsync at checkpoints
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        immediate = connection.get_execution_options().get("rlmusic_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def get_engine(url: str | None = None) -> Engine:
    """The engine for ``url`` (default ``database_url()``), created once per URL.

    A SQLite file's folder is created if missing. The schema is not created here: run
    ``rlmusic db upgrade`` (``db.upgrade``); ``db.check_schema`` says when it is needed.
    """
    url = url or database_url()
    with _engines_lock:
        engine = _engines.get(url)
        if engine is not None:
            return engine
        check_url(url)
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            _configure_sqlite(engine)
        else:
            # No pool_pre_ping (a round trip per transaction): a connection the server
            # dropped fails once, is invalidated, and ``retrying`` runs the work again.
            engine = create_engine(url)
        _engines[url] = engine
        return engine


def _forget_engines_in_child() -> None:
    """After ``fork``: the child must not share the parent's pooled connections."""
    global _engines_lock
    _engines_lock = threading.Lock()  # may have been held by a parent thread
    for engine in _engines.values():
        engine.dispose(close=False)  # drop the pool without closing the parent's sockets
    _engines.clear()


os.register_at_fork(after_in_child=_forget_engines_in_child)


def dispose_engine(url: str) -> None:
    """Close and forget the cached engine of ``url`` (tests, and after forking)."""
    with _engines_lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """One session = one transaction: committed on success, rolled back on error.

    Args:
        engine: from ``get_engine``.
        write: the transaction will write; on SQLite it then takes the write lock at
            BEGIN (``BEGIN IMMEDIATE``), so it waits for other writers up front.
    """
    bind = _writer(engine) if write else engine
    session = Session(bind, expire_on_commit=False)
    try:
        with session.begin():
            yield session
    finally:
        session.close()


def _is_transient(exc: DBAPIError) -> bool:
    """Contention (or a dropped connection) that goes away if the work is run again."""
    if exc.connection_invalidated:
        return True
    if isinstance(exc, IntegrityError):
        return True  # a concurrent writer inserted the same unique key first
    if isinstance(exc, OperationalError):
        text = str(exc.orig).lower()
        if "database is locked" in text or "database table is locked" in text or "busy" in text:
            return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return sqlstate in ("40001", "40P01")  # PostgreSQL serialization failure, deadlock


def _writer(engine: Engine) -> Engine:
    """``engine`` with the write flag set (SQLite: ``BEGIN IMMEDIATE``); made once."""
    writer = getattr(engine, "_rlmusic_writer", None)
    if writer is None:
        writer = engine.execution_options(rlmusic_write=True)
        engine._rlmusic_writer = writer  # lives and dies with the engine
    return writer


def _retry(run: Callable[[], T], attempts: int) -> T:
    integrity_left = 3
    for attempt in range(attempts):
        try:
            return run()
        except DBAPIError as exc:
            if not _is_transient(exc) or attempt == attempts - 1:
                raise
            if isinstance(exc, IntegrityError):
                integrity_left -= 1
                if integrity_left < 0:
                    raise
            delay = min(RETRY_MAX_DELAY_S, RETRY_BASE_DELAY_S * 2**attempt)
            time.sleep(delay * (0.5 + random.random()))
    raise AssertionError("unreachable")  # the loop returns or raises


def retrying(engine: Engine, work: Callable[[Session], T], *, attempts: int = RETRY_ATTEMPTS) -> T:
    """Run ``work(session)`` in a write transaction, retrying transient contention.

    ``work`` must be safe to run again from the start (it re-reads what it needs). An
    ``IntegrityError`` is retried a few times only: a second run re-reads the row a
    concurrent writer just inserted; if it persists it is a real error and surfaces.
    """

    def run() -> T:
        with session_scope(engine, write=True) as session:
            return work(session)

    return _retry(run, attempts)


def retrying_connection(
    engine: Engine, work: Callable[[Connection], T], *, attempts: int = RETRY_ATTEMPTS
) -> T:
    """As ``retrying``, with a Core ``Connection`` (the hot write paths: no ORM overhead)."""

    def run() -> T:
        with _writer(engine).begin() as connection:
            return work(connection)

    return _retry(run, attempts)
