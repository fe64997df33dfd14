"""Simulated raters with a defined taste (tests and demos of the feedback loop).

A simulated rater has a *taste* the music-theory reward does not encode, a personal
bias (an offset in stars: harsh or kind), a sharpness (how strongly taste moves their
stars) and noise. ``rlmusic simulate-raters`` (``rlmusic.cli.simulate``) has them rate
queued clips through the same path a real study uses: clips from the rating queue,
judgements written to a ratings CSV and imported.

Four tastes of different kinds (``taste_score(tokens, taste)``). None is a function of the
reward model's feature columns (``rlmusic.feedback.features``: the frozen prior's hidden
states and the melody statistics ``STAT_NAMES``): a least-squares fit of each taste on the
statistics explains at most a quarter of its variance on the prior's samples (R^2 0.04 to
0.24, ``tests/test_simulate.py``), so the reward model has to learn them from judgements.

- ``contour`` (melodic contour): likes lines that turn: the share of direction changes
  between successive intervals (repeated notes skipped);
- ``rhythm``: likes notes on the beat: the share of note onsets on a quarter-note beat;
- ``pitch`` (pitch content): likes the tonic triad: the share of notes that are C, E or G;
- ``ending`` (phrase endings): likes a final note that is the tonic (+1) and lasts at least
  a quarter note (+1).

Each raw value is standardised with the mean and standard deviation it has on the shipped
prior's samples of 64 steps (``CALIBRATION``, measured on 2,000 samples, seed 0), so one
taste unit is one standard deviation of the prior's melodies and about one star. A
melody with fewer than 4 notes scores ``SILENT`` (-1.5): raters dislike silence.
Stars: ``clip(round(3 + sharpness * taste + bias + noise * N(0, 1)), 1, 5)``. A
comparison: ``a`` wins when ``sharpness * (taste_a - taste_b) + noise * N(0, 1)`` is above
``TIE_BAND``, ``b`` when below ``-TIE_BAND``, else ``tie``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary

TASTES = ("contour", "rhythm", "pitch", "ending")
CALIBRATION = {  # taste -> (mean, std) of its raw value on the shipped prior's 64-step samples
    "contour": (0.484, 0.096),
    "rhythm": (0.484, 0.069),
    "pitch": (0.568, 0.101),
    "ending": (0.361, 0.578),
}
SILENT = -1.5  # taste of a melody with too few notes to judge
MIN_NOTES = 4  # ... fewer notes than this
TIE_BAND = 0.1  # |preference| below this is a tie
TRIAD = (0, 4, 7)  # pitch classes the "pitch" taste likes: C, E, G
BEAT = 4  # steps per quarter-note beat


# --------------------------------------------------------------------------- tastes


def raw_taste(tokens: np.ndarray, taste: str, vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    """The unstandardised taste value of each melody: (N, T) -> (N,), NaN for a melody with
    fewer than ``MIN_NOTES`` notes."""
    if taste not in TASTES:
        raise ValueError(f"unknown taste {taste!r}; valid: {list(TASTES)}")
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    vocab.validate(tokens.reshape(-1))
    out = np.full(len(tokens), np.nan)
    for i, row in enumerate(tokens):
        onsets = np.flatnonzero(row >= Vocabulary.FIRST_PITCH_TOKEN)
        if len(onsets) < MIN_NOTES:
            continue
        pitches = vocab.pitches(row[onsets])
        if taste == "contour":
            moves = np.sign(np.diff(pitches))
            moves = moves[moves != 0]
            out[i] = (moves[1:] != moves[:-1]).mean() if len(moves) > 1 else 0.0
        elif taste == "rhythm":
            out[i] = (onsets % BEAT == 0).mean()
        elif taste == "pitch":
            out[i] = np.isin(pitches % 12, TRIAD).mean()
        else:  # ending
            end = onsets[-1] + 1
            while end < len(row) and row[end] == Vocabulary.HOLD:
                end += 1
            out[i] = float(pitches[-1] % 12 == 0) + float(end - onsets[-1] >= BEAT)
    return out


def taste_score(tokens: np.ndarray, taste: str, vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    """How much a rater of ``taste`` likes each melody, in taste units (one standard
    deviation of the shipped prior's melodies): (N, T) tokens -> (N,) float."""
    mean, std = CALIBRATION.get(taste, (0.0, 1.0))
    value = (raw_taste(tokens, taste, vocab) - mean) / std
    return np.where(np.isnan(value), SILENT, value)


# --------------------------------------------------------------------------- raters


@dataclass(frozen=True)
class SimulatedRater:
    name: str
    taste: str
    bias: float  # offset in stars (negative: harsh)
    sharpness: float  # stars per taste unit
    noise: float  # std of the noise, in stars

    def stars(self, taste_values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        raw = 3 + self.sharpness * taste_values + self.bias + self.noise * rng.standard_normal(len(taste_values))
        return np.clip(np.round(raw), 1, 5).astype(int)

    def winners(self, taste_a: np.ndarray, taste_b: np.ndarray, rng: np.random.Generator) -> list[str]:
        pref = self.sharpness * (taste_a - taste_b) + self.noise * rng.standard_normal(len(taste_a))
        return ["a" if p > TIE_BAND else "b" if p < -TIE_BAND else "tie" for p in pref]


def make_raters(n: int, taste: str, noise: float, seed: int = 0) -> list[SimulatedRater]:
    """``n`` raters with personal biases in [-1, 1] stars and sharpness in [0.7, 1.3];
    the same (n, taste, seed) always give the same raters."""
    if n < 1:
        raise ValueError(f"n_raters must be >= 1, got {n}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    if taste not in TASTES:
        raise ValueError(f"unknown taste {taste!r}; valid: {list(TASTES)}")
    raters = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        raters.append(SimulatedRater(f"sim-{taste}-{i}", taste, float(rng.uniform(-1, 1)),
                                     float(rng.uniform(0.7, 1.3)), float(noise)))
    return raters
