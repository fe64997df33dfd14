"""Corpus sources: listing pieces and encoding one piece to normalised tokens.

Sources (``SOURCE_NAMES``):

- ``bach``: the soprano line of music21's bundled Bach chorales (the part named
  Soprano, else the first part); key from music21's analysis of the whole chorale;
- ``irish``: music21's bundled O'Neill's 1850 tunes. The files overlap (1556-1624.abc
  and 1556-1576.abc, the ``_bs``/``_mh``/``_ml`` variants), so tunes are deduplicated
  by their number (ABC ``X:``): the first file in name order wins. Key from ``K:``;
- ``midi:DIR``: the top line (``representation.top_line``) of every ``*.mid``/``*.midi``
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

Reads in this order: source names and the reasons counted for skipped or adjusted
pieces -> the items of each source (``parse_sources``, ``source_items``) -> the
shared pipeline (``encode_events``: quantisation, tie merging, one line,
transposition, folding) -> the music21 reader (ABC, MusicXML) -> key estimation and
the MIDI reader -> ``encode_item``, the per-piece worker entry point.

``rlmusic.corpus`` builds, caches and splits corpora from these; it re-exports the
public names here. A change to what a piece encodes to must bump
``rlmusic.corpus.CORPUS_FORMAT_VERSION`` (the cache keys).
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rlmusic.representation import (
    DEFAULT_VOCAB,
    STEPS_PER_QUARTER,
    MelodyError,
    Note,
    Vocabulary,
    check_monophonic,
    notes_to_tokens,
    top_line,
)

if TYPE_CHECKING:
    from rlmusic.corpus import Piece

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


# --------------------------------------------------------------------------- one piece


class SkipPiece(MelodyError):
    """A piece the pipeline drops; ``reason`` is the counted (short) reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Event:
    """One note as read from a score, before quantisation (quarter lengths)."""

    offset: Fraction
    duration: Fraction
    pitches: tuple[int, ...]  # MIDI pitches (a chord has several)
    tie: str | None = None  # "start", "continue", "stop" or None
    grace: bool = False
    tuplet: bool = False


