"""Four-voice chorales: soprano, alto, tenor and bass of one of music21's bundled Bach
chorales on the 16th-note grid, as four token rows of one vocabulary.

Grid: the project's 16th-note grid (``STEPS_PER_QUARTER`` = 4). The Bach Doodle's Coconet
ran on 16ths too; an eighth grid would halve the frames but round away the 16th-note
passing tones of the inner voices, and the soprano row would no longer be the melody
tokens every other tool (prior, ``revise``, the app's clips) reads and writes.

Tokens per voice are those of ``rlmusic.music.representation``: ``REST``, ``HOLD`` (the
voice's previous note continues), one token per pitch of ``CHORALE_VOCAB`` (one range for
all four voices, wide enough for Bach's basses and sopranos after transposition). A
chorale is transposed to C major / A minor (key by music21's analysis of the whole
score, as the ``bach`` melody source does) by the nearest shift (-6..+5 semitones); it is
never moved by octaves, so voices keep their registers. Reading: parts named Soprano,
Alto, Tenor, Bass (a name may go on: ``Soprano Oboe 1 Violin1``); repeats expanded; ties
merged; a chord inside a voice is reduced to its top note (bass: its bottom note). A
chorale is skipped, with its reason counted, when it has not exactly one part of each
voice, has notes off the 16th grid (triplets, 32nds), overlapping notes in a voice, or
pitches outside the vocabulary. ``rlmusic.corpus.chorale_corpus`` builds and caches the
corpus of all of them.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from rlmusic.corpus.encode import SkipPiece
from rlmusic.corpus.sources import (
    ADJ_CHORD,
    ADJ_REPEATS,
    MAJOR_LIKE,
    MINOR_LIKE,
    SKIP_EMPTY,
    SKIP_NO_KEY,
    SKIP_PARSE,
)
from rlmusic.music.representation import (
    STEPS_PER_QUARTER,
    MelodyError,
    Note,
    Vocabulary,
    check_monophonic,
    notes_to_tokens,
)

VOICES = ("soprano", "alto", "tenor", "bass")
CHORALE_VOCAB = Vocabulary(31, 86)  # every voice of every chorale, transposed, fits (G1..D6)

SKIP_VOICES = "not exactly one soprano, alto, tenor and bass part"
SKIP_OFF_GRID = "notes off the 16th grid (triplets, 32nd notes)"
SKIP_VOICE_OVERLAP = "overlapping notes inside one voice"
SKIP_OUT_OF_VOCAB = "pitches outside the four-voice vocabulary"


@dataclass
class Chorale:
    """One chorale: four token rows on a common 16th-note grid, in C major / A minor."""

    id: str  # "bach:bwv269", the id of the same chorale's soprano in the ``bach`` melody corpus
    title: str
    tokens: np.ndarray  # (4, T) int64: soprano, alto, tenor, bass rows of CHORALE_VOCAB tokens
    key: str  # original key, music21 spelling: "g minor"
    mode: str  # "major" or "minor"
    transposed_by: int  # semitones added to every pitch (original + transposed_by = stored)
    bar_steps: int  # 16th steps in a bar (16 in 4/4, 12 in 3/4)
    phase: int  # position in its bar of step 0 (a pickup starts late in its bar)

    @property
    def steps(self) -> int:
        return int(self.tokens.shape[1])

    def bar_position(self) -> np.ndarray:
        """(T,) position of each step in its bar, 0 on every downbeat."""
        return bar_positions(self.steps, self.bar_steps, self.phase)


def bar_positions(steps: int, bar_steps: int, phase: int = 0) -> np.ndarray:
    """(steps,) position of each step in its bar, 0 on every downbeat."""
    if bar_steps < 1 or not 0 <= phase < bar_steps:
        raise ValueError(f"bar of {bar_steps} steps with phase {phase} is not a bar")
    return (np.arange(steps) + phase) % bar_steps


# --------------------------------------------------------------------------- one chorale


def voice_parts(score) -> dict[str, object]:
    """The soprano, alto, tenor and bass parts of a score by name (``SkipPiece`` unless
    there is exactly one of each)."""
    found: dict[str, list] = {v: [] for v in VOICES}
    for part in score.parts:
        name = (part.partName or "").strip().lower()
        for voice in VOICES:
            if name.startswith(voice) and not name.startswith(voice + " 2"):
                found[voice].append(part)
    if any(len(parts) != 1 for parts in found.values()):
        names = [p.partName for p in score.parts]
        raise SkipPiece(SKIP_VOICES, f"parts {names}")
    return {v: parts[0] for v, parts in found.items()}


def _voice_notes(part, voice: str, adjusted: Counter) -> tuple[list[Note], Fraction]:
    """Notes of one part (quarter offsets -> 16th steps) and the first note's offset."""
    try:
        part = part.expandRepeats()
    except Exception:  # music21 raises several types for repeats it cannot follow
        adjusted[ADJ_REPEATS] += 1
    notes: list[Note] = []
    ties: dict[int, int] = {}  # pitch -> index of a note whose tie continues
    first = None
    for n in part.flatten().notes:
        if n.duration.isGrace:
            continue
        on = Fraction(n.offset) * STEPS_PER_QUARTER
        off = on + Fraction(n.duration.quarterLength) * STEPS_PER_QUARTER
        if on.denominator != 1 or off.denominator != 1:
            raise SkipPiece(SKIP_OFF_GRID, f"{voice} at quarter {float(n.offset):g}")
        if off == on:
            continue
        pitches = sorted(int(p.midi) for p in n.pitches)
        if len(pitches) > 1:
            adjusted[ADJ_CHORD] += 1
        pitch = pitches[0] if voice == "bass" else pitches[-1]
        first = Fraction(n.offset) if first is None else min(first, Fraction(n.offset))
        j = ties.pop(pitch, None)
        if j is not None and notes[j].end == on:
            notes[j] = Note(notes[j].start, notes[j].duration + int(off - on), pitch)
        else:
            j = len(notes)
            notes.append(Note(int(on), int(off - on), pitch))
        if n.tie is not None and n.tie.type in ("start", "continue"):
            ties[pitch] = j
    return notes, first


