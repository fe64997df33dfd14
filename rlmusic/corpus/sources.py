"""Corpus sources: listing pieces and encoding one piece to normalised tokens.

Sources (``SOURCE_NAMES``):

- ``bach``: the soprano line of music21's bundled Bach chorales (the part named
  Soprano, else the first part); key from music21's analysis of the whole chorale;
- ``irish``: music21's bundled O'Neill's 1850 tunes. The files overlap (1556-1624.abc
  and 1556-1576.abc, the ``_bs``/``_mh``/``_ml`` variants), so tunes are deduplicated
  by their number (ABC ``X:``): the first file in name order wins. Key from ``K:``;
- ``midi:DIR``: the top line (``rlmusic.music.representation.top_line``) of every ``*.mid``/``*.midi``
  under DIR, all non-drum instruments together; key by Krumhansl-Kessler profiles.

Every piece goes through the same pipeline (``encode_events``): repeats expanded
where music21 can (written order kept when it cannot: first and second endings are
then played one after the other, never on top of each other), grace notes dropped,
ties merged (same pitch only: music21's ``stripTies`` also merges ABC slurs written
as ties between different pitches, e.g. ``G3-A``), chords reduced to their top note
and overlapping voices to the top line, then transposed so the tonic is C (major-like
modes: major, mixolydian, lydian) or A (minor-like: minor, dorian, phrygian, locrian),
moved by whole octaves to fit the vocabulary's pitch range and single notes still
outside it folded in by octaves. Pieces with notes off the 16th grid (triplets,
32nd notes) and empty pieces are skipped; every skip is counted by reason
(``Corpus.skipped``) and every change that kept the piece too (``Corpus.adjusted``).

This module names the sources and lists their items: source names, the reasons
counted for skipped or adjusted pieces, ``parse_sources``, ``source_items``, and the
cache key of a list of sources (``corpus_key``). ``rlmusic.corpus.encode`` turns one
item into tokens. A change to what a piece encodes to must bump
``CORPUS_FORMAT_VERSION`` (it is part of every cache key).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary

CORPUS_FORMAT_VERSION = 1  # bump when the pipeline (rlmusic.corpus.encode) changes what a piece encodes to
SOURCE_NAMES = ("bach", "irish", "midi:DIR")
MIDI_SUFFIXES = (".mid", ".midi")

MAJOR_LIKE = ("major", "ionian", "mixolydian", "lydian")
MINOR_LIKE = ("minor", "aeolian", "dorian", "phrygian", "locrian")
PITCH_CLASS_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")

# skip reasons (piece dropped) and adjustments (piece kept), shared by all sources
SKIP_TUPLET = "tuplets (e.g. triplets) cannot be put on the 16th grid"
SKIP_EMPTY = "empty (no notes)"
SKIP_RANGE = "pitch range too narrow to fold notes in by octaves"
SKIP_PARSE = "cannot be parsed"
SKIP_NO_KEY = "no key found"
ADJ_GRACE = "grace notes dropped"
ADJ_CHORD = "chords reduced to their top note"
ADJ_POLY = "overlapping notes reduced to the top line"
ADJ_REPEATS = "repeats not expanded (written order kept)"
ADJ_FOLDED = "notes folded into range by octaves"
ADJ_ROUNDED = "32nd-note rhythms rounded to the 16th grid"
ADJ_LOST = "32nd notes lost in rounding to the 16th grid"


# --------------------------------------------------------------------------- source items


def parse_sources(sources: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"irish+bach"`` or ``["irish", "midi:/x"]`` -> validated list (midi dirs made absolute)."""
    if isinstance(sources, str):
        # "+" joins names; a midi path may itself hold "+", so split only before a name
        parts = re.split(r"\+(?=bach\b|irish\b|midi:)", sources) if sources else []
    else:
        parts = list(sources)
    if not parts:
        raise ValueError(f"no corpus source given; valid: {', '.join(SOURCE_NAMES)}")
    out = []
    for src in parts:
        src = str(src).strip()
        if src in ("bach", "irish"):
            out.append(src)
        elif src.startswith("midi:"):
            path = Path(src[5:]).expanduser()
            if not src[5:]:
                raise ValueError("midi source needs a folder: midi:DIR")
            if not path.exists():
                raise FileNotFoundError(f"MIDI folder {path} does not exist (source {src!r})")
            if not path.is_dir():
                raise FileNotFoundError(f"MIDI source {path} is not a folder (source {src!r})")
            out.append("midi:" + str(path.resolve()))
        else:
            raise ValueError(f"unknown corpus source {src!r}; valid: {', '.join(SOURCE_NAMES)}")
    if len(set(out)) != len(out):
        raise ValueError(f"corpus source given twice: {out}")
    return out


