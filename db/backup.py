"""Backups of the ratings database (``rlmusic db backup``: ``backup_database``;
``rlmusic db downgrade`` writes one first).

SQLite: a consistent copy of the file through SQLite's online backup API (safe while the
app writes; what is still in the WAL is included), by default beside the database as
``rlmusic.db.backup-<UTC time>``. To restore: stop the app and the workers, then copy the
backup over the database file and delete the ``-wal`` and ``-shm`` files beside it.

PostgreSQL: ``pg_dump --format=custom`` (``pg_dump_command`` says how, with the password
passed in ``PGPASSWORD``, never on the command line). To restore: ``pg_restore --clean
--if-exists --dbname=URL FILE``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy.engine import make_url

from db.engine import DatabaseError, redacted, sqlite_path


def default_backup_path(url: str) -> Path:
    """Where a backup goes by default: beside a SQLite file, else in the working folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = sqlite_path(url)
    if path is not None:
        return path.with_name(f"{path.name}.backup-{stamp}")
    return Path(f"rlmusic-{make_url(url).database or 'db'}-{stamp}.dump")


def backup_sqlite(url: str, dest: str | Path | None = None) -> Path:
    """Copy the SQLite database of ``url`` to ``dest`` (default ``default_backup_path``)."""
    source = sqlite_path(url)
    if source is None or not source.is_file():
        raise DatabaseError(f"{redacted(url)}: no SQLite database file to back up")
    dest = Path(dest) if dest is not None else default_backup_path(url)
    if dest.exists():
        raise ValueError(f"backup {dest} exists already; choose another file")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    src = sqlite3.connect(str(source))
    try:
        dst = sqlite3.connect(str(tmp))
        try:
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    os.replace(tmp, dest)
    return dest


def pg_dump_command(url: str, dest: str | Path) -> tuple[list[str], dict[str, str]]:
    """The ``pg_dump`` command line (custom format) that backs up the database of ``url``
    to ``dest``, and the environment it needs (``PGPASSWORD`` when the URL has one). A
    ``search_path`` in the URL's options limits the dump to that schema."""
    parsed = make_url(url)
    host = parsed.host or "localhost"
    uri = f"postgresql://{quote(parsed.username or '', safe='')}@{host}:{parsed.port or 5432}/{parsed.database or ''}"
    command = ["pg_dump", "--format=custom", f"--file={dest}", f"--dbname={uri}"]
    options = str(parsed.query.get("options", ""))
    if "search_path=" in options:
        command.append(f"--schema={options.split('search_path=', 1)[1].split()[0].split(',')[0]}")
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    return command, env


def pg_dump_hint(url: str) -> str:
    """In words: how to back up a PostgreSQL database with pg_dump."""
    command, env = pg_dump_command(url, default_backup_path(url))
    prefix = "PGPASSWORD=... " if env else ""
    return f"back it up first with: {prefix}{shlex.join(command)}"


def backup_database(url: str, dest: str | Path | None = None) -> Path:
    """Back up the database of ``url`` to ``dest``: SQLite by copying the file, PostgreSQL
    with ``pg_dump`` (``DatabaseError`` with the command to run when it is not installed
    or fails)."""
    if sqlite_path(url) is not None:
        return backup_sqlite(url, dest)
    dest = Path(dest) if dest is not None else default_backup_path(url)
    command, env = pg_dump_command(url, dest)
    if shutil.which("pg_dump") is None:
        raise DatabaseError(f"pg_dump is not installed here; {pg_dump_hint(url)}")
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:
        dest.unlink(missing_ok=True)
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise DatabaseError(f"pg_dump of {redacted(url)} failed: {first}")
    return dest
