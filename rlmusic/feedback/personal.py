"""Each rater's own reward model (``reward fit --rater NAME``), shrunk toward the population's.

A personal model starts from the population model's heads (a frozen-feature model,
``rlmusic.feedback.fit``) and is fitted on one rater's judgements with the penalty
``shrink * |theta - theta_population|^2`` in place of the heads' weight decay: a large
shrink keeps the population's model, a small one follows the rater. The shrink is chosen
among ``SHRINKS`` by held-out accuracy on a clip-disjoint split of the rater's own
judgements (``inf``: the population model itself; a tie keeps the larger shrink), against a
population model refitted without any row on those held-out clips (the given one has seen
them), then the model is refitted on all of them from the given population model. With none
of the rater's judgements, or none that a smaller shrink predicts better, the personal model
*is* the population model (same heads, same normalisation). Features and their standardisation are the population's, and scores
are normalised on the population's rated melodies, so personal and population scores are in
the same units.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rlmusic.feedback.fit import RewardModelConfig, _fit_heads, fit_reward_model, heldout_accuracy
from rlmusic.feedback.judgements import (
    heldout_metrics,
    melody_key,
    per_melody,
    prepare,
    split_rows,
    zscore_within_raters,
)
from rlmusic.feedback.reward_model import RewardModel

SHRINKS = (math.inf, 10.0, 1.0, 0.1, 0.01)  # from the population model itself to nearly free heads


def rater_rows(star_rows: Sequence[Mapping[str, Any]], pair_rows: Sequence[Mapping[str, Any]], rater: str
               ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """The star and pair rows of one rater."""
    return ([r for r in star_rows if str(r["rater"]) == rater], [r for r in pair_rows if str(r["rater"]) == rater])


def fit_personal(population: RewardModel, star_rows: Sequence[Mapping[str, Any]],
                 pair_rows: Sequence[Mapping[str, Any]], rater: str, config: RewardModelConfig | None = None
                 ) -> RewardModel:
    """The personal model of ``rater`` from every row given (only the rater's are used)."""
    if population.meta["head"].get("kind", "frozen") != "frozen":
        raise ValueError("a personal model starts from a population model of frozen-feature heads; this one is "
                         f"{population.meta['head'].get('kind')!r}: fit the population with `--model frozen`")
    config = config or RewardModelConfig.from_dict(population.meta["reward_config"])
    stars, pairs = rater_rows(star_rows, pair_rows, rater)
    info: dict[str, Any] = {"rater": rater, "n_ratings": len(stars), "n_comparisons": len(pairs),
                            "rating_ids": sorted(int(r["rating_id"]) for r in stars if r.get("rating_id") is not None),
                            "comparison_ids": sorted(int(r["comparison_id"]) for r in pairs
                                                     if r.get("comparison_id") is not None)}
    data = prepare(stars, pairs, config.ties)
    if not data.melodies:
        return _personal(population, population.head, math.inf, {**info, "held_out": {}})
    held_out: dict[str, Any] = {}
    s_tr, s_te, p_tr, p_te, _ = split_rows(data, "clip", config.holdout, config.seed)
    best, best_acc = math.inf, -math.inf
    anchor = None
    if len(s_tr) + len(p_tr) and len(s_te) + len(p_te):
        anchor = _population_without(population, star_rows, pair_rows, data, s_te, p_te)
    if anchor is not None:
        # the population model of the comparison must not have seen the held-out clips (the
        # given one was fitted on every row, the rater's held-out ones too): refitted without them
        x = torch.as_tensor(per_melody(anchor.features, data.melodies)).float()  # (M, F)
        z_tr, _ = zscore_within_raters(data.star_value, data.star_rater, s_tr)
        for shrink in SHRINKS:
            head = anchor.head if math.isinf(shrink) else _fit_heads(
                x, data, z_tr, s_tr, p_tr, config, config.seed, init=anchor.head, shrink=shrink)
            with torch.no_grad():
                metrics = heldout_metrics(head(x).mean(0).numpy(), data, s_te, p_te, z_tr)
            acc = heldout_accuracy(metrics)
            held_out[str(shrink)] = {"heldout_accuracy": acc, **metrics}
            if acc > best_acc + 1e-12:
                best, best_acc = shrink, acc
    if math.isinf(best):
        return _personal(population, population.head, best, {**info, "held_out": held_out})
    x = torch.as_tensor(per_melody(population.features, data.melodies)).float()  # (M, F)
    head = _fit_heads(x, data, data.star_z, np.arange(len(data.star_idx)), np.arange(len(data.pair_a)), config,
                      config.seed, init=population.head, shrink=best)
    return _personal(population, head, best, {**info, "held_out": held_out})


def _population_without(population: RewardModel, star_rows, pair_rows, data, s_te: np.ndarray,
                        p_te: np.ndarray) -> RewardModel | None:
    """The population model refitted (its own config, frozen heads) on every row that touches
    none of the rater's held-out clips; None when no such row is left."""
    held = {data.melodies[i] for i in np.concatenate([data.star_idx[s_te], data.pair_a[p_te], data.pair_b[p_te]])}
    stars = [r for r in star_rows if melody_key(r["tokens"]) not in held]
    pairs = [r for r in pair_rows if melody_key(r["tokens_a"]) not in held and melody_key(r["tokens_b"]) not in held]
    if not stars and not pairs:
        return None
    config = dataclasses.replace(RewardModelConfig.from_dict(population.meta["reward_config"]), model="frozen",
                                 min_ratings=1)
    return fit_reward_model(stars, pairs, population.prior, config, evaluate=False)


def _personal(population: RewardModel, head, shrink: float, info: dict[str, Any]) -> RewardModel:
    meta = copy.deepcopy(population.meta)
    meta["personal"] = {**info, "shrink": shrink, "population_data": meta["data"]}
    meta.pop("git_commit", None)
    meta.pop("created", None)
    if head is not population.head and population.rated_features is not None:
        with torch.no_grad():
            raw = head(population.rated_features).mean(0)
        meta["normalisation"] = {**meta["normalisation"], "mean": float(raw.mean()),
                                 "std": float(raw.std(unbiased=False)) or 1.0}
    chosen = info["held_out"].get(str(shrink), {})
    meta["metrics"] = {"split": "clip (the rater's own judgements)", **chosen,
                       "population_on_rater": info["held_out"].get("inf", {}), "population_metrics": meta["metrics"]}
    return RewardModel(population.prior, head.eval(), population.feature_mean, population.feature_std, meta,
                       rated_features=population.rated_features)
