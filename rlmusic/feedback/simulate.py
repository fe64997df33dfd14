"""Simulated raters with a defined taste (tests and demos of the feedback loop).

A simulated rater has a *taste* the music-theory reward does not encode, a personal
bias (an offset in stars: harsh or kind), a sharpness (how strongly taste moves their
stars) and noise. ``rlmusic simulate-raters`` (``rlmusic.cli.simulate``) has them rate
queued clips through the same path a real study uses: clips from the rating queue,
judgements written to a ratings CSV and imported.

Tastes (``taste_score(tokens, taste)``, in "taste units": about one unit per star):

- ``contour``: an arch: the melody rises then falls. Mean pitch sounding in the middle
  half minus the mean pitch of the first and last quarters, per 3 semitones.
- ``rising``: ends higher than it starts: mean pitch of the last quarter minus the
  first quarter, per 3 semitones.
- ``smooth``: dislikes large leaps: ``-(mean |interval| - 2) / 2`` over successive notes
  (steps of a tone score 0, leaps of a fourth about -1.5).

A melody with too few notes to judge scores ``SILENT`` (-1.5): raters dislike silence.
Stars: ``clip(round(3 + sharpness * taste + bias + noise * N(0, 1)), 1, 5)``. A
comparison: ``a`` wins when ``sharpness * (taste_a - taste_b) + noise * N(0, 1)`` is above
``TIE_BAND``, ``b`` when below ``-TIE_BAND``, else ``tie``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary

TASTES = ("contour", "rising", "smooth")
SILENT = -1.5  # taste of a melody with too few notes to judge
TIE_BAND = 0.1  # |preference| below this is a tie


# --------------------------------------------------------------------------- tastes


def _sounding(tokens: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    from rlmusic.feedback.features import sounding_pitches

    return sounding_pitches(tokens, vocab)


def _part_means(sounding: np.ndarray, lo: int, hi: int) -> np.ndarray:
    part = sounding[:, lo:hi]
    count = np.sum(~np.isnan(part), axis=1)
    return np.where(count > 0, np.nansum(part, axis=1) / np.maximum(count, 1), np.nan)


def taste_score(tokens: np.ndarray, taste: str, vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    """How much a rater of ``taste`` likes each melody: (N, T) tokens -> (N,) float."""
    if taste not in TASTES:
        raise ValueError(f"unknown taste {taste!r}; valid: {list(TASTES)}")
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    vocab.validate(tokens.reshape(-1))
    n, steps = tokens.shape
    if taste == "smooth":
        out = np.full(n, SILENT)
        pitches = vocab.pitches(tokens)
        for i in range(n):
            p = pitches[i][pitches[i] >= 0]
            if len(p) >= 2:
                out[i] = -(np.abs(np.diff(p)).mean() - 2.0) / 2.0
        return out
    sounding = _sounding(tokens, vocab)
    q1, q3 = steps // 4, steps - steps // 4
    if taste == "contour":
        middle = _part_means(sounding, q1, q3)
        outer = _part_means(np.concatenate([sounding[:, :q1], sounding[:, q3:]], axis=1), 0, steps)
        value = (middle - outer) / 3.0
    else:  # rising
        value = (_part_means(sounding, q3, steps) - _part_means(sounding, 0, q1)) / 3.0
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
