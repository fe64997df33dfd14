"""Magenta RL Tuner port, case by case.

Every expected number below is what Magenta's code (magenta/models/rl_tuner, commit 97f8e8c:
rl_tuner.py reward_* / detect_* methods, rl_tuner_eval_metrics.py, rl_tuner_ops.autocorrelate)
gives for the sequence, worked out from that code; the comments say why.
"""

import time

import numpy as np
import pytest

from rlmusic.music.rl_tuner_metrics import rl_tuner_metrics
from rlmusic.music.rl_tuner_rewards import (
    COMPONENTS,
    RLTunerRewardState,
    rl_tuner_detections,
    rl_tuner_step_reward_components,
    rl_tuner_step_rewards,
)

R, H = 0, 1  # Magenta NOTE_OFF, NO_EVENT


def tok(midi: int) -> int:
    """Token of a MIDI pitch: token 2 = MIDI 48 (Magenta: "action 2 = midi note 48")."""
    return midi - 46


C3, D3, Fs3, G3 = tok(48), tok(50), tok(54), tok(55)
C4, Cs4, D4, E4, F4, Fs4, G4, A4, B4 = (tok(m) for m in (60, 61, 62, 64, 65, 66, 67, 69, 71))
C5, Cs5, D5 = tok(72), tok(73), tok(74)


def comps(row, length=None):
    """Reward components of one row as lists (composition_length = len(row) by default), after
    checking that the incremental form gives the very same numbers."""
    length = length or len(row)
    out = rl_tuner_step_reward_components(np.array([row]), composition_length=length)
    state = RLTunerRewardState(composition_length=length)
    state.reset(1)
    for t, token in enumerate(row):
        state.step(np.array([token]))
        for k in COMPONENTS:
            assert state.last_components[k][0] == out[k][0, t], (k, t)
    return {k: v[0].tolist() for k, v in out.items()}


def metrics(*rows):
    return rl_tuner_metrics(np.array(rows))


# ---------------------------------------------------------------- encoding
def test_encoding_matches_magenta_constants():
    # rl_tuner_ops: C_MAJOR_TONIC = 14, C_MAJOR_KEY lists the in-key tokens 0..37.
    assert (C4, C3, C5) == (14, 2, 26)
    magenta_c_major_key = [0, 1, 2, 4, 6, 7, 9, 11, 13, 14, 16, 18, 19, 21, 23, 25, 26, 28,
                           30, 31, 33, 35, 37]
    not_in_key = rl_tuner_detections(np.arange(39)[None])["not_in_key"][0]
    assert np.flatnonzero(~not_in_key).tolist() == magenta_c_major_key + [38]  # 38 = MIDI 84, a C


# ---------------------------------------------------------------- metrics
def test_starts_with_tonic_is_exactly_midi_60_at_step_0():
    m = metrics([C4, D4, E4, F4], [C5, D4, E4, F4], [R, C4, E4, F4], [C3, D4, E4, F4])
    assert m["num_starting_tonic"] == 1 and m["starts_with_tonic"] == 0.25  # / compositions


def test_notes_not_in_key_per_16th_step():
    m = metrics([C4, Fs4, R, H, Cs5, C4], [C4, D4, E4, F4, G4, A4])
    assert m["num_notes_not_in_key"] == 2 and m["notes_not_in_key"] == 2 / 12  # rests/holds in key


@pytest.mark.parametrize("row, flagged", [
    ([C4] * 4, []),
    ([C4] * 5, []),  # the 5th C has 4 before it: "> 4" is false
    ([C4] * 6, [5]),
    ([C4] * 8, [5, 6, 7]),
    ([C4, D4] + [C4] * 5, []),  # the scan stops at D4: 4 Cs
    ([C4, H] * 8, [14]),  # holds in the run: "> 6" Cs before, so the 8th C
    ([C4, R, R, R], [3]),  # a rest after > 1 rests since the last note
    ([R, R, R], [2]),
    ([C4] + [H] * 5, []),
    ([C4] + [H] * 6, [6]),  # a hold after > 4 holds
    ([C4, H, R, H, H, H, H, H], []),  # a rest among them: "> 6" holds needed
    ([C4, R, H, R, H, R, H, H, H, H], [5]),  # the third rest
])
def test_excessive_repeats(row, flagged):
    m = metrics(row)
    assert m["num_repeated_notes"] == len(flagged)
    assert m["notes_excessively_repeated"] == len(flagged) / len(row)
    assert [i for i, v in enumerate(comps(row)["penalize_repeating"]) if v] == flagged
    assert all(v in (0.0, -100.0) for v in comps(row)["penalize_repeating"])


