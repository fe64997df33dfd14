"""A study's statistics against hand-computed cases: the Wilson interval, the sign test,
Krippendorff's alpha, gold checks and exclusions, and the edge cases (no comparisons, all
ties, one rater) that must give None and a sentence, never a division by zero."""

from __future__ import annotations

import math

import pytest
from seeding import seed

from db.study_stats import (
    clustered_interval,
    excluded_raters,
    gold_counts,
    ordinal_alpha,
    sign_test_p,
    summarise,
    wilson_interval,
)
from rlmusic.feedback.agreement import pairwise_agreement

Z = 1.959963984540054  # two-sided 95% normal quantile


def row(rater: str, pair: int, verdict: str, gold: bool = False) -> dict:
    return {"rater": rater, "pair": pair, "gold": gold, "verdict": verdict}


def test_wilson_interval_by_its_formula_and_the_textbook_case():
    # 7 of 10: centre (p + z^2/2n) / (1 + z^2/n), half-width z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n)
    p, n = 0.7, 10
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n * n)) / (1 + Z**2 / n)
    low, high = wilson_interval(7, 10)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert (round(low, 4), round(high, 4)) == (0.3968, 0.8922)  # the published value for 7/10
    assert wilson_interval(5, 5)[1] == pytest.approx(1.0)  # never above 1, unlike the normal interval
    assert wilson_interval(0, 0) == (None, None)


def test_sign_test_against_counted_binomial_tails():
    # 7 of 10: 2 * P(X >= 7) = 2 * (C(10,7)+C(10,8)+C(10,9)+C(10,10)) / 2^10 = 2 * 176 / 1024
    assert sign_test_p(7, 3) == pytest.approx(2 * 176 / 1024)
    assert sign_test_p(3, 7) == pytest.approx(2 * 176 / 1024)  # two-sided: symmetric
    assert sign_test_p(5, 5) == pytest.approx(1.0)
    assert sign_test_p(6, 0) == pytest.approx(2 / 64)  # six of six: 2 * (1/2)^6
    assert sign_test_p(0, 0) is None


@pytest.mark.statistical
def test_clustered_interval_by_hand(record_property):
    """The bootstrap is seeded; the interval's width is a statistic of its resamples.
    Over test seeds 0-4: width / Wilson's width on 30 1.0074 on each (the
    rates are multiples of 1/30, so the percentiles land on the same grid points)."""
    # one rater, two pairs, A wins one and B the other: resampling the pairs gives 1 (p = 1/4),
    # 0 (p = 1/4) or 1/2 (p = 1/2): the 2.5th and 97.5th percentiles are 0 and 1
    assert clustered_interval([row("r", 1, "a"), row("r", 2, "b")], seed=seed(0)) == (0.0, 1.0)
    assert clustered_interval([row("r", 1, "a"), row("s", 1, "a")], seed=seed(0)) == (1.0, 1.0)  # nothing varies
    assert clustered_interval([row("r", 1, "tie")], seed=seed(0)) == (None, None)
    # 30 pairs, each judged alike by 5 raters: 150 judgements but 30 independent ones; the
    # interval must be about as wide as Wilson's on 30, not on 150
    rows = [row(f"r{k}", i, "a" if i < 18 else "b") for i in range(30) for k in range(5)]
    low, high = clustered_interval(rows, seed=seed(0))
    w30, w150 = wilson_interval(18, 30), wilson_interval(90, 150)
    record_property("width_over_wilson30", round((high - low) / (w30[1] - w30[0]), 4))
    assert low < 0.6 < high and high - low > 0.8 * (w30[1] - w30[0]) > 1.5 * (w150[1] - w150[0])
    assert clustered_interval(rows, seed=seed(0)) == (low, high)  # seeded


def test_ordinal_alpha_by_hand():
    # Units (pairs) 1..3, verdicts coded b=0, tie=1, a=2: pair 1 a/a, pair 2 b/b, pair 3 a/b.
    # Values n_0 = 3, n_2 = 3 (n = 6); ordinal distance(0, 2) = (n_0 + n_1 + n_2 - (n_0 + n_2)/2)^2 = 9.
    # Observed: only pair 3 disagrees, o(0,2) = o(2,0) = 1 -> sum o*d = 18.
    # Expected: sum n_c n_k d = 2 * 3 * 3 * 9 = 162. alpha = 1 - (n-1) * 18 / 162 = 1 - 90/162 = 4/9.
    triples = [("r1", 1, "a"), ("r2", 1, "a"), ("r1", 2, "b"), ("r2", 2, "b"), ("r1", 3, "a"), ("r2", 3, "b")]
    alpha, shared, why = ordinal_alpha(triples)
    assert alpha == pytest.approx(4 / 9) and shared == 3 and why is None
    perfect, _, _ = ordinal_alpha([("r1", 1, "a"), ("r2", 1, "a"), ("r1", 2, "tie"), ("r2", 2, "tie")])
    assert perfect == pytest.approx(1.0)
    # a pair judged once does not count: pair 9 adds nothing
    assert ordinal_alpha([*triples, ("r3", 9, "b")])[:2] == (pytest.approx(4 / 9), 3)


def test_alpha_needs_two_raters_on_a_pair_and_two_verdicts():
    alpha, shared, why = ordinal_alpha([("solo", 1, "a"), ("solo", 2, "b")])
    assert alpha is None and shared == 0 and "two raters" in why
    alpha, shared, why = ordinal_alpha([("r1", 1, "a"), ("r2", 1, "a")])
    assert alpha is None and shared == 1 and "same verdict" in why


