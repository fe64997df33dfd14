"""``rlmusic ratings import|export``: ratings as CSV (``clip_id,rater,stars`` or
``clip_a,clip_b,rater,winner``; the header decides). Bad rows are reported with their
line numbers and nothing is written. A good file is written in batches of ``--batch-rows``
rows, each committed whole (``db.bulk``); importing the same file again finishes a
stopped import and changes nothing that is stored already.

``ratings export --full F.jsonl`` writes every judgement (star ratings and comparisons)
joined with its clips' tokens, model, round and study, one JSON object a line
(``db/dataset.py``), so a study can be analysed elsewhere."""

from __future__ import annotations

import argparse

from tqdm.auto import tqdm

from db.bulk import BATCH_ROWS
from db.csvio import export_ratings, import_ratings
from db.dataset import export_full
from db.engine import database_url, get_engine
from db.schema import check_schema
from rlmusic.cli.db import add_url


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser(
        "import",
        help="import star rows (clip_id,rater,stars) or pairwise rows "
        "(clip_a,clip_b,rater,winner); the header decides",
    )
    p.add_argument("file", help="CSV file with a header line")
    p.add_argument("--batch-rows", type=int, default=BATCH_ROWS,
                   help=f"rows per transaction (default {BATCH_ROWS:,}: raters wait at most one batch; "
                        "0: the whole file in one, all or nothing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_url(p)
    p = sub.add_parser("export", help="export ratings in the same CSV formats, or (--full) every judgement "
                                      "with its clips as JSON lines")
    p.add_argument("file", nargs="?", help="CSV file to write")
    p.add_argument("--full", metavar="F.jsonl",
                   help="instead: every star rating and comparison with its clips' tokens, model, round and "
                        "study, one JSON object a line")
    p.add_argument(
        "--kind",
        choices=("stars", "pairs"),
        default="stars",
        help="star ratings or pairwise comparisons (default: stars)",
    )
    add_url(p)


def main(args: argparse.Namespace) -> int:
    engine = get_engine(args.url or database_url())
    check_schema(engine)
    if args.action == "import":
        with tqdm(total=None, unit="row", desc="import", disable=args.no_progress or None,
                  dynamic_ncols=True) as bar:
            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            counts = import_ratings(engine, args.file, batch_rows=args.batch_rows, progress=progress)
        print(
            f"{args.file}: {counts['rows']} {counts['kind']} rows: {counts['inserted']} new, "
            f"{counts['updated']} updated, {counts['unchanged']} unchanged"
        )
        return 0
    if (args.file is None) == (args.full is None):
        raise ValueError("give either a CSV file to write or --full F.jsonl")
    if args.full is not None:
        counts = export_full(engine, args.full)
        print(f"{args.full}: wrote {counts['ratings']} star ratings and {counts['comparisons']} comparisons "
              "with their clips")
        return 0
    n = export_ratings(engine, args.file, kind=args.kind)
    print(f"{args.file}: wrote {n} {args.kind} rows")
    return 0
