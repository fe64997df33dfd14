"""Harmonise a melody: the melody becomes the soprano, a harmony model writes alto, tenor
and bass, and the result is four tracks at the melody's own pitches and tempo with the
voice-leading report.

``harmonize_notes`` works on grid notes (the app's clips, tests); ``harmonize_file`` reads
a MIDI file (``rlmusic.harmony.midi_io``) and ``Harmonization.midi`` writes one back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rlmusic.corpus.chorales import bar_positions
from rlmusic.harmony.checkpoint import load_harmonizer
from rlmusic.harmony.gibbs import GibbsConfig, fill
from rlmusic.harmony.midi_io import (
    SOPRANO_RANGE,
    Placement,
    Track,
    four_voice_midi,
    from_tokens,
    instrumentation,
    melody_track,
    place,
    read_score,
    to_tokens,
)
from rlmusic.harmony.repair import repair
from rlmusic.harmony.voice_leading import voice_leading
from rlmusic.music.representation import EmptyMelodyError, Note


@dataclass
class Harmonization:
    """Four voices in the model's key (C major / A minor) and how to get back to the melody's."""

    tokens: np.ndarray  # (4, T) soprano, alto, tenor, bass tokens of the model's vocabulary
    placement: Placement  # shift from the melody's pitches to the model's key
    vocab: object  # the model's Vocabulary
    bar_steps: int = 16  # 16th steps per bar (positions the model was given)
    tempo: float = 120.0  # quarter notes per minute of the output
    melody: Track | None = None  # the input track, whose notes the soprano keeps verbatim
    seed: int = 0
    report: dict = field(default_factory=dict)  # voice_leading of the texture

    @property
    def steps(self) -> int:
        return int(self.tokens.shape[1])

    def voices(self) -> list[list[Note]]:
        """Grid notes of each voice at the melody's pitches."""
        return [from_tokens(row, self.placement.shift, self.vocab) for row in self.tokens]

    def midi(self, instruments: str = "choir"):
        """A four-track ``PrettyMIDI``: the melody's notes verbatim as the soprano."""
        originals = [self.melody, None, None, None]
        return four_voice_midi(self.voices(), self.tempo, instrumentation(instruments), originals, self.bar_steps)


def harmonize_tokens(model, soprano: np.ndarray, bar_steps: int = 16, phase: int = 0, seed: int = 0,
                     gibbs: GibbsConfig | None = None) -> np.ndarray:
    """(T,) soprano tokens of the model's vocabulary -> (4, T) tokens, row 0 unchanged.

    The masked model samples by blocked Gibbs, then repairs parallels and crossings
    (``gibbs.repair_rounds``; ``rlmusic.harmony.repair``); the feedforward model draws each
    cell on its own."""
    gibbs = gibbs or GibbsConfig()
    generator = torch.Generator().manual_seed(seed)
    position = torch.from_numpy(bar_positions(len(soprano), bar_steps, phase))
    out = fill(model, torch.as_tensor(soprano, dtype=torch.long), position, generator, 1, gibbs)[0]
    if model.kind == "masked" and gibbs.repair_rounds:
        allowed = torch.zeros_like(out, dtype=torch.bool)
        allowed[1:] = True
        out, _ = repair(model, out, allowed, position, generator, gibbs.repair_rounds, gibbs)
    out = out.numpy()
    assert (out[0] == soprano).all(), "the soprano must come back unchanged"
    return out


def harmonize_notes(notes: list[Note], model=None, seed: int = 0, bar_steps: int = 16,
                    tempo: float = 120.0, melody: Track | None = None,
                    gibbs: GibbsConfig | None = None, steps: int | None = None) -> Harmonization:
    """Harmonise grid notes (pitches as written) with ``model`` (default: the shipped one)."""
    if not notes:
        raise EmptyMelodyError("the melody has no notes")
    model = model if model is not None else load_harmonizer()
    placement = place(notes, *SOPRANO_RANGE)
    steps = steps or max(n.end for n in notes)
    soprano = to_tokens(notes, placement.shift, model.vocab, steps)
    tokens = harmonize_tokens(model, soprano, bar_steps, 0, seed, gibbs)
    report = voice_leading(tokens, model.vocab, placement.mode, placement.shift)
    return Harmonization(tokens, placement, model.vocab, bar_steps, tempo, melody, seed, report)


def harmonize_file(path: str | Path, model=None, seed: int = 0, track: int | None = None,
                   gibbs: GibbsConfig | None = None) -> Harmonization:
    """Harmonise the melody of a MIDI file (the only track, or ``track``)."""
    score = read_score(path)
    melody = melody_track(score, track)
    return harmonize_notes(melody.notes, model, seed, score.bar_steps, score.tempo, melody, gibbs)
