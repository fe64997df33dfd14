"""The raters' own agreement: the ceiling a reward model's pairwise accuracy cannot beat.

A reward model is scored by how often it prefers the clip a held-out rater preferred
(``pairwise_accuracy``). Raters disagree among themselves, so no model can predict one
rater's choice better, on average, than another rater does: ``pairwise_agreement`` is
the share of pairs of raters who, having judged the same two clips and decided (no tie),
preferred the same one (MusicRL reports both figures side by side: 60% against 60%).

Rows are the reward model's pair rows (``{clip_a, clip_b, rater, winner}``; without clip
ids the melodies' tokens identify the clips).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from rlmusic.feedback.judgements import melody_key


def _clip(row: Mapping[str, Any], side: str) -> Any:
    clip = row.get(f"clip_{side}")
    return clip if clip is not None else melody_key(row[f"tokens_{side}"])


def pairwise_agreement(pair_rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``pairwise_agreement`` (NaN when no two raters decided the same pair),
    ``n_shared_pairs`` (unordered pairs of clips decided by two or more raters) and
    ``n_rater_pairs`` (pairs of raters compared over those: the denominator)."""
    chosen: dict[tuple, dict[str, Any]] = defaultdict(dict)  # pair -> rater -> the clip preferred
    for row in pair_rows:
        if row["winner"] == "tie":
            continue
        a, b = _clip(row, "a"), _clip(row, "b")
        key = tuple(sorted((a, b), key=repr))
        chosen[key][str(row["rater"])] = a if row["winner"] == "a" else b
    agree = total = shared = 0
    for key, by_rater in chosen.items():
        k = len(by_rater)
        if k < 2:
            continue
        shared += 1
        first = sum(1 for clip in by_rater.values() if clip == key[0])
        total += k * (k - 1) // 2
        agree += math.comb(first, 2) + math.comb(k - first, 2)
    return {"pairwise_agreement": agree / total if total else math.nan, "n_shared_pairs": shared,
            "n_rater_pairs": total}
