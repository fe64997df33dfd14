"""A clip's files, checked: the SHA-256 taken when a clip is stored, and what may be served.

A clip's MIDI and audio must never change under its id: a rating is stored against the
clip's tokens, so a file that changed would have the rater judge one melody while the
database records another. ``enqueue_clips`` and ``set_clip_audio`` record the SHA-256
of every file they are given (``sha256_file``); ``verified_audio`` hands the listening
app a clip's audio bytes only when the file lies under ``RLMUSIC_HOME`` (a path in the
database such as ``/etc/passwd`` is never read) and its bytes still hash to what was
recorded. The check hashes the very bytes that are served, so it costs one SHA-256 of a
clip's audio (a fraction of a millisecond; docs/benchmarks.md) and no second read.
``stored_midi`` says which given files are stored clips' MIDI and whether their bytes still
hash to what was recorded: the commands that read a MIDI file (``rlmusic.cli.stored_clips``)
use a stored clip's file only while it does.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, inspect, null, select

from db.engine import rlmusic_home
from db.models import Clip

PATHS_PER_QUERY = 1000  # bound parameters of one IN (...) list


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


@dataclass(frozen=True)
class StoredMidi:
    """A file that is the MIDI file of a stored clip, and what its bytes hash to now."""

    clip_id: int
    path: str  # the file as the caller named it
    recorded_sha256: str | None  # when the clip was stored; None: before revision 0004, or no file then
    sha256: str | None  # of the file's bytes now; None: no such file

    @property
    def checked(self) -> bool:
        """Whether a hash was recorded to check against (clips stored before revision
        0004 have none: unchecked, never reported as changed)."""
        return self.recorded_sha256 is not None

    @property
    def changed(self) -> bool:
        """Whether the file no longer holds what was stored (bytes that hash otherwise, or
        no file at all)."""
        return self.checked and self.sha256 != self.recorded_sha256


def path_spellings(path: str | Path) -> set[str]:
    """The absolute spellings of ``path`` a clip's ``midi_path`` may have been stored
    under: as given (``~`` expanded, made absolute) and with every symlink resolved."""
    given = Path(path).expanduser()
    spellings = {os.path.abspath(given)}
    try:
        spellings.add(str(given.resolve()))
    except (OSError, RuntimeError):  # a symlink loop
        pass
    return spellings


def stored_midi(engine: Engine, paths: Iterable[str | Path]) -> list[StoredMidi]:
    """The stored clips whose ``midi_path`` is one of ``paths``, each with the SHA-256
    recorded when it was stored and the SHA-256 of the file's bytes now; in the order of
    ``paths``, then clip id. A file that is no clip's is absent (and is not read).

    A path matches when a clip's stored absolute path equals it as given or with its
    symlinks resolved (``rlmusic generate`` stores resolved paths). Works on a database at
    any revision: with no ``clips`` table nothing is stored; before revision 0004 every
    clip is unchecked. Only the files that are stored clips' are hashed.
    """
    wanted: dict[str, list[str]] = {}  # spelling -> the paths (as given) spelled so
    order: dict[str, int] = {}
    for path in paths:
        name = str(path)
        order.setdefault(name, len(order))
        for spelling in path_spellings(path):
            names = wanted.setdefault(spelling, [])
            if name not in names:
                names.append(name)
    if not wanted:
        return []
    table = Clip.__table__
    with engine.connect() as connection:
        inspector = inspect(connection)
        if not inspector.has_table("clips"):
            return []
        has_hash = any(c["name"] == "midi_sha256" for c in inspector.get_columns("clips"))
        recorded = table.c.midi_sha256 if has_hash else null().label("midi_sha256")
        spellings = sorted(wanted)
        rows = []
        for start in range(0, len(spellings), PATHS_PER_QUERY):
            chunk = spellings[start : start + PATHS_PER_QUERY]
            query = select(table.c.id, table.c.midi_path, recorded).where(table.c.midi_path.in_(chunk))
            rows.extend(connection.execute(query).all())
    found: dict[tuple[str, int], str | None] = {}
    for clip_id, midi_path, sha in rows:
        for name in wanted[midi_path]:
            found[(name, clip_id)] = sha
    hashes = {name: sha256_file(Path(name).expanduser()) for name, _ in found}
    return [
        StoredMidi(clip_id, name, sha, hashes[name])
        for (name, clip_id), sha in sorted(found.items(), key=lambda kv: (order[kv[0][0]], kv[0][1]))
    ]
