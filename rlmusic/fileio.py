"""Crash-safe files: a reader (or a process restarted after a crash, a kill or a full
disk) sees either the old file or the whole new one, never half of it.

- ``write_atomic``: a temporary file in the same folder, flushed to disk (fsync),
  renamed over the target, then the folder entry flushed too. On any error (a full disk
  included) the temporary file is removed and the old file is left as it was.
  Libraries that save to a file object (SB3's ``model.save``, ``torch.save``) write
  through it too.
- ``append_line``: one ``write`` of a whole line, then fsync: a crash can only tear the
  last line, which readers of JSON lines skip (``read_jsonl``).
- ``remove_stale_temps``: the temporary files a crash left behind, removed on resume.

Temporary names start with ``.`` and end with ``.tmp`` (``.NAME.XXXX.tmp``) so they are
never mistaken for results.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
LEGACY_TEMPS = ("*.tmp", "*.tmp.zip")  # names earlier versions wrote their temporary files under


def fsync_dir(folder: str | Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be
    opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_path(path: str | Path) -> Path:
    """A fresh temporary file beside ``path`` (created empty, mode 0644)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are meant to be read by others
    return Path(tmp)


def write_atomic(path: str | Path, data: bytes | str | Callable[[IO[bytes]], Any], *,
                 fsync: bool = True) -> Path:
    """Write ``data`` (bytes, text as UTF-8, or a function writing to a binary file) to
    ``path`` atomically; ``fsync=False`` skips the flushes (caches that can be rebuilt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a full disk says which file it could not write
        raise
    if fsync:
        fsync_dir(path.parent)
    return path


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """``obj`` as JSON (plus a newline), written atomically."""
    return write_atomic(path, json.dumps(obj, indent=indent) + "\n")


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a newline is added) in a single write, then flush it to disk."""
    data = (line.rstrip("\n") + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):  # a short write: the disk is full
            raise OSError(errno.ENOSPC, "No space left on device (short write)", str(path))
        os.fsync(fd)
    except OSError as exc:
        if exc.filename is None:
            exc.filename = str(path)
        raise
    finally:
        os.close(fd)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, skipping a line torn by a crash (and blanks)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Remove the temporary files an interrupted write left in ``folder`` (not below it);
    returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = {p for p in folder.glob(f".*{TEMP_SUFFIX}")}
    for pattern in LEGACY_TEMPS:
        stale.update(folder.glob(pattern))
    removed = []
    for path in sorted(stale):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
