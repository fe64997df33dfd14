from pathlib import Path

import numpy as np
import pretty_midi
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rlmusic.music.representation import (
    DEFAULT_VOCAB,
    EmptyMelodyError,
    MelodyError,
    Note,
    NotMonophonicError,
    PitchOutOfRangeError,
    Vocabulary,
    load_midi,
    midi_to_notes,
    midi_to_tokens,
    notes_to_midi,
    notes_to_tokens,
    piano_roll_to_tokens,
    tokens_to_midi,
    tokens_to_notes,
    tokens_to_piano_roll,
    top_line,
)

DATA = Path(__file__).parent / "data"
V = DEFAULT_VOCAB
C4, E4, G4 = V.pitch_to_token(60), V.pitch_to_token(64), V.pitch_to_token(67)


def test_vocabulary_layout_is_data():
    assert (V.REST, V.HOLD) == (0, 1)
    assert V.size == 2 + 37 and V.BOS == V.size and V.input_size == V.size + 1
    small = Vocabulary(60, 72)
    assert small.size == 15 and small.pitch_to_token(60) == 2 and small.token_to_pitch(14) == 72
    assert Vocabulary.from_dict(small.to_dict()) == small
    with pytest.raises(PitchOutOfRangeError, match="pitch 85"):
        V.pitch_to_token(85)
    with pytest.raises(ValueError, match="0 <= min_pitch"):
        Vocabulary(80, 60)


def test_tokens_to_notes_by_hand():
    tokens = [C4, V.HOLD, V.HOLD, V.REST, E4, G4, V.HOLD, V.REST]
    assert tokens_to_notes(tokens) == [Note(0, 3, 60), Note(4, 1, 64), Note(5, 2, 67)]


def test_hold_with_nothing_to_hold_is_a_rest():
    assert tokens_to_notes([V.HOLD, V.HOLD, C4, V.REST, V.HOLD]) == [Note(2, 1, 60)]


def test_out_of_vocabulary_token_is_named():
    with pytest.raises(ValueError, match="token 99 at step 1"):
        tokens_to_notes([C4, 99])


melodies = st.lists(
    st.tuples(st.integers(0, 3), st.integers(1, 8), st.integers(48, 84)), min_size=1, max_size=30
)


def _notes(spec):
    notes, t = [], 0
    for gap, dur, pitch in spec:
        t += gap
        notes.append(Note(t, dur, pitch))
        t += dur
    return notes


@given(melodies)
def test_notes_tokens_roundtrip(spec):
    notes = _notes(spec)
    tokens = notes_to_tokens(notes)
    assert tokens_to_notes(tokens) == notes
    np.testing.assert_array_equal(piano_roll_to_tokens(tokens_to_piano_roll(tokens)), tokens)


@given(melodies, st.sampled_from([60.0, 96.0, 120.0, 144.0]), st.integers(0, 127))
def test_midi_roundtrip_is_exact_on_grid(spec, tempo, program):
    notes = _notes(spec)
    tokens = notes_to_tokens(notes)
    pm = tokens_to_midi(tokens, tempo=tempo, program=program)
    assert pm.instruments[0].program == program
    np.testing.assert_array_equal(midi_to_tokens(pm, steps=len(tokens)), tokens)


def test_polyphonic_and_empty_inputs_raise():
    with pytest.raises(NotMonophonicError, match="overlap"):
        notes_to_tokens([Note(0, 4, 60), Note(2, 4, 64)])
    with pytest.raises(EmptyMelodyError):
        notes_to_tokens([])
    with pytest.raises(EmptyMelodyError):
        midi_to_tokens(pretty_midi.PrettyMIDI())
    roll = tokens_to_piano_roll([C4, E4])
    roll[0, E4] = 1
    with pytest.raises(NotMonophonicError, match="row 0 has 2"):
        piano_roll_to_tokens(roll)


def test_off_grid_midi_raises():
    pm = notes_to_midi([Note(0, 4, 60)])
    pm.instruments[0].notes[0].start = 0.04  # 1/3 of a 16th at 120 bpm
    with pytest.raises(ValueError, match="off the 16th-note grid"):
        midi_to_notes(pm)


def test_top_line_keeps_highest_and_cuts_at_next_onset():
    chord = [Note(0, 8, 60), Note(0, 8, 67), Note(4, 4, 64)]
    assert top_line(chord) == [Note(0, 4, 67), Note(4, 4, 64)]


def test_real_midi_file_in_tests_data():
    pm = load_midi(DATA / "melody.mid")
    tokens = midi_to_tokens(pm)
    notes = tokens_to_notes(tokens)
    assert len(notes) > 10
    assert all(48 <= n.pitch <= 84 for n in notes)
    # written back and read again, the same tokens
    again = midi_to_tokens(tokens_to_midi(tokens, tempo=pretty_midi_tempo(pm)), steps=len(tokens))
    np.testing.assert_array_equal(again, tokens)


def pretty_midi_tempo(pm):
    from rlmusic.music.representation import midi_tempo

    return midi_tempo(pm)


def test_polyphonic_real_midi_file_raises():
    with pytest.raises(NotMonophonicError):
        midi_to_tokens(load_midi(DATA / "chords.mid"))


def test_unreadable_midi_is_a_melody_error(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(MelodyError, match="cannot read MIDI"):
        load_midi(bad)