def _music21_corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).resolve().parent / "corpus"


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _irish_items(limit: int | None) -> list[tuple]:
    """One item per O'Neill tune number (first file in name order wins)."""
    tunes: dict[int, str] = {}
    for path in sorted((_music21_corpus_dir() / "oneills1850").glob("*.abc")):
        for chunk in re.split(r"(?m)^(?=X:)", _read_text(path)):
            m = re.match(r"X:\s*(\d+)", chunk)
            if m and int(m.group(1)) not in tunes:
                tunes[int(m.group(1))] = chunk
    numbers = sorted(tunes)[:limit] if limit is not None else sorted(tunes)
    return [("irish", f"irish:{n:04d}", tunes[n]) for n in numbers]


def _bach_items(limit: int | None) -> list[tuple]:
    """One item per chorale file stem (.mxl preferred over .xml over .krn)."""
    rank = {".mxl": 0, ".xml": 1, ".krn": 2}
    best: dict[str, Path] = {}
    for path in (_music21_corpus_dir() / "bach").iterdir():
        if path.suffix in rank and path.stem.startswith("bwv"):
            if path.stem not in best or rank[path.suffix] < rank[best[path.stem].suffix]:
                best[path.stem] = path

    def order(stem: str):
        nums = [int(x) for x in re.findall(r"\d+", stem)]
        return (nums, stem)

    stems = sorted(best, key=order)[:limit] if limit is not None else sorted(best, key=order)
    return [("bach", f"bach:{s}", str(best[s])) for s in stems]


def midi_files(folder: Path) -> list[Path]:
    """Every ``*.mid``/``*.midi`` file under ``folder``, in path order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def _midi_items(source: str, limit: int | None) -> list[tuple]:
    folder = Path(source[5:])
    files = midi_files(folder)
    if not files:
        raise ValueError(f"no MIDI files ({', '.join('*' + s for s in MIDI_SUFFIXES)}) in {folder}")
    files = files[:limit] if limit is not None else files
    return [(source, f"midi:{folder.name}/{p.relative_to(folder).as_posix()}", str(p)) for p in files]


def source_items(source: str, limit: int | None) -> list[tuple]:
    """(source, piece id, payload) of each piece of one parsed source, first ``limit`` only."""
    if source == "irish":
        return _irish_items(limit)
    if source == "bach":
        return _bach_items(limit)
    return _midi_items(source, limit)


# --------------------------------------------------------------------------- names and cache keys


def source_label(source: str) -> str:
    return "midi" if source.startswith("midi:") else source


def source_slug(source: str) -> str:
    """File-name-safe form of one source; a midi folder is named by path and content."""
    if not source.startswith("midi:"):
        return source
    folder = Path(source[5:])
    h = hashlib.sha1(str(folder).encode())
    for p in midi_files(folder):
        st = p.stat()
        h.update(f"\0{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name)[:40] or "root"
    return f"midi-{name}-{h.hexdigest()[:10]}"


def corpus_key(sources: list[str] | str, vocab: Vocabulary = DEFAULT_VOCAB, limit: int | None = None) -> str:
    """Cache key: sources, pitch range, limit and ``CORPUS_FORMAT_VERSION``."""
    srcs = parse_sources(sources)
    lim = "all" if limit is None else f"n{limit}"
    return f"{'+'.join(source_slug(s) for s in srcs)}-p{vocab.min_pitch}-{vocab.max_pitch}-{lim}-v{CORPUS_FORMAT_VERSION}"
