"""How a preset's targets pull against each other under the prior: on ``-n`` prior melodies,
the correlation of every pair of target features, and for each ">=" ("<=") target the other
targets' figures among the melodies in its top (bottom) 10%, 1% and 0.1%; then the plan
(``rlmusic targets plan``) fitted on the same melodies. A target the prior meets only in
melodies that miss another (structure at 128 steps against novelty) makes their projection
rest on few effective samples and its floor rough (docs/results.md, "Structure as targets").

    .venv/bin/python scripts/target_tradeoffs.py --preset structure-targets -n 100000 --seed 7 [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from rlmusic.models.checkpoint import default_prior_dir, load_model
from rlmusic.models.generate import sample_tokens
from rlmusic.music.targets import linearise, target_parts
from rlmusic.tuning.config import TuneConfig
from rlmusic.tuning.target_training import feature_corpus, music_key
from rlmusic.tuning.targets import format_plan, parse_targets, plan_projection

QUANTILES = (0.10, 0.01, 0.001)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="structure-targets")
    parser.add_argument("-n", type=int, default=100_000, help="prior melodies")
    parser.add_argument("--seed", type=int, default=7, help="sampling seed")
    parser.add_argument("--json", default=None, help="write the figures as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    config = TuneConfig.preset(args.preset)
    prior_dir = default_prior_dir()
    targets = parse_targets(config.targets)
    if not targets:
        raise SystemExit(f"target_tradeoffs: preset {args.preset!r} has no [targets]")
    keys = [t.key for t in targets]
    tokens = sample_tokens(load_model(prior_dir), args.n, config.steps, seed=args.seed, progress=True)
    parts = target_parts(keys, tokens, vocab=config.vocab, key=music_key(config),
                         corpus=feature_corpus(keys, config, prior_dir, config.vocab))
    phi = {t.key: linearise(t.key, *parts[t.key], t.value) for t in targets}
    corr = np.corrcoef(np.stack([phi[k] for k in keys]))
    out = {"preset": args.preset, "n": args.n, "seed": args.seed, "steps": config.steps,
           "correlation": {a: {b: float(corr[i, j]) for j, b in enumerate(keys)} for i, a in enumerate(keys)},
           "tails": {}, "plan": None}
    print(f"{args.n:,} prior melodies of {config.steps} steps (seed {args.seed}); correlation of the targets' features:")
    for i, a in enumerate(keys):
        print(f"  {a:<14}" + "".join(f"{corr[i, j]:>9.3f}" for j in range(len(keys))))
    for t in targets:
        if t.op == "==":
            continue
        x = phi[t.key] if t.op == ">=" else -phi[t.key]
        order = np.argsort(-x, kind="stable")  # best first; ties in sampling order, so a tail is exactly its share
        rows = []
        for q in QUANTILES:
            tail = np.zeros(len(x), dtype=bool)
            tail[order[:max(1, round(q * len(x)))]] = True
            rows.append({"share": q, "n": int(tail.sum()), **{k: float(phi[k][tail].mean()) for k in keys}})
            print(f"  {t.key} {t.op}: its {'top' if t.op == '>=' else 'bottom'} {q:.1%} ({int(tail.sum()):,} melodies): "
                  + ", ".join(f"{k} {phi[k][tail].mean():.3f} (all {phi[k].mean():.3f})" for k in keys))
        out["tails"][t.key] = rows
    try:
        plan = plan_projection(targets, parts, steps=config.steps, min_ess=1)
    except ValueError as exc:  # the projection cannot be fitted on these melodies: say so, keep the rest
        print(f"the plan on these melodies: {exc}")
    else:
        out["plan"] = plan.to_dict()
        print(format_plan(plan))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
