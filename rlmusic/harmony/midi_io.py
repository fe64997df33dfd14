"""MIDI in and out of the harmony tools: a melody (or the four tracks of a
harmonisation) read onto the 16th grid and placed in the models' key and range, and a
four-voice texture written back as four tracks at the pitches and tempo of the input.

A melody is read as the corpus builder reads a MIDI file (``load_midi``, the 16th grid at
the file's first tempo, key by Krumhansl-Kessler profiles: ``estimate_key``), then moved
to C major / A minor by the nearest shift and by whole octaves until it lies in the
range the model knows; what cannot be placed so is refused (``PitchOutOfRangeError``).
Unlike the corpus builder, which reduces a chord-laden file to its top line, the tools
refuse a melody that is not one line (``NotMonophonicError``): they promise to keep the
soprano exactly, and a top line drops notes. Output tracks keep the input's melody notes
verbatim (times and velocities); new notes go on the grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlmusic.corpus.encode import estimate_key
from rlmusic.music.representation import (
    STEPS_PER_QUARTER,
    EmptyMelodyError,
    Note,
    NotMonophonicError,
    PitchOutOfRangeError,
    Vocabulary,
    check_monophonic,
    load_midi,
    midi_tempo,
    midi_to_notes,
    notes_to_tokens,
    tokens_to_notes,
)

VOICE_NAMES = ("Soprano", "Alto", "Tenor", "Bass")
INSTRUMENTATIONS: dict[str, tuple[int, int, int, int]] = {  # General MIDI programs S, A, T, B
    "choir": (52, 52, 52, 52),  # Choir Aahs
    "strings": (40, 40, 41, 42),  # violin, violin, viola, cello
}
SOPRANO_RANGE = (57, 84)  # where a melody is placed (C/A key): the middle 99% of Bach's sopranos


@dataclass
class Track:
    """One track of a MIDI file on the grid."""

    index: int  # among the file's non-drum tracks with notes
    notes: list[Note]  # grid notes, pitches as written
    raw: list  # the pretty_midi notes, as written (same order as ``notes``)
    program: int
    name: str


@dataclass
class MidiScore:
    """A MIDI file read for the harmony tools: its tracks with notes, tempo and bar."""

    path: Path
    pm: object  # pretty_midi.PrettyMIDI
    tracks: list[Track]
    tempo: float  # quarter notes per minute (the file's first tempo)
    bar_steps: int  # 16th steps per bar (first time signature; 4/4 when none)
    steps: int = field(default=0)  # grid length: the end of the last note


def read_score(path: str | Path) -> MidiScore:
    """Every non-drum track with notes of a MIDI file on the 16th grid. Raises
    ``FileNotFoundError``, ``MelodyError`` (unreadable), ``EmptyMelodyError`` (no notes),
    ``ValueError`` (onsets off the 16th grid)."""
    path = Path(path)
    pm = load_midi(path)
    tracks = [i for i in pm.instruments if not i.is_drum and i.notes]
    if not tracks:
        raise EmptyMelodyError(f"{path}: MIDI has no (non-drum) notes")
    read = []
    for k, inst in enumerate(tracks):
        notes = midi_to_notes(pm, instrument=k)
        raw = sorted(inst.notes, key=lambda n: (n.start, n.pitch))
        read.append(Track(k, notes, raw, inst.program, inst.name or f"track {k}"))
    ts = sorted(pm.time_signature_changes, key=lambda t: t.time)
    bar = int(ts[0].numerator * 4 * STEPS_PER_QUARTER // ts[0].denominator) if ts else 4 * STEPS_PER_QUARTER
    steps = max(n.end for t in read for n in t.notes)
    return MidiScore(path, pm, read, midi_tempo(pm), max(bar, 1), steps)


def melody_track(score: MidiScore, track: int | None = None) -> Track:
    """The one track that is the melody: the only one, or ``track``; it must be one line."""
    n = len(score.tracks)
    if track is None:
        if n > 1:
            raise NotMonophonicError(f"{score.path} has {n} tracks with notes; say which one is the melody "
                                     f"with --track N (0..{n - 1})")
        track = 0
    if not 0 <= track < n:
        raise ValueError(f"track {track} does not exist: {score.path} has {n} non-drum track(s) with notes, "
                         f"numbered 0..{n - 1}")
    chosen = score.tracks[track]
    try:
        check_monophonic(chosen.notes)
    except NotMonophonicError as exc:
        raise NotMonophonicError(f"{score.path}: the melody is not one line ({exc}); "
                                 "give a file (or --track) with one note at a time") from exc
    return chosen


@dataclass(frozen=True)
class Placement:
    """How a melody was moved into a model's key and range: add ``shift`` semitones."""

    shift: int
    key: str  # estimated original key, e.g. "g minor"
    mode: str  # "major" or "minor"