@pytest.mark.parametrize("row, resolved, doubled, at", [
    ([C4, C5, B4, A4, G4, F4, E4, D4, C4], 1, 0, 8),  # octave up, gradual return to C4
    ([C4, C5, B4, A4, G4, F4, E4, D4], 0, 0, None),  # never back down to C4
    ([C4, C5, C4], 0, 0, None),  # immediate leap back: clears the leap, no outcome
    ([C4, C5, B4, C5, B4, C5, B4, C5, B4, E4], 1, 0, 9),  # leap back after 7 steps (> 6)
    ([C4, C5, B4, C5, B4, C5, B4, C5, E4], 0, 0, None),  # after 6 steps: not enough
    ([C4, C5, B4, R, H, R, H, R, H, G3], 1, 0, 9),  # rests and holds count as steps
    ([C4, G4, D5], 0, 1, 2),  # two in-key fifths up
])
def test_leap_up_leap_back(row, resolved, doubled, at):
    m = metrics(row)
    assert (m["num_resolved_leaps"], m["num_doubled_leaps"]) == (resolved, doubled)
    leap = comps(row)["leap_up_back"]
    expected = [0.0] * len(row)
    if at is not None:
        expected[at] = 5.0 if resolved else -5.0
    assert leap == expected
    if resolved + doubled == 0:
        assert np.isnan(m["leaps_resolved"])


def test_leaps_resolved_is_resolved_over_resolved_plus_doubled():
    m = metrics([C4, C5, B4, A4, G4, F4, E4, D4, C4], [C4, G4, D5, C4, D4, E4, F4, G4, A4],
                [C4, C5, C4, D4, E4, F4, G4, A4, B4])
    # row 2: doubled at step 2, then C4 (from D5: a leap down, 0 steps) clears it;
    # row 3: the leap back clears the leap, then D4.. never counts.
    assert (m["num_resolved_leaps"], m["num_doubled_leaps"], m["num_leap_outcomes"]) == (1, 1, 2)
    assert m["leaps_resolved"] == 0.5


MOTIF8 = [C4, D4, E4, F4, G4, A4, B4, C5]


def test_motif_and_repeated_motif():
    m = metrics(MOTIF8 + MOTIF8)
    assert m["num_notes_in_motif"] == 9 and m["notes_in_motif"] == 9 / 16  # steps 7..15
    assert m["num_notes_in_repeated_motif"] == 1 and m["notes_in_repeated_motif"] == 1 / 16
    m = metrics([C4, D4, E4, F4, R, R, R, R, R, R])
    assert m["num_notes_in_motif"] == 2  # windows ending at 7 (4 notes) and 8 (3); not 9 (2)
    assert metrics([C4, D4, R, H, R, H, R, H])["num_notes_in_motif"] == 0  # 2 distinct notes


def test_repeated_motif_may_not_overlap():
    # Period 7: the window ending at t equals the one ending at t - 7 (overlapping by one step:
    # not searched) and at t - 14, first possible at t = 21 (window ending at 7).
    row = ([C4, D4, E4, F4, G4, A4, B4] * 4)[:22]
    assert [i for i, v in enumerate(comps(row)["repeated_motif"]) if v] == [21]
    assert comps(row)["repeated_motif"][21] == 8.0  # 4 + (7 - 3) distinct notes


def test_repeated_motif_needs_an_earlier_window_ending_8_steps_before():
    # Period 3: the window ending at t equals the one ending at t - 3, t - 6, t - 9 ...; Magenta
    # searches composition[:-7] only, so the first hit is t = 16 (window ending at 7).
    row = ([C4, D4, E4] * 7)[:20]
    c = comps(row)
    assert [i for i, v in enumerate(c["repeated_motif"]) if v] == [16, 17, 18, 19]
    assert metrics(row)["num_notes_in_repeated_motif"] == 4


