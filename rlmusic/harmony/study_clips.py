"""The clips of a blind study between two harmonisers: the same soprano on both sides.

A *harmoniser* is a harmony model directory (masked or feedforward) or ``bach`` (Bach's
own alto, tenor and bass, for his chorale sopranos). The sopranos come from a folder of
MIDI melodies (``rlmusic generate`` writes such folders) or from the held-out chorales
(``CHORALES``: the test split, which no shipped harmony model trained or was selected
on), cut into excerpts of ``steps`` 16th steps that start on a downbeat.

``sopranos`` reads them (counting what it skips and why), ``harmonise`` writes one
four-voice version per soprano, and ``harmony_of_clip`` rebuilds a stored harmony clip
for playing (the app's Compare page).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlmusic.corpus.chorales import CHORALE_VOCAB
from rlmusic.harmony.gibbs import GibbsConfig
from rlmusic.harmony.harmonize import Harmonization, harmonize_tokens
from rlmusic.harmony.midi_io import (
    SOPRANO_RANGE,
    Placement,
    melody_track,
    place,
    read_score,
    to_tokens,
)
from rlmusic.harmony.voice_leading import voice_leading
from rlmusic.music.representation import (
    DEFAULT_VOCAB,
    EmptyMelodyError,
    Note,
    Vocabulary,
    notes_to_tokens,
)

BACH = "bach"  # the harmoniser that is Bach himself (chorale sopranos only)
CHORALES = "chorales"  # --melodies: excerpts of the held-out chorales
MIDI_SUFFIXES = (".mid", ".midi")
INSTRUMENTS = "choir"  # every harmonisation a rater hears (Studio, studies, Compare): timbre never sways a rating
SKIP_REASONS = {  # why a MIDI file gives no soprano, by the error read_score & co. raise
    "EmptyMelodyError": "no notes in the excerpt",
    "NotMonophonicError": "not one line (several tracks, or notes that overlap)",
    "PitchOutOfRangeError": "pitches the soprano's range or the app's melody range cannot hold",
}


@dataclass(frozen=True)
class Soprano:
    """One melody to harmonise, in the harmonisers' key (C major / A minor) and vocabulary."""

    source: str  # the MIDI file, or "bach:bwv269" for a chorale
    start: int  # first step of the excerpt in its source
    tokens: np.ndarray  # (steps,) tokens of the harmonisers' vocabulary
    placement: Placement  # how the source's pitches were moved into the model's key
    bar_steps: int  # 16th steps per bar
    tempo: float  # quarter notes per minute
    bach: np.ndarray | None = None  # (4, steps) Bach's own voices, for a chorale excerpt