def place(notes: list[Note], low: int, high: int, key: tuple[str, int, str] | None = None) -> Placement:
    """The shift that takes ``notes`` to C major / A minor (nearest shift, -6..+5) and
    then by whole octaves into ``low..high``; ``PitchOutOfRangeError`` when none does."""
    name, tonic, mode = key or estimate_key(notes)
    shift = ((0 if mode == "major" else 9) - tonic) % 12
    shift = shift - 12 if shift > 5 else shift
    pitches = np.array([n.pitch for n in notes]) + shift
    for octave in sorted(range(-5, 6), key=abs):
        moved = pitches + 12 * octave
        if moved.min() >= low and moved.max() <= high:
            return Placement(shift + 12 * octave, name, mode)
    span = int(pitches.max() - pitches.min())
    raise PitchOutOfRangeError(
        f"the melody spans MIDI {min(n.pitch for n in notes)}..{max(n.pitch for n in notes)} "
        f"({span} semitones); it cannot be moved by octaves into the range {low}..{high} "
        f"({high - low} semitones, in C major / A minor) the model knows")


def to_tokens(notes: list[Note], shift: int, vocab: Vocabulary, steps: int) -> np.ndarray:
    """Grid notes moved by ``shift`` -> (steps,) tokens of ``vocab``."""
    return notes_to_tokens([Note(n.start, n.duration, n.pitch + shift) for n in notes], vocab, steps)


def from_tokens(tokens: np.ndarray, shift: int, vocab: Vocabulary) -> list[Note]:
    """Tokens of ``vocab`` moved back by ``shift`` -> grid notes as written."""
    return [Note(n.start, n.duration, n.pitch - shift) for n in tokens_to_notes(tokens, vocab)]


def keep_or_new(notes: list[Note], original: Track | None, step: float, velocity: int = 90) -> list:
    """pretty_midi notes of grid ``notes``: an original note verbatim where the grid note
    is one of ``original``'s, else a new note on the grid."""
    import pretty_midi

    verbatim = {} if original is None else {(g.start, g.duration, g.pitch): r
                                            for g, r in zip(original.notes, original.raw)}
    out = []
    for n in notes:
        raw = verbatim.get((n.start, n.duration, n.pitch))
        out.append(pretty_midi.Note(raw.velocity, raw.pitch, raw.start, raw.end) if raw is not None else
                   pretty_midi.Note(velocity, n.pitch, n.start * step, n.end * step))
    return out


def four_voice_midi(voices: list[list[Note]], tempo: float, programs: tuple[int, int, int, int],
                    originals: list[Track | None] | None = None, bar_steps: int = 16):
    """A four-track ``PrettyMIDI`` (Soprano, Alto, Tenor, Bass) of grid notes as written;
    notes that are an original track's keep that note verbatim."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    if bar_steps % STEPS_PER_QUARTER == 0:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(bar_steps // STEPS_PER_QUARTER, 4, 0.0))
    step = 60.0 / tempo / STEPS_PER_QUARTER
    for v, (notes, program) in enumerate(zip(voices, programs)):
        inst = pretty_midi.Instrument(program=program, name=VOICE_NAMES[v])
        inst.notes = keep_or_new(notes, originals[v] if originals else None, step)
        pm.instruments.append(inst)
    return pm


def instrumentation(name: str) -> tuple[int, int, int, int]:
    if name not in INSTRUMENTATIONS:
        raise ValueError(f"unknown instrumentation {name!r}; valid: {', '.join(INSTRUMENTATIONS)}")
    return INSTRUMENTATIONS[name]


def write_midi(pm, path: str | Path) -> Path:
    """Write a ``PrettyMIDI`` via a temporary file and a rename (never half a file)."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pm.write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