def test_unique_max_and_min():
    m = metrics([C4, D4, G4, E4], [C4, G4, G4, C4], [R, H, R, R], [C4, D4, C4, E4],
                [C4, R, R, E4])
    # max over all tokens: [R, H, R, R] has a unique max (the hold); its min has no note.
    # The min is over notes only: [C4, R, R, E4] has a unique lowest note.
    assert (m["num_high_unique"], m["num_low_unique"]) == (4, 2)
    assert (m["unique_max_note"], m["unique_min_note"]) == (0.8, 0.4)


def test_autocorrelation_by_hand():
    # [14, 16, 18, 14]: mean 15.5, x = [-1.5, .5, 2.5, -1.5], var = 11/4;
    # lag 1: (-.75 + 1.25 - 3.75) / 4 / 2.75 = -13/44; lag 2: -4.5 / 4 / 2.75 = -9/22;
    # lag 3: 2.25 / 4 / 2.75 = 9/44. A constant row is nan and left out of the nanmean.
    m = metrics([C4, D4, E4, C4], [C4, C4, C4, C4])
    assert m["autocorrelation_lag1"] == pytest.approx(-13 / 44, abs=1e-15)
    assert m["autocorrelation_lag2"] == pytest.approx(-9 / 22, abs=1e-15)
    assert m["autocorrelation_lag3"] == pytest.approx(9 / 44, abs=1e-15)
    assert np.isnan(metrics([C4] * 4)["autocorrelation_lag1"])


def test_interval_counts_follow_add_interval_stat():
    # C4>G4 in-key fifth | G4>R rest after a dominant | R>D4: fourth from G4 | D4>A4: fifth
    # (D is no tonic/dominant) | A4>R rest | R>C4: sixth from A4 | C4>E4 in-key third: counted
    # nowhere (Magenta's test `interval == (IN_KEY_FIFTH or ...)` only matches -5) | E4>H hold:
    # nowhere | H>C3: 16 semitones, "octave jump" | C3>D3 second | D3>F#3 third | F#3>F4 seventh.
    row = [C4, G4, R, D4, A4, R, C4, E4, H, C3, D3, Fs3, tok(65)]
    m = metrics(row)
    got = {k: m[k] for k in ("num_in_key_preferred_intervals", "num_special_rest_intervals",
                             "num_fourths", "num_fifths", "num_rest_intervals", "num_sixths",
                             "num_octave_jumps", "num_seconds", "num_thirds", "num_sevenths")}
    assert got == dict.fromkeys(got, 1.0)


def test_metrics_speed_and_keys():
    tokens = np.random.default_rng(0).integers(0, 39, (1000, 128))
    start = time.perf_counter()
    m = rl_tuner_metrics(tokens)
    assert time.perf_counter() - start < 2.0
    assert m["num_steps"] == 128000 and m["num_compositions"] == 1000
    assert all(isinstance(v, float) for v in m.values())


# ---------------------------------------------------------------- reward components
def test_key_component_and_other_keys():
    assert comps([C4, Cs4, R, H])["key"] == [0.0, -1.0, 0.0, 0.0]
    g_major = rl_tuner_step_reward_components(np.array([[G4, Fs4, F4]]), key_pitch_classes=(
        7, 9, 11, 0, 2, 4, 6), tonic_pitch=67, composition_length=3)
    assert g_major["key"][0].tolist() == [0.0, 0.0, -1.0]
    assert g_major["tonic"][0].tolist()[0] == 3.0


def test_tonic_component():
    # composition_length 8: first note of the final bar = beat 4; beat 5 wants a hold; beats
    # 6, 7 a hold or a rest. Only MIDI 60 is the tonic.
    assert comps([C4, D4, E4, F4, G4, A4, B4, C5])["tonic"] == [3.0] + [0.0] * 7
    assert comps([C4, D4, E4, F4, C4, H, R, H])["tonic"] == [3.0, 0, 0, 0, 3.0, 3.0, 3.0, 3.0]
    assert comps([C5, D4, E4, F4, C5, R, H, G4])["tonic"] == [0.0] * 6 + [3.0, 0.0]