def restrike(rows: np.ndarray, before: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """(V, T) excerpt whose first step may be a HOLD of a note begun ``before`` (V, S):
    that step becomes the held note (or a rest), so every voice starts cleanly."""
    rows = rows.copy()
    for v in range(len(rows)):
        if rows[v, 0] != vocab.HOLD:
            continue
        earlier = before[v][before[v] != vocab.HOLD]
        rows[v, 0] = earlier[-1] if len(earlier) else vocab.REST
    return rows


def chorale_sopranos(n: int, steps: int, skipped: Counter, vocab: Vocabulary = CHORALE_VOCAB) -> list[Soprano]:
    """Up to ``n`` excerpts of ``steps`` steps of the test split's chorales, each from a
    downbeat: the first excerpt of every chorale, then the second of every chorale, ..."""
    from rlmusic.corpus.chorale_corpus import load_chorales

    corpus = load_chorales(progress=False)
    if corpus.vocab != vocab:
        raise ValueError(f"the chorale corpus's vocabulary {corpus.vocab.min_pitch}..{corpus.vocab.max_pitch} is "
                         f"not the harmonisers' {vocab.min_pitch}..{vocab.max_pitch}")
    per_chorale = []
    for c in corpus.split("test"):
        first = (c.bar_steps - c.phase) % c.bar_steps
        hop = -(-steps // c.bar_steps) * c.bar_steps  # whole bars, so every excerpt starts on a downbeat
        starts = list(range(first, c.steps - steps + 1, hop))
        if not starts:
            skipped[f"chorale shorter than {steps} steps from its first downbeat"] += 1
        per_chorale.append([(c, s) for s in starts])
    found = []
    for rank in range(max((len(x) for x in per_chorale), default=0)):
        for excerpts in per_chorale:
            if rank >= len(excerpts) or len(found) >= n:
                continue
            c, s = excerpts[rank]
            rows = restrike(c.tokens[:, s : s + steps], c.tokens[:, :s], vocab)
            pitches = vocab.pitches(rows[0])
            pitches = pitches[pitches >= 0] - c.transposed_by  # as Bach wrote them
            if not len(pitches):
                skipped["excerpt whose soprano is silent"] += 1
                continue
            if pitches.min() < DEFAULT_VOCAB.min_pitch or pitches.max() > DEFAULT_VOCAB.max_pitch:
                skipped[SKIP_REASONS["PitchOutOfRangeError"]] += 1
                continue
            found.append(Soprano(c.id, s, rows[0], Placement(c.transposed_by, c.key, c.mode), c.bar_steps,
                                 120.0, rows))
    return found


def cut(notes: list[Note], steps: int) -> list[Note]:
    """The notes that start before ``steps``, the last one shortened to end there."""
    return [Note(n.start, min(n.end, steps) - n.start, n.pitch) for n in notes if n.start < steps]


def folder_sopranos(folder: Path, n: int, steps: int, skipped: Counter, vocab: Vocabulary) -> list[Soprano]:
    """Up to ``n`` melodies of the MIDI files in ``folder`` (sorted by name), each its first
    ``steps`` steps (a shorter one is padded with rests), moved into C major / A minor."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in MIDI_SUFFIXES)
    if not files:
        raise ValueError(f"--melodies {folder}: no .mid or .midi file in it")
    found = []
    for path in files:
        if len(found) >= n:
            break
        try:
            score = read_score(path)
            notes = cut(melody_track(score).notes, steps)
            if not notes:
                raise EmptyMelodyError(f"{path}: no note in the first {steps} steps")
            placement = place(notes, *SOPRANO_RANGE)
            tokens = to_tokens(notes, placement.shift, vocab, steps)
            notes_to_tokens(notes, DEFAULT_VOCAB, steps)  # the clip keeps the soprano as a melody
        except (ValueError, OSError) as exc:  # MelodyError is a ValueError
            skipped[SKIP_REASONS.get(type(exc).__name__, "unreadable or off the 16th grid")] += 1
            continue
        found.append(Soprano(str(path.resolve()), 0, tokens, placement, score.bar_steps, score.tempo))
    return found


def sopranos(melodies: str, n: int, steps: int, vocab: Vocabulary = CHORALE_VOCAB) -> tuple[list[Soprano], Counter]:
    """The study's sopranos from ``melodies`` (a folder or ``chorales``) and what was skipped."""
    skipped: Counter = Counter()
    if melodies == CHORALES:
        return chorale_sopranos(n, steps, skipped, vocab), skipped
    folder = Path(melodies)
    if not folder.is_dir():
        raise ValueError(f"--melodies {melodies!r} is neither a folder of MIDI melodies nor {CHORALES!r}")
    return folder_sopranos(folder, n, steps, skipped, vocab), skipped


def harmonise(harmoniser, soprano: Soprano, seed: int, gibbs: GibbsConfig | None = None) -> Harmonization:
    """Four voices over ``soprano``: Bach's own (``harmoniser`` is ``BACH``) or a model's."""
    if harmoniser == BACH:
        if soprano.bach is None:
            raise ValueError(f"{soprano.source} is not a chorale: Bach harmonised only his chorale sopranos")
        tokens, vocab = soprano.bach, CHORALE_VOCAB
    else:
        tokens, vocab = harmonize_tokens(harmoniser, soprano.tokens, soprano.bar_steps, 0, seed, gibbs), harmoniser.vocab
    report = voice_leading(tokens, vocab, soprano.placement.mode, soprano.placement.shift)
    return Harmonization(tokens, soprano.placement, vocab, soprano.bar_steps, soprano.tempo, None, seed, report)


def soprano_melody(h: Harmonization) -> np.ndarray:
    """The soprano at its own pitches as melody tokens (what a harmony clip's ``tokens`` hold)."""
    return notes_to_tokens(h.voices()[0], DEFAULT_VOCAB, h.steps)


def harmony_of_clip(tokens: list[int], voices: list[list[int]], vocab: Vocabulary = CHORALE_VOCAB,
                    tempo: float = 120.0) -> Harmonization:
    """A stored harmony clip (``tokens``: its soprano as a melody; ``voices``: four rows of
    ``vocab`` in the model's key) as a ``Harmonization`` at the soprano's own pitches."""
    rows = np.asarray(voices, dtype=np.int64)
    melody, model = np.asarray(tokens), rows[0]
    onset = np.flatnonzero(model >= vocab.FIRST_PITCH_TOKEN)
    shift = 0
    if len(onset):  # the soprano's first note, in the model's key minus as written
        shift = int(vocab.pitches(model[onset[:1]])[0] - DEFAULT_VOCAB.pitches(melody[onset[:1]])[0])
    return Harmonization(rows, Placement(shift, "", ""), vocab, 16, tempo)
