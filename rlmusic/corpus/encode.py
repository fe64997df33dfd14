"""One corpus item to normalised tokens: the pipeline every source goes through.

Reads in this order: ``SkipPiece`` and ``Event`` -> the shared pipeline
(``encode_events``: quantisation, tie merging, one line, transposition, folding) -> the
music21 reader (ABC, MusicXML) -> key estimation and the MIDI reader -> ``encode_item``,
the per-piece worker entry point (never raises for a bad piece: it says why).
See ``rlmusic.corpus.sources`` for what each source is.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from rlmusic.corpus.pieces import Piece
from rlmusic.corpus.sources import (
    ADJ_CHORD,
    ADJ_FOLDED,
    ADJ_GRACE,
    ADJ_LOST,
    ADJ_POLY,
    ADJ_REPEATS,
    ADJ_ROUNDED,
    MAJOR_LIKE,
    MINOR_LIKE,
    PITCH_CLASS_NAMES,
    SKIP_EMPTY,
    SKIP_NO_KEY,
    SKIP_PARSE,
    SKIP_RANGE,
    SKIP_TUPLET,
)
from rlmusic.music.representation import (
    DEFAULT_VOCAB,
    STEPS_PER_QUARTER,
    EmptyMelodyError,
    MelodyError,
    Note,
    Vocabulary,
    check_monophonic,
    load_midi,
    midi_to_notes,
    notes_to_tokens,
    top_line,
)

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