def _bar(part, first_offset: Fraction) -> tuple[int, int]:
    """(steps per bar, position in its bar of the first note) from the part's measures."""
    from music21 import stream

    measures = list(part.getElementsByClass(stream.Measure))
    if not measures:
        return 4 * STEPS_PER_QUARTER, 0
    for m in measures:
        if Fraction(m.offset) + Fraction(m.duration.quarterLength) > first_offset:
            break
    bar = Fraction(m.barDuration.quarterLength)
    into = first_offset - Fraction(m.offset) + Fraction(m.paddingLeft)
    steps = int(bar * STEPS_PER_QUARTER)
    return max(steps, 1), int(into * STEPS_PER_QUARTER) % max(steps, 1)


def _mode(k) -> str:
    mode = (k.mode or "").lower()
    if mode in MINOR_LIKE:
        return "minor"
    if mode in MAJOR_LIKE or not mode:
        return "major"
    return "major"


def encode_chorale(item: tuple, vocab: Vocabulary, adjusted: Counter) -> Chorale:
    """One ``bach`` source item (source, id, path) -> a ``Chorale`` (raises ``SkipPiece``)."""
    from music21 import converter, corpus

    _, piece_id, path = item
    try:
        score = converter.parse(path) if os.path.isabs(path) else corpus.parse(path)
    except Exception as exc:
        raise SkipPiece(SKIP_PARSE, str(exc)) from exc
    parts = voice_parts(score)
    try:
        k = score.analyze("key")
    except Exception as exc:
        raise SkipPiece(SKIP_NO_KEY, str(exc)) from exc
    mode = _mode(k)
    shift = ((0 if mode == "major" else 9) - k.tonic.pitchClass) % 12
    shift = shift - 12 if shift > 5 else shift
    voices, firsts = {}, {}
    for voice, part in parts.items():
        voices[voice], firsts[voice] = _voice_notes(part, voice, adjusted)
        if not voices[voice]:
            raise SkipPiece(SKIP_EMPTY, voice)
        try:
            check_monophonic(voices[voice])
        except MelodyError as exc:
            raise SkipPiece(SKIP_VOICE_OVERLAP, f"{voice}: {exc}") from exc
    start = min(n.start for ns in voices.values() for n in ns)
    steps = max(n.end for ns in voices.values() for n in ns) - start
    rows = []
    for voice in VOICES:
        moved = [Note(n.start - start, n.duration, n.pitch + shift) for n in voices[voice]]
        low, high = min(n.pitch for n in moved), max(n.pitch for n in moved)
        if low < vocab.min_pitch or high > vocab.max_pitch:
            raise SkipPiece(SKIP_OUT_OF_VOCAB, f"{voice} {low}..{high}, vocabulary {vocab.min_pitch}..{vocab.max_pitch}")
        rows.append(notes_to_tokens(moved, vocab, steps))
    bar_steps, phase = _bar(parts["soprano"], min(firsts.values()))
    title = (score.metadata.title if score.metadata is not None else None) or piece_id.split(":", 1)[1]
    return Chorale(piece_id, str(title), np.stack(rows), str(k), mode, int(shift), bar_steps, phase)


def encode_chorale_item(item: tuple, vocab: Vocabulary = CHORALE_VOCAB) -> tuple[Chorale | None, str | None, list[str]]:
    """Worker entry point: (chorale or None, skip reason or None, adjustments); never raises
    for a bad chorale."""
    adjusted: Counter = Counter()
    try:
        return encode_chorale(item, vocab, adjusted), None, sorted(adjusted)
    except SkipPiece as exc:
        return None, exc.reason, sorted(adjusted)
    except MelodyError as exc:
        return None, type(exc).__name__, sorted(adjusted)