def test_report_of_a_hand_counted_study():
    rows = [row("ann", 1, "a"), row("ann", 2, "a"), row("ann", 3, "tie"), row("ann", 10, "a", gold=True),
            row("bob", 1, "a"), row("bob", 2, "b"), row("bob", 10, "a", gold=True),
            row("cy", 1, "b"), row("cy", 10, "b", gold=True), row("cy", 11, "tie", gold=True)]
    r = summarise(rows, max_gold_fail=0.25)
    # cy failed 2 of 2 checks (a broken clip preferred, a tie on a check): left out of everything
    assert r["gold_failures"] == {"ann": 0, "bob": 0, "cy": 2}
    assert r["gold_checks"] == {"ann": 1, "bob": 1, "cy": 2}
    assert r["excluded_raters"] == ["cy"] and r["n_raters_excluded"] == 1
    # kept: ann a, a, tie; bob a, b -> 5 comparisons, A 3, B 1, tie 1
    assert (r["n_comparisons"], r["wins_a"], r["wins_b"], r["ties"], r["n_raters"]) == (5, 3, 1, 1, 2)
    assert r["win_rate"] == pytest.approx(3 / 4)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx(wilson_interval(3, 4))
    assert r["ci_low_clustered"] <= r["win_rate"] <= r["ci_high_clustered"]
    assert r["p_value"] == pytest.approx(2 * 5 / 16)  # 2 * P(X >= 3 | n=4) = 2 * (4 + 1) / 16
    # shared pairs of ann and bob: 1 (a/a), 2 (a/b): n_0 = 1, n_2 = 3 (n = 4), d(0,2) = (4 - 2)^2 = 4;
    # observed sum o*d = 2 * 4 = 8; expected sum n_c n_k d = 2 * 1 * 3 * 4 = 24 -> alpha = 1 - 3 * 8 / 24 = 0
    assert r["krippendorff_alpha"] == pytest.approx(0.0, abs=1e-12) and r["shared_pairs"] == 2
    assert any("1 rater(s) failed more than 25%" in n for n in r["notes"])
    kept_all = summarise(rows, max_gold_fail=1.0)
    assert kept_all["n_raters_excluded"] == 0 and kept_all["n_comparisons"] == 6


def test_no_comparisons_all_ties_and_one_rater_say_why():
    empty = summarise([])
    assert (empty["n_comparisons"], empty["win_rate"], empty["ci_low"], empty["p_value"]) == (0, None, None, None)
    assert empty["ci_low_clustered"] is None and empty["ci_high_clustered"] is None
    assert empty["krippendorff_alpha"] is None and empty["n_raters"] == 0
    assert empty["notes"] == ["no comparisons of this study yet: no win rate, interval or p-value"]
    ties = summarise([row("ann", 1, "tie"), row("bob", 1, "tie"), row("ann", 2, "tie")])
    assert (ties["ties"], ties["win_rate"], ties["ci_low"], ties["ci_high"], ties["p_value"]) == (3, None, None,
                                                                                                   None, None)
    assert any("all 3 comparisons are ties" in n for n in ties["notes"])
    assert ties["krippendorff_alpha"] is None  # one verdict only: undefined, said so
    assert any("same verdict" in n for n in ties["notes"])
    solo = summarise([row("ann", 1, "a"), row("ann", 2, "b"), row("ann", 3, "a")])
    assert solo["n_raters"] == 1 and solo["win_rate"] == pytest.approx(2 / 3)
    assert solo["krippendorff_alpha"] is None and any("two raters" in n for n in solo["notes"])


def test_gold_counts_and_the_exclusion_threshold():
    rows = [row("ann", 9, "a", gold=True), row("ann", 8, "b", gold=True), row("ann", 7, "a", gold=True),
            row("ann", 6, "a", gold=True), row("bob", 1, "a")]
    failed, checks = gold_counts(rows)
    assert failed == {"ann": 1, "bob": 0} and checks == {"ann": 4, "bob": 0}
    assert excluded_raters(failed, checks, 0.25) == []  # 1/4 is not more than 25%
    assert excluded_raters(failed, checks, 0.2) == ["ann"]
    with pytest.raises(ValueError, match="max_gold_fail must be a share in 0..1, got 1.5"):
        excluded_raters(failed, checks, 1.5)


def test_pairwise_agreement_of_raters_by_hand():
    def pair(rater, a, b, winner):
        return {"rater": rater, "clip_a": a, "clip_b": b, "winner": winner}

    rows = [pair("r1", 1, 2, "a"), pair("r2", 2, 1, "b"), pair("r3", 1, 2, "b"),  # 1 preferred by r1, r2; 2 by r3
            pair("r1", 3, 4, "a"), pair("r2", 3, 4, "tie"),  # the tie is left out: one decided rater
            pair("r1", 5, 6, "a")]
    out = pairwise_agreement(rows)
    # pair {1,2}: 3 raters -> 3 rater pairs, 1 agreeing (r1, r2)
    assert out == {"pairwise_agreement": pytest.approx(1 / 3), "n_shared_pairs": 1, "n_rater_pairs": 3}
    none = pairwise_agreement([pair("r1", 1, 2, "a")])
    assert math.isnan(none["pairwise_agreement"]) and none["n_rater_pairs"] == 0
