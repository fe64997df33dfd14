import math

import numpy as np
import pytest

from rlmusic.music.context import A_MINOR, Key, MelodyView, RuleContext
from rlmusic.music.metrics import leap_counts, music_theory_metrics
from rlmusic.music.representation import DEFAULT_VOCAB as V
from rlmusic.music.representation import Vocabulary
from rlmusic.music.reward import (
    RULES,
    TheoryConfig,
    get_rule,
    melody_step_terms,
    step_reward_terms,
    step_rewards,
)
from rlmusic.music.rules import note_autocorrelation
from rlmusic.music.structure import structure_score

R, H = Vocabulary.REST, Vocabulary.HOLD
C4, D4, Eb4, E4, F4, Fs4, G4, A4, B4, C5 = 60, 62, 63, 64, 65, 66, 67, 69, 71, 72
CTX = RuleContext()
AMIN = RuleContext(key=A_MINOR)


def mel(*items) -> list[int]:
    """Melody from MIDI pitches, '-' (HOLD) and 'r' (REST)."""
    out = []
    for it in items:
        out.append(H if it == "-" else R if it == "r" else V.pitch_to_token(it))
    return out


def step(rule: str, melody: list[int], ctx=CTX) -> float:
    """Reward of the last token of ``melody`` given the ones before."""
    return get_rule(rule).step(melody[:-1], melody[-1], ctx)


# --------------------------------------------------------------------------- keys


def test_key_parse_and_scale():
    assert Key.parse("C major").scale == (0, 2, 4, 5, 7, 9, 11)
    assert Key.parse("A minor") == A_MINOR
    assert Key.parse("A minor").scale == (9, 11, 0, 2, 4, 5, 7)
    assert Key.parse("Bb mixolydian").tonic == 10
    assert Key.parse("A minor").triad == (9, 0, 4)
    with pytest.raises(ValueError, match="lydian-ish"):
        Key.parse("C lydian-ish")
    with pytest.raises(ValueError, match="H major"):
        Key.parse("H major")
    with pytest.raises(ValueError, match="13"):
        Key(13, "major")


# --------------------------------------------------------------------------- in_key, tonic_start


@pytest.mark.parametrize(
    "ctx,pitch,expected",
    [(CTX, C4, 0.0), (CTX, Fs4, -1.0), (CTX, 61, -1.0), (AMIN, G4, 0.0), (AMIN, 68, -1.0),
     (AMIN, Fs4, -1.0), (RuleContext(key=Key.parse("D dorian")), B4, 0.0)],
)
def test_in_key(ctx, pitch, expected):
    assert step("in_key", mel(C4, pitch), ctx) == expected


def test_in_key_ignores_rests_and_holds():
    assert step("in_key", mel(Fs4, "-")) == 0.0
    assert step("in_key", mel(Fs4, "r")) == 0.0


def test_tonic_start():
    assert step("tonic_start", mel(C4)) == 1.0
    assert step("tonic_start", mel("r", "r", C5)) == 1.0  # leading rests: first note counts
    assert step("tonic_start", mel(D4)) == 0.0
    assert step("tonic_start", mel(D4, C4)) == 0.0  # not the first note
    assert step("tonic_start", mel(A4), AMIN) == 1.0
    assert step("tonic_start", mel(C4), AMIN) == 0.0
    assert step("tonic_start", mel("r")) == 0.0


# --------------------------------------------------------------------------- non_repeating


def test_non_repeating_counts_a_run_of_notes():
    assert step("non_repeating", mel(C4, C4, C4, C4)) == 0.0  # 4 in a row: allowed
    assert step("non_repeating", mel(C4, C4, C4, C4, C4)) == -1.0  # the 5th is too many
    assert step("non_repeating", mel(D4, C4, C4, C4, C4, D4)) == 0.0
    assert step("non_repeating", mel(C4, C4, D4, C4, C4, C4)) == 0.0  # run broken by D


def test_non_repeating_with_rests_and_holds_between():
    # with holds/rests between the repeats the limit is max_repeats_with_breaks = 6
    six = mel(C4, "-", C4, "r", C4, "-", C4, "-", C4, "-", C4)
    assert step("non_repeating", six) == 0.0
    assert step("non_repeating", six + mel("-", C4)) == -1.0  # 7th
    # the rest/hold tokens themselves are never penalised
    assert step("non_repeating", mel(C4, C4, C4, C4, C4, C4, "r")) == 0.0
    assert step("non_repeating", mel(C4, C4, C4, C4, C4, C4, "-")) == 0.0


