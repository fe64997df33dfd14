"""RL Tuner's table, Magenta's definitions: the shipped prior and tuned models against the bar
of the steering issue (each row at or beyond RL Tuner's best published value, Jaques et al.
2017, Table 1) at a KL to the prior of at most 0.5 nats per 16th step (docs/results.md).

Every model is evaluated on the same footing: ``-n`` melodies of ``--steps`` steps (default
10,000 of 32), sampling seed 0, C major, KL to its reference prior (the shipped prior). A
model path with ``{seed}`` and ``--seeds K`` names the K training seeds of one
configuration: each row is printed as the mean and [min, max] over seeds, with the number of
seeds that clear its bar. ``--json`` writes every seed's table.

    .venv/bin/python scripts/rl_tuner_table.py 'runs/rl-tuner-s{seed}' --seeds 3 [MODEL ...] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlmusic.evaluation.seeds import expand_seeds, spreads
from rlmusic.evaluation.table import evaluate_model

# (metric, bar, direction): the steering issue's bar, one per row of RL Tuner's table
BAR = (
    ("rl_tuner/notes_excessively_repeated", 0.0001, "<="),
    ("rl_tuner/notes_not_in_key", 0.005, "<="),
    ("rl_tuner/starts_with_tonic", 0.50, ">="),
    ("rl_tuner/leaps_resolved", 0.92, ">="),
    ("rl_tuner/unique_max_note", 0.70, ">="),
    ("rl_tuner/unique_min_note", 0.60, ">="),
    ("rl_tuner/notes_in_motif", 0.76, ">="),
    ("rl_tuner/notes_in_repeated_motif", 0.01, ">="),
    ("kl_per_step", 0.5, "<="),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="tuned model directories, each may hold {seed} (the shipped prior is "
                                              "always the first column)")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per model: {seed} = 0..K-1")
    ap.add_argument("-n", type=int, default=10_000, help="melodies per model and seed")
    ap.add_argument("--steps", type=int, default=32, help="steps per melody")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--json", default=None, help="write {model: [table per seed]} as JSON")
    args = ap.parse_args()
    try:
        groups = {"shipped prior": [None]} | {m: expand_seeds(m, args.seeds) for m in args.models}
    except ValueError as exc:
        ap.error(str(exc))
    tables = {name: [evaluate_model(d, n=args.n, steps=args.steps, seed=args.seed, device="cpu") for d in dirs]
              for name, dirs in groups.items()}
    stats = {name: spreads(ts, [key for key, _, _ in BAR]) for name, ts in tables.items()}
    names = list(tables)
    print(f"{args.n} melodies of {args.steps} steps per model and seed, sampling seed {args.seed}; "
          f"mean [min, max] over {args.seeds} training seed(s); (k/K): seeds that clear the bar")
    for key, bar, direction in BAR:
        percent = key != "kl_per_step"
        shown = f"{direction}{bar:.2%}" if percent else f"{direction}{bar}"
        digits = 5 if percent and bar < 0.01 else 3  # a bar of 0.01% needs 0.001%
        cells = [f"{stats[n][key].format(percent, digits)} ({stats[n][key].cleared(bar, direction)}/{len(tables[n])})"
                 for n in names]
        print(f"{key:38s} {shown:>9s} " + "  ".join(f"{c:>30s}" for c in cells))
    for n in names[1:]:
        per_seed = [sum(stats[n][k].values[i] >= b if d == ">=" else stats[n][k].values[i] <= b
                        for k, b, d in BAR[:-1]) for i in range(len(tables[n]))]
        kl = stats[n]["kl_per_step"]
        print(f"{n}: rows at or beyond the bar per seed {per_seed} (of 8), KL {kl.format()} nats per step")
    if args.json:
        out = {name: [dict(t, model=d) for t, d in zip(tables[name], groups[name])] for name in names}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
