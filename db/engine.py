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

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

T = TypeVar("T")

ENV_URL = "RLMUSIC_DATABASE_URL"
ENV_HOME = "RLMUSIC_HOME"
DEFAULT_HOME = "~/.rlmusic"
DB_FILENAME = "rlmusic.db"

SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for the lock before "locked"
SQLITE_POLL_MS = 20  # a write with a time bound (the app's) tries the SQLite lock in slices this long
LOCK_TIMEOUT_S = 30.0  # PostgreSQL lock_timeout of a write transaction (then it is retried)
STATEMENT_TIMEOUT_S = 120.0  # PostgreSQL statement_timeout of a write transaction
RETRY_ATTEMPTS = 12  # attempts of a write transaction before the error surfaces
RETRY_BASE_DELAY_S = 0.005  # first backoff; doubles each attempt, with jitter, capped below
RETRY_MAX_DELAY_S = 0.5
RETRY_POLL_DELAY_S = 0.005  # pause between the attempts of a write with a time bound

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


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None for another backend or an in-memory database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser()


class DatabaseError(RuntimeError):
    """The database cannot be used as configured: a bad URL, a server that cannot be
    reached, a database that does not exist, a schema behind the code. The message names
    the URL (password hidden) and what to do."""


class DatabaseBusyError(DatabaseError):
    """A write waited for other writers' locks longer than it may (``timeout_s``, or every
    retry); it wrote nothing and can be tried again as it was."""


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
    def _on_connect(dbapi_connection, record) -> None:
        # Let SQLAlchemy emit BEGIN itself (below) instead of pysqlite's implicit one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; fsync at checkpoints
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()
        record.info["rlmusic_busy_ms"] = SQLITE_BUSY_TIMEOUT_MS

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        options = connection.get_execution_options()
        write = options.get("rlmusic_write", False)
        busy_ms = int((options.get("rlmusic_busy_ms") if write else None) or SQLITE_BUSY_TIMEOUT_MS)
        info = connection.connection.info  # per DB-API connection: the busy timeout it has now
        if info.get("rlmusic_busy_ms") != busy_ms:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {busy_ms}")
            info["rlmusic_busy_ms"] = busy_ms
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


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
    bind = _write_bind(engine, None) if write else engine
    session = Session(bind, expire_on_commit=False)
    try:
        with session.begin():
            if write:
                _limit_waits(session.connection(), None)
            yield session
    finally:
        session.close()


# ----------------------------------------------------------------------------- contention

_LOCK_WAIT_SQLSTATES = ("55P03",)  # PostgreSQL lock_not_available (lock_timeout)
_RETRY_SQLSTATES = ("40001", "40P01") + _LOCK_WAIT_SQLSTATES  # + serialization failure, deadlock
_PG_TIMEOUTS = text("SELECT set_config('lock_timeout', :lock, true), "
                    "set_config('statement_timeout', :statement, true)")


def _is_lock_wait(exc: DBAPIError) -> bool:
    """Another writer held the lock for longer than this transaction would wait."""
    if isinstance(exc, OperationalError):
        text_ = str(exc.orig).lower()
        if "database is locked" in text_ or "database table is locked" in text_ or "busy" in text_:
            return True
    return getattr(exc.orig, "sqlstate", None) in _LOCK_WAIT_SQLSTATES


def _is_transient(exc: DBAPIError) -> bool:
    """Contention (or a dropped connection) that goes away if the work is run again."""
    if exc.connection_invalidated or _is_lock_wait(exc):
        return True
    if isinstance(exc, IntegrityError):
        return True  # a concurrent writer inserted the same unique key first
    return getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES


def _writer(engine: Engine, busy_ms: int | None = None) -> Engine:
    """``engine`` with the write flag set (SQLite: ``BEGIN IMMEDIATE`` after setting the busy
    timeout to ``busy_ms``); one per value, made once."""
    writers = engine.__dict__.setdefault("_rlmusic_writers", {})  # lives and dies with the engine
    writer = writers.get(busy_ms)
    if writer is None:
        writer = writers[busy_ms] = engine.execution_options(rlmusic_write=True, rlmusic_busy_ms=busy_ms)
    return writer


