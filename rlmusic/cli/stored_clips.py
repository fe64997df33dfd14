"""A stored clip's MIDI file is used only while it holds what was stored.

``rlmusic generate --enqueue`` records the SHA-256 of each clip's MIDI file
(``clips.midi_sha256``). Every command that reads a MIDI file a user names (``evaluate
--midi``, ``harmonize``, ``revise``, ``vae interpolate`` / ``vary``, ``generate --primer``)
first asks the database (``RLMUSIC_DATABASE_URL``, else the SQLite file under
``RLMUSIC_HOME``) whether the file is a stored clip's, and if so whether its bytes still
hash to what was recorded (``db.files.stored_midi``). A file that changed is not used: a
single input is one error line naming the clip and the file; a folder skips it, names it
and counts it. A file that is no clip's, or a clip stored before hashes were recorded, is
read as before; with no database file yet nothing is stored, so nothing is checked (and no
database file is created).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

CHANGED = "changed since it was stored as a clip (SHA-256 differs)"  # the skip reason of a folder


def changed_clips(paths: Iterable[str | Path]) -> dict[str, list]:
    """The files of ``paths`` that are stored clips' MIDI and no longer hash to what was
    recorded: path (as given) -> its ``db.files.StoredMidi`` entries that changed. Files
    that do not exist are left to the command (it says so itself)."""
    paths = [str(p) for p in paths if Path(p).expanduser().is_file()]
    if not paths:
        return {}
    import db
    from db.files import stored_midi

    url = db.database_url()
    path = db.sqlite_path(url)
    if path is not None and not path.is_file():
        return {}  # no database yet: no clip is stored (and none is created here)
    changed: dict[str, list] = {}
    for entry in stored_midi(db.get_engine(url), paths):
        if entry.changed:
            changed.setdefault(entry.path, []).append(entry)
    return changed


def describe(path: str, entries: list) -> tuple[str, str]:
    """What changed and how, as (``clip 12's MIDI file P``, ``has changed since the clip
    was stored (SHA-256 now ..., recorded ...)``)."""
    ids = [e.clip_id for e in entries]
    what = f"clip {ids[0]}'s MIDI file {path}" if len(ids) == 1 else \
        f"the MIDI file {path} of clips {', '.join(map(str, ids))}"
    now = entries[0].sha256
    recorded = " / ".join(dict.fromkeys(f"{e.recorded_sha256[:12]}..." for e in entries))
    how = (f"has changed since the clip{'s were' if len(ids) > 1 else ' was'} stored "
           f"(SHA-256 now {f'{now[:12]}...' if now else 'of no file'}, recorded {recorded})")
    return what, how


def check_stored_clip(path: str | Path) -> None:
    """Raise ``ValueError`` (one line: the clip, the file, the hashes) when ``path`` is a
    stored clip's MIDI file that has changed since the clip was stored."""
    changed = changed_clips([path])
    if changed:
        [(name, entries)] = changed.items()
        what, how = describe(name, entries)
        ids = ", ".join(str(e.clip_id) for e in entries)
        raise ValueError(f"{what} {how}: not used, as it is no longer the melody stored as clip {ids} "
                         "(to use the file as it is now, copy it to another path)")
