"""``rlmusic corpus build|info``: parse sources into a cached token corpus, or describe one."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlmusic.corpus.cache import load_corpus, save_corpus
from rlmusic.corpus.sources import parse_sources
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary
from rlmusic.runtime import json_safe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="corpus_command", required=True, metavar="{build,info}")
    for name, help_text in (
        ("build", "parse sources into a cached token corpus (uses the cache unless --rebuild)"),
        ("info", "print the summary of a corpus (built first when not cached)"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--source", action="append", default=None,
            help="corpus source, repeatable: bach, irish or midi:DIR; 'irish+bach' also works (default: irish)",
        )
        p.add_argument("--limit", type=int, default=None, help="first N pieces of each source (default: all)")
        p.add_argument("--min-pitch", type=int, default=DEFAULT_VOCAB.min_pitch, help="lowest MIDI pitch of the vocabulary")
        p.add_argument("--max-pitch", type=int, default=DEFAULT_VOCAB.max_pitch, help="highest MIDI pitch of the vocabulary")
        p.add_argument("--workers", type=int, default=2, help="parallel parser processes (when building)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "build":
            p.add_argument("--rebuild", action="store_true", help="ignore cached and shipped corpora and parse again")
            p.add_argument("--out", type=Path, default=None,
                           help="also write <key>.npz/.json into this folder (e.g. rlmusic/data/corpus to ship)")
            p.add_argument("--report", type=Path, default=None,
                           help="write a JSON report: counts, and every skipped piece or file with its reason")


def report(corpus) -> dict:
    """What ``--report`` writes: the summary counts and every skipped item with its reason."""
    return {
        "key": corpus.key, "sources": corpus.sources, "origin": corpus.origin, "n_pieces": len(corpus),
        "n_tokens": corpus.n_tokens, "splits": {k: len(v) for k, v in corpus.splits.items()},
        "skipped": corpus.skipped, "adjusted": corpus.adjusted,
        "skipped_items": corpus.skipped_items,
        **({} if corpus.skipped_items is not None else
           {"note": "this corpus was cached without its list of skipped items; --rebuild lists them"}),
    }


def main(args: argparse.Namespace) -> int:
    sources = [s for arg in (args.source or ["irish"]) for s in parse_sources(arg)]
    vocab = Vocabulary(args.min_pitch, args.max_pitch)
    corpus = load_corpus(
        sources, vocab, workers=args.workers, limit=args.limit,
        rebuild=getattr(args, "rebuild", False), progress=not args.quiet,
    )
    print(corpus.describe())
    if getattr(args, "out", None) is not None:
        print(f"wrote {save_corpus(corpus, args.out)}")
    if getattr(args, "report", None) is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(json_safe(report(corpus)), indent=2) + "\n")
        print(f"wrote {args.report}")
    return 0