def encode_events(
    events: list[Event], tonic_pc: int, mode: str, vocab: Vocabulary, adjusted: Counter
) -> tuple[np.ndarray, int]:
    """The shared pipeline: quantise, merge ties, one line, transpose, fold -> (tokens, shift).

    Raises ``SkipPiece``; adds what it changed (and kept) to ``adjusted``.
    """
    if any(e.grace for e in events):
        adjusted[ADJ_GRACE] += 1
        events = [e for e in events if not e.grace]
    events = [e for e in events if e.pitches and e.duration > 0]
    if not events:
        raise SkipPiece(SKIP_EMPTY)
    notes: list[Note] = []
    open_ties: dict[int, int] = {}  # pitch -> index in notes of a note whose tie continues
    starts: set[int] = set()
    chord = rounded = lost = False
    for e in sorted(events, key=lambda e: (e.offset, -max(e.pitches))):
        on, off = e.offset * STEPS_PER_QUARTER, (e.offset + e.duration) * STEPS_PER_QUARTER
        pitch = max(e.pitches)
        chord |= len(e.pitches) > 1
        if on.denominator != 1 or off.denominator != 1:
            if e.tuplet:
                raise SkipPiece(SKIP_TUPLET, f"note at quarter {float(e.offset):g}")
            # sub-16th rhythms (dotted 16th + 32nd, 32nd runs): round half down, so a
            # dotted pair straightens to two 16ths; a note rounding onto an onset is lost
            rounded = True
            start, end = _round_half_down(on), _round_half_down(off)
            if start in starts:
                lost = True
                continue
            end = max(end, start + 1)
        else:
            start, end = int(on), int(off)
        j = open_ties.pop(pitch, None)
        if j is not None and notes[j].end == start:  # a tie continues the same pitch
            notes[j] = Note(notes[j].start, notes[j].duration + end - start, pitch)
        else:
            j = len(notes)
            notes.append(Note(start, end - start, pitch))
            starts.add(start)
        if e.tie in ("start", "continue"):
            open_ties[pitch] = j
    if rounded:
        adjusted[ADJ_ROUNDED] += 1
        # rounding may push a note's end past the next onset: cut it there
        notes.sort()
        notes = [
            Note(a.start, min(a.end, b.start) - a.start, a.pitch) if b.start > a.start else a
            for a, b in zip(notes, notes[1:])
        ] + notes[-1:]
    if lost:
        adjusted[ADJ_LOST] += 1
    if chord:
        adjusted[ADJ_CHORD] += 1
    try:
        check_monophonic(notes)
    except MelodyError:
        adjusted[ADJ_POLY] += 1
        notes = top_line(notes)
    first = min(n.start for n in notes)  # leading rests (before a pickup) are dropped
    notes = [Note(n.start - first, n.duration, n.pitch) for n in notes]

    target = 0 if mode == "major" else 9  # C or A
    shift = (target - tonic_pc) % 12
    shift = shift - 12 if shift > 5 else shift
    pitches = np.array([n.pitch for n in notes]) + shift
    best = min(
        range(-5, 6),
        key=lambda k: (
            int(((pitches + 12 * k < vocab.min_pitch) | (pitches + 12 * k > vocab.max_pitch)).sum()),
            abs(k),
        ),
    )
    shift += 12 * best
    pitches = pitches + 12 * best
    outside = (pitches < vocab.min_pitch) | (pitches > vocab.max_pitch)
    if outside.any():
        if vocab.n_pitches < 12:
            raise SkipPiece(SKIP_RANGE, f"range {vocab.min_pitch}..{vocab.max_pitch}")
        adjusted[ADJ_FOLDED] += 1
        pitches = np.where(
            pitches < vocab.min_pitch, pitches + 12 * -((pitches - vocab.min_pitch) // 12), pitches
        )
        pitches = np.where(
            pitches > vocab.max_pitch, pitches - 12 * ((pitches - vocab.max_pitch + 11) // 12), pitches
        )
    notes = [Note(n.start, n.duration, int(p)) for n, p in zip(notes, pitches)]
    return notes_to_tokens(notes, vocab), int(shift)


def _round_half_down(x: Fraction) -> int:
    return math.ceil(x - Fraction(1, 2))


def _mode_group(mode: str | None) -> str | None:
    mode = (mode or "").lower()
    if mode in MAJOR_LIKE:
        return "major"
    if mode in MINOR_LIKE:
        return "minor"
    return None


def _music21_events(part) -> tuple[list[Event], bool]:
    """Events of a music21 part after expanding repeats; bool: repeats expanded."""
    expanded = True
    try:
        part = part.expandRepeats()
    except Exception:  # music21 raises several types for repeats it cannot follow
        expanded = False
    events = []
    for n in part.flatten().notes:
        pitches = tuple(int(p.midi) for p in n.pitches)
        tie = n.tie.type if n.tie is not None else None
        d = n.duration
        events.append(
            Event(Fraction(n.offset), Fraction(d.quarterLength), pitches, tie, d.isGrace, bool(d.tuplets))
        )
    return events, expanded


def _music21_key(stream, analyse) -> tuple[str, int, str]:
    """(key name, tonic pitch class, "major"/"minor"): the first Key with a mode, else analysis."""
    from music21 import key as m21key

    if not analyse:
        for k in stream.recurse().getElementsByClass(m21key.Key):
            group = _mode_group(k.mode)
            if group is not None:
                return str(k), k.tonic.pitchClass, group
    k = stream.analyze("key")
    return str(k), k.tonic.pitchClass, _mode_group(k.mode) or "major"


def _encode_music21(item: tuple, vocab: Vocabulary, adjusted: Counter) -> Piece:
    from music21 import converter, corpus

    from rlmusic.corpus import Piece  # the container; rlmusic.corpus imports this module

    source, piece_id, payload = item
    try:
        if source == "irish":
            score = converter.parse(payload, format="abc")
        else:
            score = corpus.parse(payload) if not os.path.isabs(payload) else converter.parse(payload)
    except Exception as exc:
        raise SkipPiece(SKIP_PARSE, str(exc)) from exc
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    part = next((p for p in parts if "soprano" in (p.partName or "").lower()), parts[0])
    title = (score.metadata.title if score.metadata is not None else None) or piece_id.split(":", 1)[1]
    try:
        key_name, tonic, mode = _music21_key(score if source == "bach" else part, analyse=source == "bach")
    except Exception as exc:
        raise SkipPiece(SKIP_NO_KEY, str(exc)) from exc
    events, expanded = _music21_events(part)
    if not expanded:
        adjusted[ADJ_REPEATS] += 1
    tokens, shift = encode_events(events, tonic, mode, vocab, adjusted)
    return Piece(piece_id, source, str(title), tokens, key_name, mode, shift)


# Krumhansl-Kessler key profiles (C major, C minor), for MIDI files
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(notes: list[Note]) -> tuple[str, int, str]:
    """(key name, tonic pitch class, mode) of notes, by duration-weighted Krumhansl-Kessler."""
    hist = np.zeros(12)
    for n in notes:
        hist[n.pitch % 12] += n.duration
    if not hist.any():
        raise SkipPiece(SKIP_EMPTY)
    best = (-2.0, 0, "major")
    for mode, profile in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1]) if hist.std() > 0 else 0.0
            if r > best[0]:
                best = (r, tonic, mode)
    _, tonic, mode = best
    name = PITCH_CLASS_NAMES[tonic]
    return (f"{name.lower() if mode == 'minor' else name} {mode}", tonic, mode)