def test_autocorrelation_component():
    assert comps([C4, D4, E4, C4])["penalize_autocorrelation"] == pytest.approx(
        [0.0, -1.5, -1.5, -120 / 44], abs=1e-14)  # 3 x (13/44 + 18/44 + 9/44) at step 3
    # a,a,a,a,b: the lag-3 coefficient is exactly -3/20 (lags 1, 2: -1/20, -2/20). Magenta's
    # float arithmetic makes it just above 0.15 in size for C C C C D (penalised), exactly the
    # float 0.15 for D D D D G (not penalised, the test is strict); exact arithmetic would
    # penalise neither.
    assert comps([C4, C4, C4, C4, D4])["penalize_autocorrelation"][-1] == -0.45000000000000023
    assert comps([D4, D4, D4, D4, G4])["penalize_autocorrelation"] == [0.0] * 5


@pytest.mark.parametrize("k, amount", [(3, 3.0), (4, 3.3), (5, 3.6), (6, 3.9), (7, 4.2), (8, 4.5)])
def test_motif_component(k, amount):
    row = (MOTIF8[:k] + [R, H] * 4)[:8]
    c = comps(row)["motif"]
    assert c[:7] == [0.0] * 7 and c[7] == pytest.approx(amount, abs=1e-15)


def test_repeated_motif_component():
    assert comps(MOTIF8 + MOTIF8)["repeated_motif"] == [0.0] * 15 + [9.0]  # 4 + (8 - 3)
    three = [C4, D4, E4, R, H, R, H, R]
    assert comps(three + [F4] + three)["repeated_motif"] == [0.0] * 16 + [4.0]
    assert comps(MOTIF8 + [R] + MOTIF8[:7])["repeated_motif"] == [0.0] * 16


@pytest.mark.parametrize("row, amount", [
    ([C4, G4], 0.5), ([G4, D5], 0.5), ([G4, C4], 0.5),  # in-key fifths (from C or G): 0.1 x 5
    ([D4, A4], 0.1),  # other fifth: 0.02 x 5
    ([C4, E4], 0.75), ([E4, C4], 0.75),  # in-key thirds (from C or E): 0.15 x 5
    ([D4, Fs4], 0.45), ([C4, D4], 0.4), ([C4, F4], 0.35), ([C4, A4], 0.25),
    ([C4, B4], -1.5), ([C4, D5], -5.0),  # seventh; more than an octave
    ([C4, C5], 0.0), ([C4, Cs4], 0.0), ([E4, G4], 0.0), ([C4, C4], 0.0),
    ([C4, R], 0.75), ([G4, R], 0.75), ([D4, R], 0.25), ([E4, R], 0.25),  # rest after C/G: 0.15
    ([C4, H], 1.5), ([G4, H], 1.5), ([D4, H], 0.375),  # hold after C/G: 0.3, else 0.075
    ([R, C4], 0.0), ([C4, R, G4], 0.5), ([C4, R, R, H], 1.5),  # rests skipped back to C4
])
def test_preferred_intervals_component(row, amount):
    c = comps(row)["preferred_intervals"]
    assert c[0] == 0.0 and c[-1] == pytest.approx(amount, abs=1e-15)


def test_high_low_unique_component_on_last_step_only():
    assert comps([C4, D4, G4, E4])["high_low_unique"] == [0.0, 0.0, 0.0, 6.0]
    assert comps([C4, G4, G4, C4])["high_low_unique"] == [0.0] * 4
    assert comps([R, H, R, R])["high_low_unique"] == [0.0, 0.0, 0.0, 3.0]
    assert comps([C4, D4, C4, E4])["high_low_unique"] == [0.0, 0.0, 0.0, 3.0]
    assert comps([C4, R, R, E4])["high_low_unique"] == [0.0, 0.0, 0.0, 6.0]
    assert comps([C4, D4, G4, E4], length=5)["high_low_unique"] == [0.0] * 4  # not finished


