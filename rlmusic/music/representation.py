"""Melody encoding: a token vocabulary on a 16th-note grid.

A melody is a sequence of tokens, one per 16th note (4 steps per quarter):

- ``REST``: silence on this step;
- ``HOLD``: the previous note continues (the seed article's "note tenue");
- one token per MIDI pitch of a range (default 48..84): a note starts on this step.

``BOS`` is an input-only token that starts every sequence fed to the model; models
never emit it. The vocabulary is data (``Vocabulary``), never a literal in code.

Music objects (``Note``) are kept apart from encodings: tokens <-> notes <-> piano
roll <-> ``pretty_midi.PrettyMIDI``. Round-trips are exact for melodies on the grid;
a HOLD with nothing to hold decodes as a rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

STEPS_PER_QUARTER = 4  # 16th-note grid


class MelodyError(ValueError):
    """Base class of the music-specific input errors."""


class NotMonophonicError(MelodyError):
    """Two notes sound at the same time where a melody (one line) was expected."""


class EmptyMelodyError(MelodyError):
    """A melody, MIDI file or instrument has no notes at all."""


class PitchOutOfRangeError(MelodyError):
    """A pitch lies outside the vocabulary's range."""


class VocabularyMismatchError(ValueError):
    """A model, checkpoint or corpus was built with another vocabulary."""


