"""RL Tuner's table, Magenta's definitions: the shipped prior and tuned models against the bar
of the steering issue (each row at or beyond RL Tuner's best published value, Jaques et al.
2017, Table 1) at a KL to the prior of at most 0.5 nats per 16th step (docs/results.md).

Every model is evaluated on the same footing: ``-n`` melodies of ``--steps`` steps (default
1,000 of 32), seed 0, C major, KL to its reference prior (the shipped prior). Prints one
line per row with each model's value and whether it clears the bar; ``--json`` writes the
tables.

    .venv/bin/python scripts/rl_tuner_table.py MODEL [MODEL ...] [--json F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def clears(value: float, bar: float, direction: str) -> bool:
    return value <= bar if direction == "<=" else value >= bar


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="tuned model directories (the shipped prior is always the first column)")
    ap.add_argument("-n", type=int, default=1000, help="melodies per model")
    ap.add_argument("--steps", type=int, default=32, help="steps per melody")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--json", default=None, help="write {model: table} as JSON")
    args = ap.parse_args()
    tables = {"shipped prior": evaluate_model(None, n=args.n, steps=args.steps, seed=args.seed, device="cpu")}
    for model in args.models:
        tables[model] = evaluate_model(model, n=args.n, steps=args.steps, seed=args.seed, device="cpu")
    names = list(tables)
    print(f"{args.n} melodies of {args.steps} steps per model, seed {args.seed}")
    print(f"{'row':38s} {'bar':>9s} " + " ".join(f"{Path(n).name[:14]:>16s}" for n in names))
    for key, bar, direction in BAR:
        cells = []
        for n in names:
            value = float(tables[n][key])
            cells.append(f"{value:>14.4%}{' ok' if clears(value, bar, direction) else ' --'}" if key != "kl_per_step"
                         else f"{value:>14.3f}{' ok' if clears(value, bar, direction) else ' --'}")
        shown = f"{direction}{bar:.2%}" if key != "kl_per_step" else f"{direction}{bar}"
        print(f"{key:38s} {shown:>9s} " + " ".join(f"{c:>16s}" for c in cells))
    for n in names[1:]:
        passed = sum(clears(float(tables[n][k]), b, d) for k, b, d in BAR[:-1])
        print(f"{n}: {passed} of 8 rows at or beyond the bar, KL {tables[n]['kl_per_step']:.3f} nats per step")
    if args.json:
        Path(args.json).write_text(json.dumps(tables, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
