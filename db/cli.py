"""``rlmusic db upgrade|current|downgrade`` and ``rlmusic ratings import|export``.

Routed from ``rlmusic/cli.py``; bad input raises ``ValueError`` (printed there as one
line). Every subcommand takes ``--url`` (default: ``RLMUSIC_DATABASE_URL``, else the
SQLite file under ``RLMUSIC_HOME``).
"""

from __future__ import annotations

import argparse

from db.csvio import export_ratings, import_ratings
from db.engine import database_url, get_engine
from db.schema import (
    SchemaOutOfDateError,
    check_schema,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _add_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=None,
        help="database URL (default: $RLMUSIC_DATABASE_URL, else $RLMUSIC_HOME/rlmusic.db)",
    )


def add_db_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("upgrade", help="migrate the schema up (creates the database if new)")
    p.add_argument("--revision", default="head", help="target revision (default: head)")
    _add_url(p)
    p = sub.add_parser("current", help="print the schema revision and whether it is up to date")
    _add_url(p)
    p = sub.add_parser("downgrade", help="migrate the schema down to REVISION ('base': empty)")
    p.add_argument("revision", help="target revision, e.g. 'base' or '-1'")
    _add_url(p)


def db_main(args: argparse.Namespace) -> int:
    url = args.url or database_url()
    if args.action == "upgrade":
        upgrade(url, args.revision)
        print(f"{_redacted(url)}: schema at {current_revision(get_engine(url))}")
        return 0
    if args.action == "downgrade":
        downgrade(url, args.revision)
        print(f"{_redacted(url)}: schema at {current_revision(get_engine(url)) or 'empty'}")
        return 0
    current = current_revision(get_engine(url))
    head = head_revision()
    state = "up to date" if current == head else f"out of date, head is {head}"
    print(f"{_redacted(url)}: schema at {current or 'empty'} ({state})")
    return 0 if current == head else 1


def add_ratings_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "import",
        help="import star rows (clip_id,rater,stars) or pairwise rows "
        "(clip_a,clip_b,rater,winner); the header decides",
    )
    p.add_argument("file", help="CSV file with a header line")
    _add_url(p)
    p = sub.add_parser("export", help="export ratings in the same CSV formats")
    p.add_argument("file", help="CSV file to write")
    p.add_argument(
        "--kind",
        choices=("stars", "pairs"),
        default="stars",
        help="star ratings or pairwise comparisons (default: stars)",
    )
    _add_url(p)


def ratings_main(args: argparse.Namespace) -> int:
    engine = get_engine(args.url or database_url())
    try:
        check_schema(engine)
    except SchemaOutOfDateError as exc:
        raise ValueError(str(exc)) from exc
    if args.action == "import":
        counts = import_ratings(engine, args.file)
        print(
            f"{args.file}: {counts['rows']} {counts['kind']} rows: {counts['inserted']} new, "
            f"{counts['updated']} updated, {counts['unchanged']} unchanged"
        )
        return 0
    n = export_ratings(engine, args.file, kind=args.kind)
    print(f"{args.file}: wrote {n} {args.kind} rows")
    return 0
