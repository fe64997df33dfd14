"""What the music rules read: keys and modes, the rule context, the batched melody view.

Reads in this order: keys and modes (``MODES``, ``Key``) -> ``RuleContext`` (key, melody
length and the rules' settings) -> ``MelodyView`` (B melodies of equal length with their
pitches, onsets, notes and sounding steps computed once) -> small helpers.

Everything here is written in pitches and intervals, decoded with the ``Vocabulary``;
token numbers appear only through ``Vocabulary.REST`` / ``Vocabulary.HOLD``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary

# --------------------------------------------------------------------------- keys and modes


# Scale of each mode as semitones above the tonic (data, not code).
MODES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),  # natural minor (aeolian)
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}
PITCH_CLASSES: dict[str, int] = {
    "C": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "F": 5, "F#": 6,
    "GB": 6, "G": 7, "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11,
}


@dataclass(frozen=True)
class Key:
    """A tonic pitch class (0 = C .. 11 = B) and a mode (a name in ``MODES``)."""

    tonic: int = 0
    mode: str = "major"

    def __post_init__(self) -> None:
        if not (isinstance(self.tonic, int) and 0 <= self.tonic <= 11):
            raise ValueError(f"tonic must be a pitch class 0..11, got {self.tonic!r}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid: {sorted(MODES)}")

    @classmethod
    def parse(cls, text: str | Key) -> Key:
        """``"C major"``, ``"A minor"``, ``"F# dorian"``, ``"Bb mixolydian"`` -> Key."""
        if isinstance(text, Key):
            return text
        parts = str(text).split()
        if len(parts) != 2 or parts[0].upper().replace("-", "B") not in PITCH_CLASSES:
            raise ValueError(
                f"key must be '<tonic> <mode>' like 'C major' or 'A minor', got {text!r}; "
                f"modes: {sorted(MODES)}"
            )
        return cls(PITCH_CLASSES[parts[0].upper().replace("-", "B")], parts[1].lower())

    @property
    def scale(self) -> tuple[int, ...]:
        """Pitch classes of the scale, tonic first."""
        return tuple((self.tonic + i) % 12 for i in MODES[self.mode])

    @property
    def triad(self) -> tuple[int, int, int]:
        """Pitch classes of the tonic triad: degrees 1, 3, 5 of the scale."""
        s = self.scale
        return s[0], s[2], s[4]

    def __str__(self) -> str:
        names = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
        return f"{names[self.tonic]} {self.mode}"


C_MAJOR = Key(0, "major")
A_MINOR = Key(9, "minor")


# --------------------------------------------------------------------------- rule context


@dataclass(frozen=True)
class RuleContext:
    """Everything a rule needs besides the tokens. Build with ``TheoryConfig.context``."""

    vocab: Vocabulary = DEFAULT_VOCAB  # decodes tokens to pitches
    key: Key = C_MAJOR  # key of the melody (in_key, tonic_start, cadences)
    steps: int | None = None  # melody length; rules of the last step fire only when known
    motif_length: int = 8  # steps of a motif window (RL Tuner's bar_length)
    max_repeats: int = 4  # same note more than this many times in a row is penalised
    max_repeats_with_breaks: int = 6  # ... when rests/holds lie between the repeats
    leap: int = 7  # an interval of at least this many semitones is a leap
    step_back_max: int = 4  # a leap resolves by an opposite move of 1..this many semitones
    autocorrelation_threshold: float = 0.15  # |r| above this is penalised (RL Tuner: 0.15)
    lags: tuple[int, ...] = (1, 2, 3)  # autocorrelation lags penalised
    steps_per_bar: int = 16  # 4/4 on the 16th grid
    phrase_bars: int | None = None  # bars per phrase; None: 2 up to 64 steps, else 4

    def __post_init__(self) -> None:
        for name in ("motif_length", "max_repeats", "max_repeats_with_breaks", "leap",
                     "step_back_max", "steps_per_bar"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1 or None, got {self.steps}")
        if self.phrase_bars is not None and self.phrase_bars < 1:
            raise ValueError(f"phrase_bars must be >= 1 or None, got {self.phrase_bars}")
        if any(lag < 1 for lag in self.lags):
            raise ValueError(f"lags must be >= 1, got {self.lags}")

    def phrase_bars_for(self, steps: int) -> int:
        if self.phrase_bars is not None:
            return self.phrase_bars
        return 2 if steps <= 4 * self.steps_per_bar else 4

    @cached_property
    def scale_mask(self) -> np.ndarray:
        """(12,) bool: pitch class in the scale."""
        m = np.zeros(12, dtype=bool)
        m[list(self.key.scale)] = True
        return m

    @cached_property
    def triad_mask(self) -> np.ndarray:
        m = np.zeros(12, dtype=bool)
        m[list(self.key.triad)] = True
        return m


# --------------------------------------------------------------------------- batched view


def last_true(mask: np.ndarray) -> np.ndarray:
    """(B, L) bool -> (B,) index of the last True per row, -1 when none."""
    if mask.shape[1] == 0:
        return np.full(mask.shape[0], -1, dtype=np.int64)
    rev = mask[:, ::-1]
    idx = mask.shape[1] - 1 - rev.argmax(axis=1)
    return np.where(rev.any(axis=1), idx, -1)


class MelodyView:
    """B melodies of equal length L (history + next token); derived views computed once.

    The last step (index L-1) is the step being scored.
    """

    def __init__(self, seq: np.ndarray, ctx: RuleContext):
        seq = np.asarray(seq, dtype=np.int64)
        if seq.ndim != 2:
            raise ValueError(f"melodies must have shape (B, L), got {seq.shape}")
        if seq.size and (seq.min() < 0 or seq.max() >= ctx.vocab.size):
            bad = seq[(seq < 0) | (seq >= ctx.vocab.size)][0]
            raise ValueError(f"token {int(bad)} is outside the vocabulary (0..{ctx.vocab.size - 1})")
        self.seq = seq
        self.ctx = ctx
        self.B, self.L = seq.shape

    @cached_property
    def pitch(self) -> np.ndarray:
        """(B, L) MIDI pitch at note onsets, -1 elsewhere."""
        return self.ctx.vocab.pitches(self.seq)

    @cached_property
    def onset(self) -> np.ndarray:
        return self.pitch >= 0

    @property
    def new_pitch(self) -> np.ndarray:
        return self.pitch[:, -1]

    @property
    def new_onset(self) -> np.ndarray:
        return self.onset[:, -1]

    @cached_property
    def notes(self) -> tuple[np.ndarray, np.ndarray]:
        """Left-aligned note pitches (B, L) padded with -1, and note counts (B,)."""
        order = np.argsort(~self.onset, axis=1, kind="stable")
        return np.take_along_axis(self.pitch, order, axis=1), self.onset.sum(axis=1)

    def note_back(self, j: int) -> np.ndarray:
        """(B,) pitch of the j-th last note (j=1: the last), -1 when there is none."""
        n, k = self.notes
        idx = k - j
        vals = np.take_along_axis(n, np.clip(idx, 0, None)[:, None], axis=1)[:, 0]
        return np.where(idx >= 0, vals, -1)

    @cached_property
    def sounding(self) -> np.ndarray:
        """(B, L) bool: a note sounds (onset, or HOLD continuing a note)."""
        not_hold = self.seq != Vocabulary.HOLD
        idx = np.where(not_hold, np.arange(self.L), -1)
        last = np.maximum.accumulate(idx, axis=1)
        src = np.take_along_axis(self.onset, np.clip(last, 0, None), axis=1)
        return src & (last >= 0)
