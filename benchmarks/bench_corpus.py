"""Corpus build throughput: pieces/s with workers=1 vs workers=2 (same run), peak RSS.

    .venv/bin/python benchmarks/bench_corpus.py [--source irish] [--limit 200]

Both builds parse the same first ``--limit`` pieces without the cache. music21 is
imported (and one tune parsed) before timing, so neither side pays the import.
Peak RSS: this process (the workers=1 build runs in it) and the largest worker
process (``RUSAGE_CHILDREN`` keeps the maximum over children, not their sum); the
workers=2 build holds at most self + 2 x children at once.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

from rlmusic.corpus.build import build_corpus
from rlmusic.corpus.encode import encode_item
from rlmusic.music.representation import DEFAULT_VOCAB


def _mib(kib: int) -> float:
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20  # ru_maxrss: KiB on Linux, B on macOS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="irish", help="corpus source (bach, irish, midi:DIR)")
    parser.add_argument("--limit", type=int, default=200, help="first N pieces of the source")
    parser.add_argument("--workers", type=int, default=2, help="the parallel side of the comparison")
    args = parser.parse_args()

    encode_item(("irish", "irish:warmup", "X:1\nT:w\nM:4/4\nL:1/8\nK:G\nGABc d4|]\n"), DEFAULT_VOCAB)
    print(f"cpus: {os.cpu_count()}, source {args.source}, first {args.limit} pieces")
    rates = {}
    for workers in (1, args.workers):
        t0 = time.perf_counter()
        corpus = build_corpus([args.source], workers=workers, limit=args.limit, progress=False)
        dt = time.perf_counter() - t0
        tried = len(corpus) + sum(corpus.skipped.values())
        rates[workers] = tried / dt
        print(
            f"workers={workers}: {tried} pieces tried ({len(corpus)} kept, {corpus.n_tokens:,} tokens) "
            f"in {dt:.1f} s = {rates[workers]:.1f} pieces/s"
        )
    print(f"speed-up workers={args.workers} / workers=1: {rates[args.workers] / rates[1]:.2f}x")
    me = _mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    kids = _mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    print(f"peak RSS: main process {me:.0f} MiB, largest worker {kids:.0f} MiB "
          f"(parallel build <= {me + args.workers * kids:.0f} MiB in all)")


if __name__ == "__main__":
    main()
