"""The structure rules and score (rlmusic.music.structure) on hand-written bars: bar
similarity, cadences, and form (material that comes back) against loops and noise."""

import numpy as np
import pytest
from seeding import seed
from test_theory import A4, B4, C4, CTX, D4, E4, F4, G4, Fs4, H, V, mel, step

from rlmusic.music.context import MelodyView, RuleContext
from rlmusic.music.structure import (
    bar_similarity_matrix,
    cadence_scores,
    form_terms,
    lag_matches,
    structure_score,
    structure_terms,
)

# --------------------------------------------------------------------------- structure

BAR_A = mel(C4, "-", E4, "-", G4, "-", E4, "-", D4, "-", F4, "-", E4, "-", D4, "-")
BAR_B = mel(A4, "-", G4, "-", F4, "-", E4, "-", D4, "-", B4, "-", G4, "-", "-", "-")
BAR_END = mel(E4, "-", D4, "-", B4 - 12, "-", D4, "-", C4, "-", "-", "-", "-", "-", "-", "-")


def test_bar_similarity():
    x = np.array([BAR_A + BAR_A + [t + 2 if t >= 2 else t for t in BAR_A] + BAR_B])
    b = MelodyView(x, CTX)
    sim = bar_similarity_matrix(b.seq, b.pitch, b.sounding, 16)[0]
    assert sim[1, 0] == 1.0  # exact repeat
    assert sim[2, 0] == 1.0  # transposed repeat (relative pitch)
    assert sim[3, 0] < 0.5  # another bar
    assert step("bar_repetition", x[0][:32]) == 1.0
    assert step("bar_repetition", x[0][:31]) == 0.0  # not at a bar end
    assert step("bar_repetition", x[0][:16]) == 0.0  # the first bar has nothing to match


def test_cadence():
    good = np.array([BAR_A + BAR_END])  # ends on C held 12 steps
    bad = np.array([BAR_A + BAR_A[:-2] + mel(Fs4, "r")])
    b_good, b_bad = MelodyView(good, CTX), MelodyView(bad, CTX)
    assert cadence_scores(b_good, CTX, 32)[0] == 1.0
    assert cadence_scores(b_bad, CTX, 32)[0] == 0.0  # F# for 1 step (+ 1 rest)
    short_tonic = np.array([BAR_A[:-2] + mel(C4, "-")])
    assert cadence_scores(MelodyView(short_tonic, CTX), CTX, 16)[0] == 0.5
    # the rule fires at phrase ends: 2 bars for melodies up to 64 steps
    assert step("cadence", good[0], RuleContext(steps=64)) == 1.0
    assert step("cadence", BAR_A, RuleContext(steps=64)) == 0.0


@pytest.mark.statistical
def test_structure_prefers_form_over_loops_and_noise(record_property):
    """Hand-written form and loops; the noise melody is random.
    Over test seeds 0-4: the noise's structure score 0.047-0.106 (bound 0.2)."""

    def bar(*pitches):  # four quarter notes
        return [t for p in pitches for t in (V.pitch_to_token(p), H, H, H)]

    a, b = bar(60, 62, 64, 65), bar(67, 69, 71, 72)
    aaba, loop = np.array([a + a + b + a]), np.array([a * 4])
    form = form_terms(aaba)
    # lag 16: bars (A,A) match on their 4 onsets, (A,B) and (B,A) on none: 4 of 12 onset steps;
    # lag 32: (A,B) none, (A,A) all: 4 of 8. Lags off the beat match nothing.
    assert lag_matches(aaba, [16, 32])[0] == pytest.approx([1 / 3, 1 / 2])
    assert form["repetition"][0] == 0.5
    # 13 windows of 16 steps, every 4 steps; the ones at 16 and 48 copy the one at 0
    assert form["variety"][0] == pytest.approx(11 / 13)
    assert form["structure"][0] == 0.5  # variety above 0.8 costs nothing
    looped = form_terms(loop)
    assert looped["repetition"][0] == 1.0 and looped["variety"][0] == pytest.approx(4 / 13)
    assert looped["structure"][0] == pytest.approx(4 / 13 / 0.8)
    assert looped["structure"][0] < form["structure"][0]
    noise = np.random.default_rng(seed(0)).integers(0, V.size, (1, 64))
    noise_score = structure_score(noise[0])
    record_property("noise_structure", round(noise_score, 4))
    assert noise_score < 0.2
    # the older bar-grid score is still reported under its own name
    assert structure_terms(loop)["bar_variety"][0] == 0.5
    ctx = RuleContext(steps=64)
    assert step("structure", list(aaba[0]), ctx) == pytest.approx(0.5)
    assert step("structure", list(aaba[0][:63]), ctx) == 0.0
