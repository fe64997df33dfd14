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


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per field of the config dataclass ``cls``, its help the field's
    comment (``field_docs``); unset flags stay None so a ``--config`` file can fill them."""
    from dataclasses import fields

    from rlmusic.runtime import field_docs

    defaults, docs = cls(), field_docs(cls)
    for f in fields(cls):
        default = getattr(defaults, f.name)
        kind = type(default) if default is not None else int
        parser.add_argument("--" + f.name.replace("_", "-"), type=kind, default=None,
                            help=f"{docs.get(f.name, f.name)} (default {default})")


def config_from_flags(args: argparse.Namespace, cls: type):
    """``cls`` from ``--config FILE`` (TOML keys) with the set flags on top."""
    from dataclasses import fields

    from rlmusic.runtime import read_table

    data: dict = read_table(args.config) if getattr(args, "config", None) else {}
    for f in fields(cls):
        value = getattr(args, f.name)
        if value is not None:
            data[f.name] = value
    return cls.from_dict(data)
