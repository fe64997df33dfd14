"""A rough estimate of the batch diversity of a targets preset's projection, as a share of the
prior's (docs/results.md, "RL Tuner's rows as targets"). Batch diversity is not a mean over
melodies, so the projection's cannot be weighted like a target's figure; instead ``-n`` prior
melodies are sampled, the projection is fitted on them (as ``rlmusic targets plan``), and
batches of ``--batch`` are drawn with replacement by the projection's weights. A resampled
batch repeats melodies that the projection would not repeat, so only its distinct melodies
are kept, and their diversity is divided by that of as many prior melodies drawn without
replacement. Rough: it rests on the projection's effective sample size (printed).

    .venv/bin/python scripts/projection_diversity.py [--preset rl-tuner-targets] [-n 30000] [--seed 7]
"""

from __future__ import annotations

import argparse

import numpy as np

from rlmusic.models.checkpoint import default_prior_dir, load_model
from rlmusic.music import originality
from rlmusic.music.targets import linearise
from rlmusic.tuning.config import TuneConfig
from rlmusic.tuning.target_training import sample_plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="rl-tuner-targets", help="a preset with a [targets] table")
    ap.add_argument("-n", type=int, default=30_000, help="prior melodies sampled")
    ap.add_argument("--seed", type=int, default=7, help="sampling seed of the prior melodies")
    ap.add_argument("--batch", type=int, nargs="+", default=[1000, 2000], help="batch sizes drawn")
    ap.add_argument("--draws", type=int, default=10, help="batches drawn per size")
    args = ap.parse_args()
    config = TuneConfig.preset(args.preset)
    prior = load_model()
    plan, parts, tokens = sample_plan(config, prior, default_prior_dir(), args.n, seed=args.seed, progress=True)
    phi = np.stack([linearise(t.key, *parts[t.key], t.value) for t in plan.targets], axis=1)
    logits = phi @ np.asarray(plan.projection.lam)
    w = np.exp(logits - logits.max())
    w /= w.sum()
    print(f"{args.preset}: {args.n:,} prior melodies of {config.steps} steps, projection's effective sample size "
          f"{1 / np.sum(w ** 2):,.0f}, floor {plan.kl_floor_per_step:.4f} nats per step")
    rng = np.random.default_rng(0)
    for m in args.batch:
        shares, kept = [], []
        for _ in range(args.draws):
            idx = np.unique(rng.choice(len(tokens), m, p=w))
            ref = rng.choice(len(tokens), len(idx), replace=False)
            shares.append(originality.batch_diversity(tokens[idx], prior.vocab)
                          / originality.batch_diversity(tokens[ref], prior.vocab))
            kept.append(len(idx))
        print(f"batches of {m:,} ({np.mean(kept):,.0f} distinct): the projection's batch diversity is "
              f"{np.mean(shares):.1%} [{min(shares):.1%}, {max(shares):.1%}] of the prior's")


if __name__ == "__main__":
    main()
