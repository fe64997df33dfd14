"""The statistics of a blind A/B study, on plain rows (``study_report`` reads them).

A row is one comparison of a study pair: ``{"rater", "pair", "gold", "verdict"}`` where
``verdict`` is ``"a"`` (model A's clip preferred; in a gold check the intact clip, the
right answer), ``"b"`` or ``"tie"``, whatever side each clip was shown on.

- Gold checks: a rater fails one by not preferring the intact clip (the broken one, or a
  tie). A rater who failed more than ``max_gold_fail`` of the checks they judged is
  excluded from everything below, and counted.
- ``win_rate`` = wins_a / (wins_a + wins_b): ties are left out of it, of its 95% Wilson
  score interval (``ci_low``/``ci_high``) and of the two-sided exact binomial (sign) test
  of "no preference" (``p_value``), both from ``scipy.stats.binomtest``. Both treat every
  judgement as independent; judgements of one pair, or by one rater, are not, so
  ``ci_low_clustered``/``ci_high_clustered`` is a 95% percentile bootstrap that resamples
  pairs and raters (seeded): with few pairs it is the wider and the one to trust.
- ``krippendorff_alpha``: agreement of the raters on the pairs two or more of them judged
  (the ``krippendorff`` package), verdicts ordinal b < tie < a; 1 is perfect agreement,
  0 what chance gives.

Anything that cannot be computed (no comparisons, all ties, one rater, one verdict only)
is None, with a sentence in ``notes`` saying why; never a division by zero.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import krippendorff
import numpy as np
from scipy.stats import binomtest

CONFIDENCE = 0.95
MAX_GOLD_FAIL = 0.25  # raters failing more than this share of their gold checks are excluded
BOOTSTRAP_RESAMPLES = 2000  # resamples of the clustered interval
VERDICT_ORDER = {"b": 0, "tie": 1, "a": 2}  # ordinal codes for Krippendorff's alpha


def wilson_interval(wins: int, n: int, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Wilson score interval of a proportion ``wins / n``; (None, None) when n is 0."""
    if n <= 0:
        return None, None
    ci = binomtest(wins, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def sign_test_p(wins_a: int, wins_b: int) -> float | None:
    """Two-sided exact binomial test of wins_a against wins_b at 1/2 (ties left out
    before); None when both are 0."""
    n = wins_a + wins_b
    return None if n == 0 else float(binomtest(wins_a, n, 0.5, alternative="two-sided").pvalue)


def clustered_interval(rows: list[Mapping[str, Any]], resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
                       confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Percentile interval of the win rate under a bootstrap that resamples pairs and
    raters (both with replacement, independently): judgements of one pair, or by one
    rater, are not independent, and this interval widens accordingly. (None, None) when
    no comparison is decided."""
    decided = [r for r in rows if r["verdict"] != "tie"]
    if not decided:
        return None, None
    raters = sorted({r["rater"] for r in decided})
    pairs = sorted({r["pair"] for r in decided}, key=str)
    wins = np.zeros((2, len(raters), len(pairs)))  # (a/b, raters, pairs) counts
    for r in decided:
        wins[int(r["verdict"] == "b"), raters.index(r["rater"]), pairs.index(r["pair"])] += 1
    rng = np.random.default_rng(seed)
    by_rater = rng.multinomial(len(raters), np.full(len(raters), 1 / len(raters)), size=resamples)  # (B, R)
    by_pair = rng.multinomial(len(pairs), np.full(len(pairs), 1 / len(pairs)), size=resamples)  # (B, P)
    a, b = (np.einsum("br,rp,bp->b", by_rater, wins[k], by_pair) for k in (0, 1))  # (B,) each
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = a / (a + b)  # NaN where a resample holds no decided comparison
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(rates, [tail, 100 - tail])
    return float(low), float(high)


def ordinal_alpha(verdicts: Iterable[tuple[str, Any, str]]) -> tuple[float | None, int, str | None]:
    """Krippendorff's alpha (ordinal b < tie < a) of ``(rater, unit, verdict)`` triples,
    on the units two or more raters judged. Returns (alpha or None, shared units, why None)."""
    by_unit: dict[Any, dict[str, int]] = defaultdict(dict)
    for rater, unit, verdict in verdicts:
        by_unit[unit][rater] = VERDICT_ORDER[verdict]
    shared = {u: v for u, v in by_unit.items() if len(v) >= 2}
    raters = sorted({r for v in shared.values() for r in v})
    if not shared:
        n_raters = len({r for v in by_unit.values() for r in v})
        return None, 0, (f"agreement needs two raters judging the same pair: {n_raters} rater(s), "
                         "no pair judged twice yet")
    units = sorted(shared, key=str)
    data = np.full((len(raters), len(units)), np.nan)  # (raters, shared units)
    for j, unit in enumerate(units):
        for rater, code in shared[unit].items():
            data[raters.index(rater), j] = code
    if len({c for v in shared.values() for c in v.values()}) < 2:
        return None, len(units), ("agreement is undefined when every judgement of the shared pairs "
                                  "is the same verdict (nothing to tell apart from chance)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal",
                                   value_domain=sorted(VERDICT_ORDER.values()))
    if not np.isfinite(alpha):
        return None, len(units), "agreement is undefined for these judgements"
    return float(alpha), len(units), None


def gold_counts(rows: Iterable[Mapping[str, Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """(gold failures per rater, gold checks judged per rater), for every rater with a row."""
    failed: Counter = Counter()
    checks: Counter = Counter()
    raters = set()
    for row in rows:
        raters.add(row["rater"])
        if row["gold"]:
            checks[row["rater"]] += 1
            failed[row["rater"]] += row["verdict"] != "a"
    return {r: failed[r] for r in sorted(raters)}, {r: checks[r] for r in sorted(raters)}


def excluded_raters(failed: Mapping[str, int], checks: Mapping[str, int],
                    max_gold_fail: float = MAX_GOLD_FAIL) -> list[str]:
    """Raters who failed more than ``max_gold_fail`` of the gold checks they judged."""
    if not 0 <= max_gold_fail <= 1:
        raise ValueError(f"max_gold_fail must be a share in 0..1, got {max_gold_fail!r}")
    return sorted(r for r, n in checks.items() if n and failed.get(r, 0) / n > max_gold_fail)


def summarise(rows: Iterable[Mapping[str, Any]], max_gold_fail: float = MAX_GOLD_FAIL) -> dict[str, Any]:
    """The report's figures from the study's comparison rows (module docstring)."""
    rows = list(rows)
    failed, checks = gold_counts(rows)
    excluded = excluded_raters(failed, checks, max_gold_fail)
    kept = [r for r in rows if not r["gold"] and r["rater"] not in excluded]
    counts = Counter(r["verdict"] for r in kept)
    wins_a, wins_b, ties = counts["a"], counts["b"], counts["tie"]
    decided = wins_a + wins_b
    ci_low, ci_high = wilson_interval(wins_a, decided)
    clustered_low, clustered_high = clustered_interval(kept)
    alpha, shared, why = ordinal_alpha((r["rater"], r["pair"], r["verdict"]) for r in kept)
    notes = []
    if not kept:
        notes.append("no comparisons of this study yet: no win rate, interval or p-value")
    elif not decided:
        notes.append(f"all {ties} comparisons are ties: no win rate, interval or p-value "
                     "(ties are left out of them)")
    if why and kept:
        notes.append(why)
    if excluded:
        notes.append(f"{len(excluded)} rater(s) failed more than {max_gold_fail:.0%} of their gold checks "
                     "and are left out")
    return {
        "n_comparisons": len(kept),
        "wins_a": wins_a,
        "wins_b": wins_b,
        "ties": ties,
        "win_rate": wins_a / decided if decided else None,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ci_low_clustered": clustered_low,
        "ci_high_clustered": clustered_high,
        "p_value": sign_test_p(wins_a, wins_b),
        "n_raters": len({r["rater"] for r in kept}),
        "krippendorff_alpha": alpha,
        "shared_pairs": shared,
        "gold_failures": failed,
        "gold_checks": checks,
        "max_gold_fail": max_gold_fail,
        "n_raters_excluded": len(excluded),
        "excluded_raters": excluded,
        "notes": notes,
    }
