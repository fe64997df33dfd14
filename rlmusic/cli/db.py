"""``rlmusic db upgrade|current|downgrade|backup``: the database schema (Alembic
migrations) and its backups.

Every subcommand takes ``--url`` (default: ``RLMUSIC_DATABASE_URL``, else the SQLite file
under ``RLMUSIC_HOME``). ``downgrade`` drops what the reverted migrations hold (``base``:
every rating): it asks for confirmation (or ``--yes``) and, on SQLite, writes a backup
of the file first; on PostgreSQL it says how to ``pg_dump``.
"""

from __future__ import annotations

import argparse
import sys

from db.backup import backup_database, backup_sqlite, pg_dump_hint
from db.engine import database_url, get_engine, redacted, sqlite_path
from db.schema import current_revision, downgrade, head_revision, upgrade


def add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help="database URL (default: $RLMUSIC_DATABASE_URL, else $RLMUSIC_HOME/rlmusic.db)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("upgrade", help="migrate the schema up (creates the database if new)")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    add_url(p)
    p = sub.add_parser("current", help="print the schema revision and whether it is up to date")
    add_url(p)
    p = sub.add_parser("downgrade", help="migrate the schema down to REVISION ('base': empty), "
                                         "after a backup (SQLite) and a confirmation")
    p.add_argument("revision", help="target revision, e.g. 'base' or '-1'")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--backup", help="SQLite: write the backup here (default: beside the database)")
    add_url(p)
    p = sub.add_parser("backup", help="back up the database: SQLite copies the file, "
                                      "PostgreSQL runs pg_dump (custom format)")
    p.add_argument("--out", help="backup file (default: beside the SQLite file, or in the working folder)")
    add_url(p)


def confirm(question: str) -> bool:
    """Ask on the terminal; without one (a script, a pipe) the answer is no."""
    if not sys.stdin.isatty():
        return False
    return input(f"{question} Type 'yes' to go on: ").strip().lower() == "yes"


def run_downgrade(url: str, args: argparse.Namespace) -> int:
    current = current_revision(get_engine(url))
    path = sqlite_path(url)
    what = (f"{redacted(url)}: downgrading the schema from {current or 'empty'} to {args.revision} "
            "drops the tables and columns of the reverted migrations"
            + (" (every rating, comparison and clip)" if args.revision == "base" else ""))
    what += "; a backup of the file is written first" if path is not None else f"; {pg_dump_hint(url)}"
    if not args.yes and not confirm(what + "."):
        raise ValueError(f"{what}. Nothing done: confirm on a terminal or pass --yes")
    if path is not None and path.is_file():
        print(f"db: backed up {path} to {backup_sqlite(url, args.backup)}")
    elif path is None:
        print(f"db: {redacted(url)}: not backed up here; {pg_dump_hint(url)}")
    downgrade(url, args.revision)
    print(f"{redacted(url)}: schema at {current_revision(get_engine(url)) or 'empty'}")
    return 0


def main(args: argparse.Namespace) -> int:
    url = args.url or database_url()
    if args.action == "upgrade":
        upgrade(url, args.revision)
        print(f"{redacted(url)}: schema at {current_revision(get_engine(url))}")
        return 0
    if args.action == "downgrade":
        return run_downgrade(url, args)
    if args.action == "backup":
        print(f"db: backed up {redacted(url)} to {backup_database(url, args.out)}")
        return 0
    current = current_revision(get_engine(url))
    head = head_revision()
    state = "up to date" if current == head else f"out of date, head is {head}"
    print(f"{redacted(url)}: schema at {current or 'empty'} ({state})")
    return 0 if current == head else 1
