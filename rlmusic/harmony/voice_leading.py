"""The voice-leading report of a four-voice texture: what a harmony teacher marks first.

Every figure is computed the same way on a model's harmonisation and on Bach's own
chorales, so a model is judged against Bach's rates, not against zero (Bach writes a
crossing or a wide spacing now and then, and notes out of key all the time).

A *sonority* is a frame where at least one voice starts a note; consecutive sonorities
make a *transition*. With ``p`` the sounding pitches (rests excluded):

- ``parallel_fifths`` / ``parallel_octaves``: voice pairs (any two of the four) that
  move in the same direction, both voices changing pitch, from one perfect fifth
  (octave or unison) to another, compound intervals included; counted per pair and
  transition, rate per transition;
- ``voice_crossings``: sonorities where a lower voice sounds above the voice written
  above it (S/A, A/T or T/B), rate per sonority;
- ``spacing_over_octave``: sonorities where soprano and alto, or alto and tenor, lie
  more than an octave apart (tenor and bass may), rate per sonority;
- ``out_of_range``: notes of alto, tenor and bass outside the voice's usual range
  (``VOICE_RANGES``, as sung: the original key), rate per note; the soprano is the
  given melody, so it is not counted;
- ``notes_out_of_key``: notes of alto, tenor and bass whose pitch class is outside the
  key's scale (major: the major scale; minor: natural, harmonic and melodic minor
  together), rate per note;
- ``silent_frames``: frames where alto, tenor or bass rests, rate per voice and frame: a
  resting voice makes no parallels and crosses nothing, so a sampler that dodges faults
  by falling silent shows here.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from rlmusic.music.representation import Vocabulary

VOICES = ("soprano", "alto", "tenor", "bass")
# usual ranges as sung (MIDI pitches, inclusive): S C4-G5, A G3-D5, T C3-G4, B E2-C4
VOICE_RANGES: dict[str, tuple[int, int]] = {
    "soprano": (60, 79), "alto": (55, 74), "tenor": (48, 67), "bass": (40, 60),
}
SCALES = {"major": frozenset({0, 2, 4, 5, 7, 9, 11}),  # C major
          "minor": frozenset({9, 11, 0, 2, 4, 5, 7, 6, 8})}  # A natural + F#, G#
RATES = ("parallel_fifths", "parallel_octaves", "voice_crossings", "spacing_over_octave",
         "out_of_range", "notes_out_of_key", "silent_frames")
DENOMINATORS = {"parallel_fifths": "transitions", "parallel_octaves": "transitions",
                "voice_crossings": "sonorities", "spacing_over_octave": "sonorities",
                "out_of_range": "notes", "notes_out_of_key": "notes", "silent_frames": "voice_frames"}


def sounding(tokens: np.ndarray, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """(pitch sounding per voice and step, -1 in a rest; note onsets) of (4, T) tokens."""
    tokens = np.asarray(tokens)
    pitch = vocab.pitches(tokens)  # (4, T), -1 on REST and HOLD
    onset = pitch >= 0
    out = pitch.copy()
    for t in range(1, tokens.shape[1]):  # HOLD carries the previous step's pitch (or rest)
        hold = tokens[:, t] == Vocabulary.HOLD
        out[hold, t] = out[hold, t - 1]
    return out, onset


def voice_leading_counts(tokens: np.ndarray, vocab: Vocabulary, mode: str = "major",
                         transposed_by: int = 0) -> dict[str, int]:
    """Counts and denominators of the report for one four-voice texture.

    ``tokens``: (4, T) soprano, alto, tenor, bass in C major / A minor (as the chorale
    corpus and the models hold them); ``transposed_by``: what was added to reach that key,
    so ranges are judged at the pitches as sung.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[0] != 4:
        raise ValueError(f"a four-voice texture has shape (4, T), got {tokens.shape}")
    if mode not in SCALES:
        raise ValueError(f"mode must be one of {', '.join(SCALES)}, got {mode!r}")
    pitch, onset = sounding(tokens, vocab)
    events = np.flatnonzero(onset.any(axis=0))
    chords = pitch[:, events]  # (4, E)
    counts = dict.fromkeys(RATES, 0) | {"transitions": max(len(events) - 1, 0), "sonorities": len(events)}
    for i in range(4):
        for j in range(i + 1, 4):
            a, b = chords[i], chords[j]
            both = (a[:-1] >= 0) & (b[:-1] >= 0) & (a[1:] >= 0) & (b[1:] >= 0)
            move_a, move_b = np.sign(a[1:] - a[:-1]), np.sign(b[1:] - b[:-1])
            similar = both & (move_a != 0) & (move_b != 0) & (move_a == move_b)
            before, after = np.abs(a[:-1] - b[:-1]) % 12, np.abs(a[1:] - b[1:]) % 12
            counts["parallel_fifths"] += int((similar & (before == 7) & (after == 7)).sum())
            counts["parallel_octaves"] += int((similar & (before == 0) & (after == 0)).sum())
    crossed = np.zeros(len(events), dtype=bool)
    for upper in range(3):
        hi, lo = chords[upper], chords[upper + 1]
        crossed |= (hi >= 0) & (lo >= 0) & (lo > hi)
    counts["voice_crossings"] = int(crossed.sum())
    wide = np.zeros(len(events), dtype=bool)
    for upper in range(2):
        hi, lo = chords[upper], chords[upper + 1]
        wide |= (hi >= 0) & (lo >= 0) & (hi - lo > 12)
    counts["spacing_over_octave"] = int(wide.sum())
    scale = SCALES[mode]
    notes = out_range = out_key = 0
    for v in range(1, 4):
        starts = pitch[v][onset[v]]
        low, high = VOICE_RANGES[VOICES[v]]
        sung = starts - transposed_by
        notes += len(starts)
        out_range += int(((sung < low) | (sung > high)).sum())
        out_key += int(sum(int(p) % 12 not in scale for p in starts))
    counts |= {"notes": notes, "out_of_range": out_range, "notes_out_of_key": out_key,
               "silent_frames": int((pitch[1:] < 0).sum()), "voice_frames": int(pitch[1:].size)}
    return counts