def _encode_midi(item: tuple, vocab: Vocabulary, adjusted: Counter) -> Piece:
    from rlmusic.corpus import Piece  # the container; rlmusic.corpus imports this module
    from rlmusic.representation import EmptyMelodyError, load_midi, midi_to_notes

    source, piece_id, path = item
    try:
        pm = load_midi(path)
    except MelodyError as exc:
        raise SkipPiece("unreadable MIDI file", str(exc)) from exc
    n_tracks = sum(1 for i in pm.instruments if not i.is_drum and i.notes)
    if n_tracks == 0:
        raise SkipPiece(SKIP_EMPTY)
    notes: list[Note] = []
    for i in range(n_tracks):
        try:
            notes += midi_to_notes(pm, instrument=i)
        except EmptyMelodyError as exc:
            raise SkipPiece(SKIP_EMPTY) from exc
        except ValueError as exc:  # off-grid onsets: triplets, swing, unquantised playing
            raise SkipPiece("onsets off the 16th grid (triplets, swing, unquantised)", str(exc)) from exc
    key_name, tonic, mode = estimate_key(notes)
    step = Fraction(1, STEPS_PER_QUARTER)
    events = [Event(n.start * step, n.duration * step, (n.pitch,)) for n in notes]
    tokens, shift = encode_events(events, tonic, mode, vocab, adjusted)
    return Piece(piece_id, source, Path(path).stem, tokens, key_name, mode, shift)


def encode_item(item: tuple, vocab: Vocabulary = DEFAULT_VOCAB) -> tuple[Piece | None, str | None, list[str]]:
    """One source item -> (piece or None, skip reason or None, adjustments). Never raises
    for a bad piece: the pipeline counts it instead (worker entry point)."""
    adjusted: Counter = Counter()
    source = item[0]
    try:
        if source.startswith("midi:"):
            piece = _encode_midi(item, vocab, adjusted)
        else:
            piece = _encode_music21(item, vocab, adjusted)
    except SkipPiece as exc:
        return None, exc.reason, sorted(adjusted)
    except MelodyError as exc:  # e.g. EmptyMelodyError from notes_to_tokens
        return None, type(exc).__name__, sorted(adjusted)
    return piece, None, sorted(adjusted)

