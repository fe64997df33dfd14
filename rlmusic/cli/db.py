"""``rlmusic db upgrade|current|downgrade``: the database schema (Alembic migrations).

Every subcommand takes ``--url`` (default: ``RLMUSIC_DATABASE_URL``, else the SQLite file
under ``RLMUSIC_HOME``).
"""

from __future__ import annotations

import argparse

from db.engine import database_url, get_engine, redacted
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
    p = sub.add_parser("downgrade", help="migrate the schema down to REVISION ('base': empty)")
    p.add_argument("revision", help="target revision, e.g. 'base' or '-1'")
    add_url(p)


def main(args: argparse.Namespace) -> int:
    url = args.url or database_url()
    if args.action == "upgrade":
        upgrade(url, args.revision)
        print(f"{redacted(url)}: schema at {current_revision(get_engine(url))}")
        return 0
    if args.action == "downgrade":
        downgrade(url, args.revision)
        print(f"{redacted(url)}: schema at {current_revision(get_engine(url)) or 'empty'}")
        return 0
    current = current_revision(get_engine(url))
    head = head_revision()
    state = "up to date" if current == head else f"out of date, head is {head}"
    print(f"{redacted(url)}: schema at {current or 'empty'} ({state})")
    return 0 if current == head else 1