def rates(counts: dict[str, int]) -> dict[str, float]:
    """Each figure of ``RATES`` over its denominator (NaN when there is none)."""
    return {name: counts[name] / counts[DENOMINATORS[name]] if counts[DENOMINATORS[name]] else float("nan")
            for name in RATES}


def total(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Counts of several textures added up (rates over a corpus weigh every event once)."""
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out


def voice_leading(tokens: np.ndarray, vocab: Vocabulary, mode: str = "major",
                  transposed_by: int = 0) -> dict[str, float]:
    """Counts and rates of one texture (``voice_leading_counts`` and ``rates``)."""
    counts = voice_leading_counts(tokens, vocab, mode, transposed_by)
    return counts | {f"{k}_rate": v for k, v in rates(counts).items()}


def format_report(report: dict[str, float], reference: dict[str, float] | None = None) -> str:
    """The report as lines: count, denominator and rate per figure (and a reference's rate)."""
    lines = []
    for name in RATES:
        den = DENOMINATORS[name]
        line = (f"  {name.replace('_', ' '):<22} {int(report[name]):4d} of {int(report[den]):4d} "
                f"{den:<12} {100 * report[name + '_rate']:5.1f}%")
        if reference is not None:
            line += f"   (Bach's held-out chorales: {100 * reference[name + '_rate']:.1f}%)"
        lines.append(line)
    return "\n".join(lines)


def fault_cells(tokens: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """(4, T) bool: the cells of every parallel fifth or octave (both voices, from the first
    sonority of the pair to the one after the second) and of every voice crossing (both
    voices, that sonority), as ``voice_leading_counts`` finds them."""
    pitch, onset = sounding(np.asarray(tokens), vocab)
    t = pitch.shape[1]
    events = np.flatnonzero(onset.any(axis=0))
    bounds = np.append(events, t)  # sonority k spans frames bounds[k]..bounds[k+1]-1
    chords = pitch[:, events]
    cells = np.zeros(pitch.shape, dtype=bool)
    for i in range(4):
        for j in range(i + 1, 4):
            a, b = chords[i], chords[j]
            both = (a[:-1] >= 0) & (b[:-1] >= 0) & (a[1:] >= 0) & (b[1:] >= 0)
            move_a, move_b = np.sign(a[1:] - a[:-1]), np.sign(b[1:] - b[:-1])
            similar = both & (move_a != 0) & (move_a == move_b)
            before, after = np.abs(a[:-1] - b[:-1]) % 12, np.abs(a[1:] - b[1:]) % 12
            for k in np.flatnonzero(similar & (before == after) & ((before == 0) | (before == 7))):
                cells[[i, j], bounds[k]: bounds[k + 2]] = True
    for upper in range(3):
        hi, lo = chords[upper], chords[upper + 1]
        for k in np.flatnonzero((hi >= 0) & (lo >= 0) & (lo > hi)):
            cells[[upper, upper + 1], bounds[k]: bounds[k + 1]] = True
    return cells


def fault_count(tokens: np.ndarray, vocab: Vocabulary) -> int:
    """Parallel fifths, parallel octaves and voice crossings of a texture, added up."""
    c = voice_leading_counts(tokens, vocab)
    return c["parallel_fifths"] + c["parallel_octaves"] + c["voice_crossings"]
