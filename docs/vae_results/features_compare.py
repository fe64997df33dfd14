"""Reward-model features: the shipped VAE's latent mean (``features = "vae"``) against the
prior's LSTM features (``"prior"``), with and without the melody statistics, fitted on the
same simulated ratings (docs/vae.md, "The latent as reward-model features").

For each taste and seed: 600 clips sampled from the shipped prior (32 steps); 6 simulated
raters (``rlmusic.feedback.simulate``: biases, sharpness, noise 0.5 stars) each give stars
to 60 random clips and compare 40 random pairs; the same rows are fitted with every
feature set; held-out metrics are clip-disjoint (the default ``split = "clip"``, 25% of clips).

Usage: python docs/vae_results/features_compare.py [SEEDS]   (default 3)
Writes docs/vae_results/features.json.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from rlmusic.feedback.fit import RewardModelConfig, fit_reward_model
from rlmusic.feedback.simulate import TASTES, make_raters, taste_score
from rlmusic.models.checkpoint import load_model
from rlmusic.models.generate import sample_tokens

torch.set_num_threads(1)
SEEDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
FEATURES = ("prior", "vae", "prior+stats", "vae+stats", "stats")
N_CLIPS, N_RATERS, PER_RATER, PAIRS, NOISE = 600, 6, 60, 40, 0.5

prior = load_model()
results = []
for taste in TASTES:
    for seed in range(SEEDS):
        rng = np.random.default_rng([seed, len(taste)])
        clips = sample_tokens(prior, N_CLIPS, 32, seed=1000 + seed)
        values = taste_score(clips, taste)
        stars, pairs = [], []
        for rater in make_raters(N_RATERS, taste, NOISE, seed):
            idx = rng.choice(N_CLIPS, PER_RATER, replace=False)
            for i, s in zip(idx, rater.stars(values[idx], rng)):
                stars.append({"rating_id": len(stars), "clip_id": int(i), "rater": rater.name, "stars": int(s),
                              "tokens": clips[i].tolist()})
            ab = rng.choice(N_CLIPS, (PAIRS, 2), replace=True)
            ab = ab[ab[:, 0] != ab[:, 1]]
            for (a, b), w in zip(ab, rater.winners(values[ab[:, 0]], values[ab[:, 1]], rng)):
                pairs.append({"comparison_id": len(pairs), "clip_a": int(a), "clip_b": int(b), "rater": rater.name,
                              "winner": w, "tokens_a": clips[a].tolist(), "tokens_b": clips[b].tolist()})
        for features in FEATURES:
            model = fit_reward_model(stars, pairs, prior, RewardModelConfig(features=features, seed=seed))
            m = model.metrics
            row = {"taste": taste, "seed": seed, "features": features, "n_features": model.meta["head"]["n_features"],
                   **{k: m.get(k) for k in ("pairwise_accuracy", "star_pair_accuracy", "spearman", "n_test_pairs",
                                            "n_test_star_pairs")}}
            results.append(row)
            print(json.dumps(row), flush=True)

summary = {}
for taste in TASTES:
    for features in FEATURES:
        rows = [r for r in results if r["taste"] == taste and r["features"] == features]
        summary[f"{taste}/{features}"] = {k: float(np.mean([r[k] for r in rows]))
                                          for k in ("pairwise_accuracy", "star_pair_accuracy", "spearman")}
out = Path(__file__).parent / "features.json"
out.write_text(json.dumps({"setting": {"clips": N_CLIPS, "raters": N_RATERS, "stars_per_rater": PER_RATER,
                                       "pairs_per_rater": PAIRS, "noise": NOISE, "seeds": SEEDS},
                           "summary": summary, "runs": results}, indent=1) + "\n")
print(json.dumps(summary, indent=1))
