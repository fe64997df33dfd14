"""Options several commands share: ``--device`` and ``--threads``."""

from __future__ import annotations

import argparse

DEFAULT_THREADS = 1  # measured safe default: docs/benchmarks.md, "Threads"


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N")


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS,
        help=f"torch CPU threads (default {DEFAULT_THREADS}: never collapses on a busy machine; "
             "0 keeps torch's own choice, often faster on an idle one)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's threads from ``--threads`` (0: leave torch's choice)."""
    from rlmusic.runtime import set_threads

    threads = getattr(args, "threads", None)
    if threads is not None and threads < 0:
        raise ValueError(f"--threads must be >= 0, got {threads}")
    set_threads(threads or None)