def test_non_repeating_context_limits():
    ctx = RuleContext(max_repeats=2)
    assert step("non_repeating", mel(C4, C4, C4), ctx) == -1.0
    assert step("non_repeating", mel(C4, C4), ctx) == 0.0


# --------------------------------------------------------------------------- motifs


def test_motif():
    assert step("motif", mel(C4, "-", D4, "-", E4, "-", "-", "-")) == 1.0
    assert step("motif", mel(C4, D4, E4, F4, G4, "-", "-", "-")) == pytest.approx(1.2)
    assert step("motif", mel(C4, D4, C4, D4, "r", "r", "r", "r")) == 0.0  # 2 pitches
    assert step("motif", mel(C4, D4, E4, F4)) == 0.0  # shorter than the window
    # only the last 8 steps count
    assert step("motif", mel(E4, F4, C4, D4, C4, D4, C4, D4, C4, D4)) == 0.0


def test_repeated_motif():
    a = mel(C4, "-", D4, "-", E4, "-", G4, "-")
    assert step("repeated_motif", a + a) == 1.25  # 4 distinct pitches: 1 + 0.25
    assert step("repeated_motif", a + mel("r") + a) == 1.25  # anywhere earlier
    assert step("repeated_motif", a + a[:-1] + [R]) == 0.0  # not the same tokens
    up = [t + 2 for t in a[::2]]
    assert step("repeated_motif", a + [up[0], H, up[1], H, up[2], H, up[3], H]) == 0.0  # transposed
    low = mel(C4, D4, C4, D4, C4, D4, C4, D4)
    assert step("repeated_motif", low + low) == 0.0  # not a motif (2 pitches)
    assert step("repeated_motif", a + a[:7]) == 0.0  # overlapping window does not count


# --------------------------------------------------------------------------- intervals


@pytest.mark.parametrize(
    "a,b,expected",
    [(C4, D4, 0.08), (C4, E4, 0.15), (C4, Eb4, 0.09), (D4, F4, 0.09), (C4, F4, 0.07),
     (C4, G4, 0.10), (D4, A4, 0.02), (C4, Fs4, 0.0), (C4, A4, 0.05), (C4, B4, -0.3),
     (C4, C5, 0.0), (C4, 73, -1.0), (C4, C4, 0.0), (G4, C4, 0.10)],
)
def test_preferred_intervals(a, b, expected):
    assert step("preferred_intervals", mel(a, b)) == pytest.approx(expected)


def test_preferred_intervals_rests_and_holds():
    assert step("preferred_intervals", mel(C4, "r", "r", D4)) == pytest.approx(0.08)  # rests skipped
    assert step("preferred_intervals", mel(C4, "-", "r")) == pytest.approx(0.05)  # first rest
    assert step("preferred_intervals", mel(C4, "r", "r")) == 0.0  # second rest
    assert step("preferred_intervals", mel("r")) == 0.0
    assert step("preferred_intervals", mel(C4, "-")) == 0.0
    assert step("preferred_intervals", mel(C4)) == 0.0  # first note: no interval


def test_preferred_intervals_follow_the_key():
    # A-C-E is A minor's tonic triad; in C major A-C is a plain third
    assert step("preferred_intervals", mel(A4, C5), AMIN) == pytest.approx(0.15)
    assert step("preferred_intervals", mel(A4, C5)) == pytest.approx(0.09)


# --------------------------------------------------------------------------- leaps


def test_leap_up_back():
    assert step("leap_up_back", mel(C4, G4, F4)) == 1.0  # up a fifth, step back down
    assert step("leap_up_back", mel(C5, E4, F4)) == 1.0  # down a sixth, step back up
    assert step("leap_up_back", mel(C4, G4, 74)) == -1.0  # two leaps up
    assert step("leap_up_back", mel(C4, G4, A4)) == 0.0  # same direction step: unresolved
    assert step("leap_up_back", mel(C4, G4, D4)) == 0.0  # back by a fourth: not a step
    assert step("leap_up_back", mel(C4, G4, C4 - 12 + 24 - 24)) == 0.0  # back by a leap
    assert step("leap_up_back", mel(C4, E4, F4)) == 0.0  # no leap
    assert step("leap_up_back", mel(C4, "r", G4, "-", "r", F4)) == 1.0  # rests skipped
    assert step("leap_up_back", mel(C4, G4, F4, "-")) == 0.0  # only notes score
    assert step("leap_up_back", mel(C4, G4)) == 0.0  # a leap at the last step: nothing yet


