"""A clip's files, checked: the SHA-256 taken when a clip is stored, and what may be served.

A clip's MIDI and audio must never change under its id: a rating is stored against the
clip's tokens, so a file that changed would have the rater judge one melody while the
database records another. ``enqueue_clips`` and ``set_clip_audio`` record the SHA-256
of every file they are given (``sha256_file``); ``verified_audio`` hands the listening
app a clip's audio bytes only when the file lies under ``RLMUSIC_HOME`` (a path in the
database such as ``/etc/passwd`` is never read) and its bytes still hash to what was
recorded. The check hashes the very bytes that are served, so it costs one SHA-256 of a
clip's audio (a fraction of a millisecond; docs/benchmarks.md) and no second read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from db.engine import rlmusic_home


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 of ``data``, hex."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path | None) -> str | None:
    """The SHA-256 of a file, hex; None when there is no such file."""
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def under_home(path: str | Path, home: str | Path | None = None) -> bool:
    """Whether ``path``, with every symlink resolved, lies inside ``home`` (default
    ``RLMUSIC_HOME``)."""
    root = Path(home if home is not None else rlmusic_home()).expanduser().resolve()
    try:
        return Path(path).expanduser().resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a symlink loop
        return False


def verified_bytes(path: str | Path | None, sha256: str | None, home: str | Path | None = None) -> bytes | None:
    """The bytes of ``path`` when it lies under ``home`` (default ``RLMUSIC_HOME``) and
    they hash to ``sha256``; None otherwise (no hash recorded, a file outside, missing or
    changed): the caller renders the clip's tokens instead."""
    if not path or not sha256 or not under_home(path, home):
        return None
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    return data if sha256_bytes(data) == sha256 else None