@dataclass(frozen=True)
class Vocabulary:
    """Token ids: ``REST=0``, ``HOLD=1``, then one id per pitch ``min_pitch..max_pitch``.

    ``size`` counts the output tokens; ``BOS`` (= ``size``) is input-only, so a model's
    embedding has ``input_size = size + 1`` rows and its head ``size`` outputs.
    """

    min_pitch: int = 48  # lowest MIDI pitch (C3)
    max_pitch: int = 84  # highest MIDI pitch, inclusive (C6)

    REST = 0
    HOLD = 1
    FIRST_PITCH_TOKEN = 2

    def __post_init__(self) -> None:
        if not (0 <= self.min_pitch <= self.max_pitch <= 127):
            raise ValueError(
                f"pitch range must satisfy 0 <= min_pitch <= max_pitch <= 127, "
                f"got {self.min_pitch}..{self.max_pitch}"
            )

    @property
    def n_pitches(self) -> int:
        return self.max_pitch - self.min_pitch + 1

    @property
    def size(self) -> int:
        """Number of output tokens (REST, HOLD and the pitches)."""
        return self.FIRST_PITCH_TOKEN + self.n_pitches

    @property
    def BOS(self) -> int:  # noqa: N802 - a token name, like REST and HOLD
        """Input-only start token."""
        return self.size

    @property
    def input_size(self) -> int:
        return self.size + 1

    def is_pitch(self, token: int) -> bool:
        return self.FIRST_PITCH_TOKEN <= token < self.size

    def pitch_to_token(self, pitch: int) -> int:
        if not (self.min_pitch <= pitch <= self.max_pitch):
            raise PitchOutOfRangeError(
                f"pitch {pitch} is outside the vocabulary range {self.min_pitch}..{self.max_pitch}"
            )
        return self.FIRST_PITCH_TOKEN + pitch - self.min_pitch

    def token_to_pitch(self, token: int) -> int:
        if not self.is_pitch(token):
            raise ValueError(f"token {token} is not a pitch token (valid: 2..{self.size - 1})")
        return self.min_pitch + token - self.FIRST_PITCH_TOKEN

    def pitches(self, tokens: np.ndarray) -> np.ndarray:
        """Vectorised: MIDI pitch per token, -1 for REST/HOLD (any shape)."""
        tokens = np.asarray(tokens)
        return np.where(tokens >= self.FIRST_PITCH_TOKEN, tokens - self.FIRST_PITCH_TOKEN + self.min_pitch, -1)

    def name(self, token: int) -> str:
        if token == self.REST:
            return "REST"
        if token == self.HOLD:
            return "HOLD"
        if token == self.BOS:
            return "BOS"
        return str(self.token_to_pitch(token))

    def validate(self, tokens: Iterable[int]) -> np.ndarray:
        """Tokens as an int64 array; raises naming the first out-of-vocabulary token."""
        arr = np.asarray(list(tokens) if not isinstance(tokens, np.ndarray) else tokens, dtype=np.int64)
        bad = np.flatnonzero((arr < 0) | (arr >= self.size))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"token {int(arr[i])} at step {i} is outside the vocabulary (0..{self.size - 1})"
            )
        return arr

    def to_dict(self) -> dict:
        return {
            "min_pitch": self.min_pitch,
            "max_pitch": self.max_pitch,
            "tokens": [self.name(t) for t in range(self.size)],
            "bos": self.BOS,
            "steps_per_quarter": STEPS_PER_QUARTER,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        vocab = cls(int(data["min_pitch"]), int(data["max_pitch"]))
        if "tokens" in data and list(data["tokens"]) != vocab.to_dict()["tokens"]:
            raise VocabularyMismatchError("vocabulary token list does not match its pitch range")
        return vocab

    def check_same(self, other: Vocabulary, what: str = "model") -> None:
        """Raise ``VocabularyMismatchError`` when ``other`` differs from this vocabulary."""
        if other != self:
            raise VocabularyMismatchError(
                f"{what} uses pitches {other.min_pitch}..{other.max_pitch} "
                f"({other.size} tokens), expected {self.min_pitch}..{self.max_pitch} ({self.size} tokens)"
            )


DEFAULT_VOCAB = Vocabulary()


@dataclass(frozen=True, order=True)
class Note:
    """One note on the grid: start and duration in 16th-note steps."""

    start: int
    duration: int
    pitch: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.duration < 1:
            raise ValueError(f"note needs start >= 0 and duration >= 1, got {self}")

    @property
    def end(self) -> int:
        return self.start + self.duration


# --------------------------------------------------------------------------- tokens <-> notes


def tokens_to_notes(tokens: Sequence[int], vocab: Vocabulary = DEFAULT_VOCAB) -> list[Note]:
    """Decode tokens to notes. A HOLD after a rest (or at the start) is a rest."""
    arr = vocab.validate(tokens)
    notes: list[Note] = []
    start = pitch = None
    for t, tok in enumerate(arr.tolist()):
        if tok == Vocabulary.HOLD and pitch is not None:
            continue
        if pitch is not None:
            notes.append(Note(start, t - start, pitch))
            start = pitch = None
        if vocab.is_pitch(tok):
            start, pitch = t, vocab.token_to_pitch(tok)
    if pitch is not None:
        notes.append(Note(start, len(arr) - start, pitch))
    return notes


def check_monophonic(notes: Sequence[Note]) -> list[Note]:
    """Sorted notes; raises ``NotMonophonicError`` naming the first overlap."""
    ordered = sorted(notes)
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            raise NotMonophonicError(
                f"notes overlap: pitch {a.pitch} at step {a.start}-{a.end} and "
                f"pitch {b.pitch} at step {b.start}"
            )
    return ordered


def notes_to_tokens(
    notes: Sequence[Note], vocab: Vocabulary = DEFAULT_VOCAB, steps: int | None = None
) -> np.ndarray:
    """Encode monophonic notes; ``steps`` pads with rests or truncates (default: last note's end)."""
    if not notes:
        raise EmptyMelodyError("melody has no notes")
    ordered = check_monophonic(notes)
    length = ordered[-1].end if steps is None else steps
    tokens = np.full(length, Vocabulary.REST, dtype=np.int64)
    for n in ordered:
        if n.start >= length:
            break
        tokens[n.start] = vocab.pitch_to_token(n.pitch)
        tokens[n.start + 1 : min(n.end, length)] = Vocabulary.HOLD
    return tokens


# --------------------------------------------------------------------------- piano roll


def tokens_to_piano_roll(tokens: Sequence[int], vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    """One-hot roll of shape (T, vocab.size): row t has a 1 at column tokens[t]."""
    arr = vocab.validate(tokens)
    roll = np.zeros((len(arr), vocab.size), dtype=np.float32)
    roll[np.arange(len(arr)), arr] = 1.0
    return roll


def piano_roll_to_tokens(roll: np.ndarray, vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    """Inverse of ``tokens_to_piano_roll``; each row must be one-hot."""
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != vocab.size:
        raise ValueError(f"piano roll must have shape (T, {vocab.size}), got {roll.shape}")
    counts = (roll > 0.5).sum(axis=1)
    bad = np.flatnonzero(counts != 1)
    if bad.size:
        raise NotMonophonicError(
            f"piano roll row {int(bad[0])} has {int(counts[bad[0]])} active tokens, expected exactly 1"
        )
    return roll.argmax(axis=1).astype(np.int64)


# --------------------------------------------------------------------------- MIDI


def notes_to_midi(
    notes: Sequence[Note], tempo: float = 120.0, program: int = 0, velocity: int = 90
):
    """A one-instrument ``pretty_midi.PrettyMIDI`` at ``tempo`` (quarter notes per minute)."""
    import pretty_midi

    if tempo <= 0:
        raise ValueError(f"tempo must be positive, got {tempo}")
    if not 0 <= program <= 127:
        raise ValueError(f"program must be a General MIDI program 0..127, got {program}")
    step = 60.0 / tempo / STEPS_PER_QUARTER
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    inst = pretty_midi.Instrument(program=program, name="melody")
    for n in notes:
        inst.notes.append(
            pretty_midi.Note(velocity=velocity, pitch=n.pitch, start=n.start * step, end=n.end * step)
        )
    pm.instruments.append(inst)
    return pm


def tokens_to_midi(
    tokens: Sequence[int],
    vocab: Vocabulary = DEFAULT_VOCAB,
    tempo: float = 120.0,
    program: int = 0,
    velocity: int = 90,
):
    """Tokens to a ``PrettyMIDI`` (MIDI ends with the last note: pass ``steps`` back to
    ``midi_to_tokens`` to restore trailing rests)."""
    return notes_to_midi(tokens_to_notes(tokens, vocab), tempo, program, velocity)


def midi_tempo(pm) -> float:
    """The first tempo of a ``PrettyMIDI`` (120 when it declares none)."""
    _, tempi = pm.get_tempo_changes()
    return float(tempi[0]) if len(tempi) else 120.0


def midi_to_notes(
    pm, instrument: int | None = None, tempo: float | None = None, tolerance: float = 0.2
) -> list[Note]:
    """Notes of one instrument (default: the only non-drum one), quantised to the grid.

    Raises ``EmptyMelodyError`` when there is nothing to read and ``ValueError`` when
    onsets lie further than ``tolerance`` steps from the grid (triplets, swing).
    Overlaps are not resolved here: see ``check_monophonic`` and ``top_line``.
    """
    tracks = [i for i in pm.instruments if not i.is_drum and i.notes]
    if not tracks:
        raise EmptyMelodyError("MIDI has no (non-drum) notes")
    if instrument is None:
        if len(tracks) > 1:
            raise NotMonophonicError(
                f"MIDI has {len(tracks)} instruments with notes; pick one (instrument=...)"
            )
        inst = tracks[0]
    else:
        if not 0 <= instrument < len(tracks):
            raise ValueError(f"instrument {instrument} out of range 0..{len(tracks) - 1}")
        inst = tracks[instrument]
    tempo = midi_tempo(pm) if tempo is None else tempo
    step = 60.0 / tempo / STEPS_PER_QUARTER
    notes = []
    for n in inst.notes:
        s, e = n.start / step, n.end / step
        if abs(s - round(s)) > tolerance:
            raise ValueError(
                f"note pitch {n.pitch} at {n.start:.3f}s is off the 16th-note grid by "
                f"{abs(s - round(s)):.2f} steps (tempo {tempo:g})"
            )
        start = int(round(s))
        notes.append(Note(start, max(1, int(round(e)) - start), n.pitch))
    return sorted(notes)


def top_line(notes: Sequence[Note]) -> list[Note]:
    """Skyline reduction: at each onset keep the highest note, cut notes at the next onset."""
    by_start: dict[int, Note] = {}
    for n in notes:
        if n.start not in by_start or n.pitch > by_start[n.start].pitch:
            by_start[n.start] = n
    starts = sorted(by_start)
    line = []
    for i, s in enumerate(starts):
        n = by_start[s]
        end = n.end if i + 1 == len(starts) else min(n.end, starts[i + 1])
        line.append(Note(s, end - s, n.pitch))
    return line


def midi_melody(pm, track: int | None = None, tolerance: float = 0.2) -> tuple[list[Note], str]:
    """The melody of a ``PrettyMIDI`` and a few words on how it was read.

    ``track`` (0-based, counting the non-drum tracks that have notes) reads that track;
    without it every such track is read, as ``rlmusic corpus build`` reads ``midi:DIR``.
    Either way overlapping notes are reduced to the top line (``top_line``). Raises
    ``EmptyMelodyError`` with nothing to read, ``ValueError`` for a bad ``track`` or
    onsets off the 16th-note grid.
    """
    tracks = [i for i in pm.instruments if not i.is_drum and i.notes]
    if not tracks:
        raise EmptyMelodyError("MIDI has no (non-drum) notes")
    if track is not None and not 0 <= track < len(tracks):
        raise ValueError(f"track {track} does not exist: the file has {len(tracks)} non-drum "
                         f"track(s) with notes, numbered 0..{len(tracks) - 1}")
    chosen = range(len(tracks)) if track is None else [track]
    notes = [n for i in chosen for n in midi_to_notes(pm, instrument=i, tolerance=tolerance)]
    line = top_line(notes)
    dropped = len(notes) - len(line)
    cut = sum(1 for a, b in zip(sorted(notes), sorted(notes)[1:]) if b.start < a.end) if not dropped else 0
    what = (f"track {track} of {len(tracks)}" if track is not None
            else "1 track" if len(tracks) == 1 else f"top line of {len(tracks)} tracks")
    if dropped:
        what += f", {dropped} lower note(s) under the top line dropped"
    elif cut:
        what += f", {cut} overlapping note(s) shortened"
    return line, what


def midi_to_tokens(
    pm, vocab: Vocabulary = DEFAULT_VOCAB, instrument: int | None = None, steps: int | None = None
) -> np.ndarray:
    """A monophonic MIDI melody to tokens (raises on polyphony, emptiness, off-grid notes)."""
    return notes_to_tokens(midi_to_notes(pm, instrument), vocab, steps)


def load_midi(path):
    """``pretty_midi.PrettyMIDI(path)`` with a clear error for unreadable files."""
    import pretty_midi

    try:
        return pretty_midi.PrettyMIDI(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # mido/pretty_midi raise many types for a bad file
        raise MelodyError(f"cannot read MIDI file {path}: {exc}") from exc