def test_worked_total():
    # C4 tonic (+3); C4>G4 in-key fifth (+0.5) is a leap up from C4; E4 (minor third: 0),
    # R after E4 (+0.25), H after E4 (+0.375); C4: in-key third from E4 (+0.75) and back to
    # the note leapt from (+5); D4, C4 seconds (+0.4 each); step 7: motif of C, G, E, D (+3.3)
    # and a unique highest note G4 (+3). Autocorrelation penalties from Magenta's formula.
    row = [C4, G4, E4, R, H, C4, D4, C4]
    c = comps(row)
    assert c["preferred_intervals"] == pytest.approx([0, 0.5, 0, 0.25, 0.375, 0.75, 0.4, 0.4])
    assert c["leap_up_back"] == [0.0] * 5 + [5.0, 0.0, 0.0]
    assert c["motif"][7] == pytest.approx(3.3) and c["high_low_unique"][7] == 3.0
    assert c["penalize_autocorrelation"] == pytest.approx(
        [0.0, -1.5, -1.3513513513513515, -1.1492753623188405, -3.376663146779303,
         -3.1557659208261617, -3.7463054187192117, -3.840659340659341], abs=1e-12)
    expected = [3.0, -1.0, -1.3513513513513515, -0.8992753623188405, -3.001663146779303,
                2.5942340791738383, -3.346305418719212, 2.859340659340659]
    total = rl_tuner_step_rewards(np.array([row]), composition_length=8)[0]
    assert total == pytest.approx(expected, abs=1e-12)
    scaled = rl_tuner_step_rewards(np.array([row]), composition_length=8, reward_scaler=0.1)[0]
    assert scaled == pytest.approx(np.array(expected) * 0.1, abs=1e-13)
    assert total == pytest.approx(sum(np.array(c[k]) for k in COMPONENTS), abs=1e-12)


# ---------------------------------------------------------------- pure vs incremental
def _random_batch(rng, b, t):
    walk = np.clip(20 + np.cumsum(rng.choice([-12, -7, -5, -4, -2, -1, 0, 1, 2, 4, 5, 7, 12],
                                             (b, t)), axis=1), 2, 38)
    walk = np.where(rng.random((b, t)) < 0.3, rng.integers(0, 2, (b, t)), walk)
    small = rng.choice([0, 1, 14, 16, 21], (b, t))  # repeats and motifs
    rows = np.where((np.arange(b) % 3 == 0)[:, None], rng.integers(0, 39, (b, t)), walk)
    rows = np.where((np.arange(b) % 3 == 1)[:, None], small, rows)
    rows[::5, 8:16] = rows[::5, :8]  # repeated motifs
    return rows


@pytest.mark.parametrize("seed, t, length, key, tonic", [
    (0, 32, 32, (0, 2, 4, 5, 7, 9, 11), 60),
    (1, 20, 32, (0, 2, 4, 5, 7, 9, 11), 60),
    (2, 64, 64, (9, 11, 0, 2, 4, 5, 7), 57),  # A minor
    (3, 48, 48, (7, 9, 11, 0, 2, 4, 6), 67),  # G major
])
def test_pure_and_incremental_forms_agree(seed, t, length, key, tonic):
    tokens = _random_batch(np.random.default_rng(seed), 48, t)
    kwargs = dict(key_pitch_classes=key, tonic_pitch=tonic, composition_length=length)
    pure = rl_tuner_step_reward_components(tokens, **kwargs)
    total = rl_tuner_step_rewards(tokens, reward_scaler=0.1, **kwargs)
    state = RLTunerRewardState(reward_scaler=0.1, **kwargs)
    for _ in range(2):  # a reset starts over cleanly
        state.reset(len(tokens))
        for step in range(t):
            np.testing.assert_array_equal(state.step(tokens[:, step]), total[:, step])
            for name in COMPONENTS:
                np.testing.assert_array_equal(state.last_components[name], pure[name][:, step])
    assert sum(int(np.count_nonzero(pure[name])) for name in COMPONENTS) > t * 48  # not all 0
    assert np.count_nonzero(pure["leap_up_back"]) and np.count_nonzero(pure["repeated_motif"])


def test_errors():
    with pytest.raises(ValueError):
        rl_tuner_step_rewards(np.zeros((2, 33), int))  # longer than composition_length 32
    with pytest.raises(ValueError):
        rl_tuner_step_rewards(np.full((1, 4), 39))  # no token 39
    state = RLTunerRewardState(composition_length=2)
    state.reset(3)
    with pytest.raises(ValueError):
        state.step(np.array([C4, C4]))  # wrong batch size
    state.step(np.array([C4, D4, R]))
    state.step(np.array([C4, D4, R]))
    with pytest.raises(ValueError):
        state.step(np.array([C4, D4, R]))  # composition finished
