"""Preference optimisation from judgements (``rlmusic tune --method dpo``): the policy is
trained on pairs (a preferred melody, a rejected one) against the prior as reference,
with no reward model and no PPO.

- ``preference_pairs``: the raters' comparisons (ties left out) and star pairs (two clips
  one rater starred differently; stars are comparable only within a rater) as (winner,
  loser) token rows, counting what was left out and why;
- ``sequence_log_probs``: log pi(x) of whole melodies, the sum over their steps;
- ``preference_loss``: DPO (Rafailov et al. 2023), ``-log sigmoid(beta * h)``, or IPO
  (Azar et al. 2023), ``(h - 1 / (2 beta))^2``, with ``h = (log pi(w) - log ref(w)) -
  (log pi(l) - log ref(l))`` (TRL's ``sigmoid`` and ``ipo`` losses, eq. 17 of the IPO
  paper for the latter, written for our LSTM; log-probabilities are summed over the
  melody's steps for both, where TRL averages them over the tokens for IPO);
- ``online_pairs``: pairs sampled from the policy and judged by a reward model (online DPO).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rlmusic.models.lstm import MelodyLSTM

LOSSES = ("dpo", "ipo")


def preference_pairs(star_rows: Sequence[Mapping[str, Any]], pair_rows: Sequence[Mapping[str, Any]], steps: int,
                     rater: str | None = None, max_star_pairs: int = 20_000, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(winners (P, steps), losers (P, steps), counts) from the judgement rows of
    ``db.star_rows`` / ``db.pair_rows`` (only ``rater``'s when given). Star pairs are drawn
    within each rater, at most ``max_star_pairs`` in all (a seeded sample when there are
    more). Counts: ``comparisons``, ``star_pairs`` (kept), ``ties``, ``equal_stars``,
    ``other_length`` (a clip not ``steps`` long), ``star_pairs_not_sampled``."""
    counts: Counter = Counter()
    winners, losers = [], []
    for r in pair_rows:
        if rater is not None and r["rater"] != rater:
            continue
        if r["winner"] == "tie":
            counts["ties"] += 1
            continue
        a, b = list(r["tokens_a"]), list(r["tokens_b"])
        if len(a) != steps or len(b) != steps:
            counts["other_length"] += 1
            continue
        w, lo = (a, b) if r["winner"] == "a" else (b, a)
        winners.append(w)
        losers.append(lo)
        counts["comparisons"] += 1
    by_rater: dict[str, list[Mapping[str, Any]]] = {}
    for r in star_rows:
        if rater is None or r["rater"] == rater:
            if len(r["tokens"]) != steps:
                counts["other_length"] += 1
                continue
            by_rater.setdefault(str(r["rater"]), []).append(r)
    stars = []
    for name in sorted(by_rater):
        for x, y in combinations(by_rater[name], 2):
            if x["stars"] == y["stars"]:
                counts["equal_stars"] += 1
            else:
                stars.append((x, y) if x["stars"] > y["stars"] else (y, x))
    if len(stars) > max_star_pairs:
        keep = np.random.default_rng(seed).choice(len(stars), size=max_star_pairs, replace=False)
        counts["star_pairs_not_sampled"] = len(stars) - max_star_pairs
        stars = [stars[i] for i in sorted(keep)]
    for hi, lo in stars:
        winners.append(list(hi["tokens"]))
        losers.append(list(lo["tokens"]))
    counts["star_pairs"] = len(stars)
    empty = np.zeros((0, steps), dtype=np.int64)
    if not winners:
        return empty, empty, dict(counts)
    return np.asarray(winners, dtype=np.int64), np.asarray(losers, dtype=np.int64), dict(counts)


def sequence_log_probs(model: MelodyLSTM, tokens: torch.Tensor) -> torch.Tensor:
    """log pi(x) of each melody: (B, T) -> (B,), the sum over its steps (gradients flow)."""
    logits, _ = model(model.with_bos(tokens))
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens[..., None])[..., 0].sum(1)


def preference_loss(policy_w: torch.Tensor, policy_l: torch.Tensor, ref_w: torch.Tensor, ref_l: torch.Tensor,
                    beta: float, loss: str = "dpo") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss over the pairs and each pair's margin ``h`` (log-ratio of the winner
    minus the loser's). ``dpo``: -log sigmoid(beta h); ``ipo``: (h - 1/(2 beta))^2."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    h = (policy_w - ref_w) - (policy_l - ref_l)
    per_pair = -F.logsigmoid(beta * h) if loss == "dpo" else (h - 1.0 / (2.0 * beta)) ** 2
    return per_pair.mean(), h.detach()


@torch.no_grad()
def online_pairs(policy: MelodyLSTM, judge: Callable[[np.ndarray], np.ndarray], n: int, steps: int,
                 generator: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` pairs of melodies sampled from the policy, judged by ``judge`` (tokens (N, T) ->
    scores (N,), higher preferred): (winners, losers, score margins)."""
    tokens = policy.sample(2 * n, steps, generator=generator).numpy()
    scores = np.asarray(judge(tokens), dtype=np.float64).reshape(2, n)
    a, b = tokens[:n], tokens[n:]
    first = scores[0] >= scores[1]
    return np.where(first[:, None], a, b), np.where(first[:, None], b, a), np.abs(scores[0] - scores[1])
