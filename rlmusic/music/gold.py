"""Broken melodies for gold checks: a clip whose right answer is known.

A gold check puts a model's melody against a deliberately broken copy of it. The copy
keeps the rhythm (the same onsets, holds and rests) and moves every note to a random
pitch *off* the melody's key, anywhere in the vocabulary's range: no note is in the key
and the line leaps at random, so a listener who attends prefers the intact melody. A
melody without notes gets one broken note per quarter.
"""

from __future__ import annotations

import numpy as np

from rlmusic.music.context import MODES
from rlmusic.music.representation import STEPS_PER_QUARTER, Vocabulary


def melody_scale(tokens: np.ndarray, vocab: Vocabulary) -> tuple[int, ...]:
    """The pitch classes of the major scale holding the most of the melody's sounding
    steps (ties: the lowest tonic); C major for a melody without notes."""
    tokens = np.asarray(tokens)
    pitches = vocab.pitches(tokens)  # (T,) -1 for REST/HOLD
    sounding = np.full(len(tokens), -1)
    current = -1
    for t, (token, pitch) in enumerate(zip(tokens, pitches)):
        if pitch >= 0:
            current = pitch
        elif token == vocab.REST:
            current = -1
        sounding[t] = current
    weights = np.bincount(sounding[sounding >= 0] % 12, minlength=12)  # (12,) steps per pitch class
    major = np.array(MODES["major"])
    covered = [weights[(tonic + major) % 12].sum() for tonic in range(12)]
    tonic = int(np.argmax(covered))
    return tuple(int((tonic + step) % 12) for step in major)


def broken_melody(tokens, vocab: Vocabulary, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``tokens`` (T,) with the same rhythm and every note on a random pitch
    off the melody's key -> (T,) int64."""
    tokens = vocab.validate(tokens)
    scale = set(melody_scale(tokens, vocab))
    off_key = np.array([p for p in range(vocab.min_pitch, vocab.max_pitch + 1) if p % 12 not in scale])
    if not len(off_key):
        raise ValueError(f"the vocabulary's range {vocab.min_pitch}..{vocab.max_pitch} holds no pitch off the key")
    broken = tokens.copy()
    onsets = np.flatnonzero(tokens >= vocab.FIRST_PITCH_TOKEN)
    if not len(onsets):  # nothing to keep the rhythm of: a note every quarter, held
        broken[:] = vocab.HOLD
        onsets = np.arange(0, len(tokens), STEPS_PER_QUARTER)
    for t in onsets:
        broken[t] = vocab.pitch_to_token(int(rng.choice(off_key)))
    return broken