def _write_bind(engine: Engine, wait_s: float | None) -> Engine:
    """The writer of one attempt: SQLite waits for the lock ``SQLITE_BUSY_TIMEOUT_MS``, or,
    with a bound (``wait_s``), in slices of ``SQLITE_POLL_MS`` that ``_retry`` repeats, so a
    short writer gets in between a long writer's batches."""
    if engine.dialect.name != "sqlite":
        return _writer(engine)
    if wait_s is None:
        return _writer(engine, SQLITE_BUSY_TIMEOUT_MS)
    return _writer(engine, SQLITE_POLL_MS)


def _limit_waits(connection: Connection, wait_s: float | None) -> None:
    """PostgreSQL: bound this transaction's lock waits (``lock_timeout``) and statements
    (``statement_timeout``); a lock wait that runs out is retried by ``_retry``."""
    if connection.dialect.name == "postgresql":
        lock_s = LOCK_TIMEOUT_S if wait_s is None else min(LOCK_TIMEOUT_S, wait_s)
        connection.execute(_PG_TIMEOUTS, {"lock": f"{max(1, round(lock_s * 1000))}ms",
                                          "statement": f"{round(STATEMENT_TIMEOUT_S * 1000)}ms"})


def _retry(engine: Engine, run: Callable[[float | None], T], attempts: int, timeout_s: float | None) -> T:
    """Run ``run(wait_s)`` until it succeeds; transient contention is retried with backoff,
    ``attempts`` times, or, with ``timeout_s``, until that many seconds have passed (then
    ``DatabaseBusyError``)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    integrity_left = 3
    attempt = 0
    while True:
        wait_s = None if deadline is None else max(0.001, deadline - time.monotonic())
        try:
            return run(wait_s)
        except DBAPIError as exc:
            if not _is_transient(exc):
                raise
            if isinstance(exc, IntegrityError):
                integrity_left -= 1
                if integrity_left < 0:
                    raise
            attempt += 1
            if deadline is None:
                if attempt >= attempts:
                    raise DatabaseBusyError(_busy_message(engine, exc, attempts=attempt)) from exc
                delay = min(RETRY_MAX_DELAY_S, RETRY_BASE_DELAY_S * 2**attempt)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DatabaseBusyError(_busy_message(engine, exc, waited=timeout_s)) from exc
                delay = min(RETRY_POLL_DELAY_S, left)
            time.sleep(delay * (0.5 + random.random()))


def _busy_message(engine: Engine, exc: DBAPIError, *, attempts: int = 0, waited: float | None = None) -> str:
    first = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
    how = f"after {waited:g} s" if waited is not None else f"after {attempts} attempts"
    return (f"the database is busy ({first}) {how}; nothing was written, try again "
            f"(database {redacted(engine.url)})")


def retrying(
    engine: Engine,
    work: Callable[[Session], T],
    *,
    attempts: int = RETRY_ATTEMPTS,
    timeout_s: float | None = None,
) -> T:
    """Run ``work(session)`` in a write transaction, retrying transient contention.

    ``work`` must be safe to run again from the start (it re-reads what it needs). An
    ``IntegrityError`` is retried a few times only: a second run re-reads the row a
    concurrent writer just inserted; if it persists it is a real error and surfaces.

    Args:
        timeout_s: the longest the call may wait for other writers' locks, in all
            (``None``: each attempt waits up to ``SQLITE_BUSY_TIMEOUT_MS`` /
            ``LOCK_TIMEOUT_S``, ``attempts`` times); then ``DatabaseBusyError``, nothing written.
    """

    def run(wait_s: float | None) -> T:
        session = Session(_write_bind(engine, wait_s), expire_on_commit=False)
        try:
            with session.begin():
                _limit_waits(session.connection(), wait_s)
                return work(session)
        finally:
            session.close()

    return _retry(engine, run, attempts, timeout_s)


def retrying_connection(
    engine: Engine,
    work: Callable[[Connection], T],
    *,
    attempts: int = RETRY_ATTEMPTS,
    timeout_s: float | None = None,
) -> T:
    """As ``retrying``, with a Core ``Connection`` (the hot write paths: no ORM overhead)."""

    def run(wait_s: float | None) -> T:
        with _write_bind(engine, wait_s).begin() as connection:
            _limit_waits(connection, wait_s)
            return work(connection)

    return _retry(engine, run, attempts, timeout_s)