def test_leaps_resolved_metric_excludes_a_leap_into_the_last_note():
    only_last = np.array([mel(C4, D4, E4, C5)])
    assert leap_counts(only_last, CTX) == (0, 0)
    assert music_theory_metrics(only_last)["leaps_resolved_by_next_note"] == 1.0
    two = np.array([mel(C4, G4, F4, "-", C5, B4, "r", E4, 74)])
    leaps, resolved = leap_counts(two, CTX)
    # leaps: C4-G4 (resolved by F4), F4-C5 (resolved by B4), B4-E4 (next D5 is a leap up)
    assert (int(leaps[0]), int(resolved[0])) == (3, 2)
    assert music_theory_metrics(two)["leaps_resolved_by_next_note"] == pytest.approx(2 / 3)


# --------------------------------------------------------------------------- high/low, autocorrelation


def test_high_low_unique_fires_at_the_last_step_only():
    ctx = RuleContext(steps=4)
    assert step("high_low_unique", mel(C4, E4, G4, E4), ctx) == 2.0
    assert step("high_low_unique", mel(C4, E4, C4, "-"), ctx) == 1.0  # low C twice
    assert step("high_low_unique", mel(G4, E4, G4, E4), ctx) == 0.0
    assert step("high_low_unique", mel(C4, E4, G4), ctx) == 0.0  # not the last step
    assert step("high_low_unique", mel(C4, E4, G4, E4)) == 0.0  # length unknown
    assert step("high_low_unique", mel("r", "r", "r", "r"), ctx) == 0.0
    assert step("high_low_unique", mel("r", "r", "r", D4), ctx) == 2.0  # one note: both


def _reference_autocorrelation(signal, lag):
    """RL Tuner's rl_tuner_ops.autocorrelate."""
    x = np.asarray(signal, dtype=float)
    n = len(x)
    x = x - x.mean()
    return float((x[lag:] * x[: n - lag]).sum() / n / x.var())


def test_autocorrelation_alternating_notes():
    alt = mel(C4, G4, C4, G4, C4, G4, C4, G4)
    # x = +-3.5: r1 = -7/8, r2 = 6/8, r3 = -5/8
    assert step("autocorrelation", alt) == pytest.approx(-(7 + 6 + 5) / 8)
    b = MelodyView(np.array([alt]), CTX)
    assert note_autocorrelation(b, (1, 2, 3))[0] == pytest.approx([-7 / 8, 6 / 8, -5 / 8])


def test_autocorrelation_matches_reference_on_notes():
    rng = np.random.default_rng(1)
    pitches = rng.integers(55, 80, 20)
    tokens = []
    for p in pitches:  # notes with holds and rests between: they are skipped
        tokens += mel(int(p)) + [H] * int(rng.integers(0, 3)) + [R] * int(rng.integers(0, 2))
    b = MelodyView(np.array([tokens]), CTX)
    got = note_autocorrelation(b, (1, 2, 3))[0]
    assert got == pytest.approx([_reference_autocorrelation(pitches, lag) for lag in (1, 2, 3)])
    expected = -sum(abs(r) for r in got if abs(r) > 0.15)
    assert step("autocorrelation", tokens) == pytest.approx(expected)


def test_autocorrelation_undefined_is_no_penalty():
    assert step("autocorrelation", mel(C4, C4, C4, C4, C4)) == 0.0  # variance 0
    assert step("autocorrelation", mel(C4, D4)) == 0.0  # too few notes
    assert step("autocorrelation", mel("r", "r", "r")) == 0.0


# --------------------------------------------------------------------------- all rests


def test_all_rests_melody_scores_nothing():
    rests = np.full((1, 64), R)
    terms = melody_step_terms(rests)
    for name, v in terms.items():
        assert np.all(v == 0), name
    m = music_theory_metrics(rests)
    assert m["onsets_not_in_key"] == 0 and m["starts_with_tonic_pitch_class"] == 0
    assert m["unique_highest_note"] == 0 and m["leaps_resolved_by_next_note"] == 1.0
    assert structure_score(rests[0]) == 0.0


# --------------------------------------------------------------------------- metrics


