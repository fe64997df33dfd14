"""The voice-leading report on hand-written four-voice textures (each fault alone, and
what must not count), and on Bach's own held-out chorales."""

from __future__ import annotations

import numpy as np
import pytest

from rlmusic.corpus.chorale_corpus import load_chorales
from rlmusic.corpus.chorales import CHORALE_VOCAB as V
from rlmusic.harmony.evaluate import bach_reference
from rlmusic.harmony.voice_leading import format_report, voice_leading, voice_leading_counts

H = V.HOLD


def texture(*chords: tuple[int, int, int, int], length: int = 4) -> np.ndarray:
    """(4, T) tokens: each chord (S, A, T, B pitches; -1 a rest) held ``length`` steps."""
    rows = [[], [], [], []]
    for chord in chords:
        for v, pitch in enumerate(chord):
            rows[v] += ([V.REST] if pitch < 0 else [V.pitch_to_token(pitch)]) + [H] * (length - 1)
    return np.array(rows)


C_MAJOR = (72, 67, 64, 48)  # C5 G4 E4 C3
D_MINOR = (74, 69, 65, 50)  # every voice up a tone: S-B octaves (compound), A-B fifths
G_MAJOR = (71, 67, 62, 43)


def test_clean_progression_has_no_faults():
    r = voice_leading(texture(C_MAJOR, (72, 65, 60, 53), G_MAJOR, C_MAJOR), V)
    assert r["sonorities"] == 4 and r["transitions"] == 3
    for k in ("parallel_fifths", "parallel_octaves", "voice_crossings", "spacing_over_octave",
              "out_of_range", "notes_out_of_key"):
        assert r[k] == 0, k


def test_parallel_fifths_and_octaves_in_similar_motion():
    r = voice_leading_counts(texture(C_MAJOR, D_MINOR), V)
    # pairs: S-A fourth, S-T sixth, S-B 2 octaves (compound octave), A-T third, A-B fifth+octave, T-B tenth
    assert r["parallel_octaves"] == 1 and r["parallel_fifths"] == 1 and r["transitions"] == 1


def test_contrary_and_oblique_motion_do_not_count():
    contrary = texture((72, 67, 64, 48), (74, 67, 64, 50 - 12))  # S-B octave -> octave, S up, B down
    assert voice_leading_counts(contrary, V)["parallel_octaves"] == 0
    oblique = texture((72, 67, 64, 48), (72, 67, 64, 53))  # only the bass moves
    assert voice_leading_counts(oblique, V)["parallel_fifths"] == 0
    repeated = texture(C_MAJOR, C_MAJOR)  # the same chord struck again: no motion
    assert voice_leading_counts(repeated, V)["parallel_octaves"] == 0


def test_crossing_spacing_range_and_key():
    crossed = voice_leading_counts(texture((64, 67, 60, 48)), V)  # alto above soprano
    assert crossed["voice_crossings"] == 1
    wide = voice_leading_counts(texture((79, 64, 60, 48)), V)  # soprano - alto a tenth
    assert wide["spacing_over_octave"] == 1 and wide["voice_crossings"] == 0
    low = voice_leading_counts(texture((72, 67, 64, 36)), V)  # bass C2, under E2
    assert low["out_of_range"] == 1 and low["notes"] == 3
    sharp = voice_leading_counts(texture((72, 66, 63, 48)), V)  # F#, D#: out of C major
    assert sharp["notes_out_of_key"] == 2
    minor = voice_leading_counts(texture((69, 68, 64, 45)), V, mode="minor")  # G# is A minor's
    assert minor["notes_out_of_key"] == 0


def test_ranges_are_judged_where_the_voices_sing():
    tokens = texture((72, 67, 64, 41))  # bass F2 in C major: in range
    assert voice_leading_counts(tokens, V)["out_of_range"] == 0
    # the same texture transposed up by 5 to reach C: sung as C2, out of range
    assert voice_leading_counts(tokens, V, transposed_by=5)["out_of_range"] == 1


def test_rests_hold_no_pitch():
    r = voice_leading_counts(texture((72, 67, 64, -1), (74, 69, 65, -1)), V)
    assert r["parallel_octaves"] == 0 and r["notes"] == 4


def test_bad_shapes_and_modes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        voice_leading_counts(np.zeros((3, 8), dtype=int), V)
    with pytest.raises(ValueError, match="mode"):
        voice_leading_counts(texture(C_MAJOR), V, mode="dorian")


def test_bach_held_out_rates_are_small_but_not_zero():
    corpus = load_chorales(progress=False)
    bach = bach_reference(corpus, "test")
    assert bach["sonorities"] > 1000
    assert 0 < bach["notes_out_of_key_rate"] < 0.15  # Bach is chromatic, a little
    assert bach["voice_crossings_rate"] < 0.05 and bach["parallel_fifths_rate"] < 0.02
    text = format_report(bach, bach)
    assert "parallel fifths" in text and "Bach's held-out chorales" in text