def test_music_theory_metrics_by_hand():
    x = np.array([
        mel(C4, "-", Fs4, C4, C4, C4, C4, C4),  # notes: C F# C C C C C -> 1 out of key, 1 repeat
        mel(D4, E4, "-", "-", F4, "r", G4, "-"),  # starts on D
    ])
    m = music_theory_metrics(x)
    n_notes = 7 + 4
    assert m["onsets_not_in_key"] == pytest.approx(1 / n_notes)
    assert m["onsets_excessively_repeated"] == pytest.approx(1 / n_notes)
    assert m["starts_with_tonic_pitch_class"] == 0.5
    assert m["unique_highest_note"] == 1.0  # F# once; G once
    assert m["unique_lowest_note"] == 0.5  # C many times; D once
    assert m["onsets_in_motif"] == 0.0  # 8-step windows: first has 2 pitches at its end
    for key in ("note_autocorrelation_lag1", "note_autocorrelation_lag2", "note_autocorrelation_lag3"):
        assert -1.0 <= m[key] <= 1.0
    assert set(m) >= {"leaps_resolved_by_next_note", "onsets_in_repeated_motif"}


# --------------------------------------------------------------------------- registry, config, batching


def test_unknown_rule_lists_valid_names():
    with pytest.raises(ValueError, match="unknown theory rule 'key'.*in_key.*autocorrelation"):
        get_rule("key")
    with pytest.raises(ValueError, match="nope"):
        step_reward_terms(np.zeros((1, 0)), np.array([2]), rules=["nope"])


def test_reward_config_validation(tmp_path):
    with pytest.raises(ValueError, match="unknown theory config key 'bogus'.*in_key"):
        TheoryConfig.from_dict({"bogus": 1.0})
    with pytest.raises(ValueError, match="-2"):
        TheoryConfig.from_dict({"motif": -2})
    with pytest.raises(ValueError, match="nan"):
        TheoryConfig(weights={"motif": math.nan})
    with pytest.raises(ValueError, match="unknown theory rule"):
        TheoryConfig(weights={"motiff": 1.0})
    with pytest.raises(ValueError, match="Q major"):
        TheoryConfig(key="Q major")
    with pytest.raises(ValueError, match="motif_length"):
        TheoryConfig(motif_length=0)
    path = tmp_path / "tune.toml"
    path.write_text('[reward.theory]\nkey = "A minor"\nmotif = 0.0\nin_key = 2.5\n')
    cfg = TheoryConfig.from_toml(path, table="reward.theory")
    assert cfg.weights["motif"] == 0.0 and cfg.weights["in_key"] == 2.5
    assert cfg.weights["tonic_start"] == RULES["tonic_start"].default_weight
    assert cfg.context().key == A_MINOR
    assert "motif" not in cfg.active()
    assert TheoryConfig.from_dict(cfg.to_dict()).weights == cfg.weights
    (tmp_path / "bad.toml").write_text("[theory]\nleap_up_bak = 1\n")
    with pytest.raises(ValueError, match="leap_up_bak"):
        TheoryConfig.from_toml(tmp_path / "bad.toml")


def test_batched_matches_single_and_weights_apply():
    rng = np.random.default_rng(3)
    T = 48
    hist = rng.integers(0, V.size, (6, T))
    nxt = rng.integers(0, V.size, 6)
    cfg = TheoryConfig(weights={name: 1.0 + i for i, name in enumerate(RULES)})
    ctx = cfg.context(steps=T + 1)
    terms = step_reward_terms(hist, nxt, cfg, steps=T + 1)
    assert set(terms) == set(RULES)
    for i in range(6):
        for name, v in terms.items():
            assert v[i] == pytest.approx(RULES[name].step(hist[i], nxt[i], ctx)), name
    total = step_rewards(hist, nxt, cfg, steps=T + 1)
    assert total == pytest.approx(sum(cfg.weights[n] * v for n, v in terms.items()))
    off = TheoryConfig(weights={n: 0.0 for n in RULES})
    assert np.all(step_rewards(hist, nxt, off) == 0)


def test_batched_first_step_and_shape_errors():
    empty = np.zeros((3, 0), dtype=np.int64)
    r = step_rewards(empty, np.array(mel(C4, D4, "r")))
    # only tonic_start (3.0 * 1) fires for a first C; preferred_intervals etc. need history
    assert r == pytest.approx([3.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="B = len"):
        step_rewards(np.zeros((2, 4), dtype=np.int64), np.array([2, 3, 4]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        step_rewards(np.zeros((1, 4), dtype=np.int64), np.array([V.size]))


