"""The human-feedback table of docs/results.md from experiments run with
``scripts/human_feedback_experiment.py TASTE OUT --seeds K`` (and ``--control``): per taste,
over its seeds, the reward model's held-out star-pair accuracy, the taste's change in standard
deviations of the prior's melodies, the control's change of the same taste, the reward model's
score, KL per step and per note, notes out of key; each as mean [min, max] over seeds, and how
many seeds the taste rose by more than the control's largest change of it.

    .venv/bin/python scripts/human_feedback_table.py runs/hf-control runs/hf-pitch runs/hf-contour ... \\
        [--json docs/results/human_feedback_seeds.json]

The first folder must be the control's (``--control``); each folder holds ``seed0 .. seedK-1``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlmusic.evaluation.seeds import Spread


def load(folder: Path) -> list[dict]:
    results = [json.loads(p.read_text()) for p in sorted(folder.glob("seed*/result.json"))]
    if not results:
        sys.exit(f"human_feedback_table: no seed*/result.json under {folder}")
    return results


def spread(values) -> Spread:
    return Spread(tuple(float(v) for v in values))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("control", help="the control's folder (stars shuffled)")
    ap.add_argument("tastes", nargs="+", help="one folder per taste")
    ap.add_argument("--json", default=None, help="write the figures per taste and seed as JSON")
    args = ap.parse_args()
    control = load(Path(args.control))
    if not all(r["control"] for r in control):
        sys.exit(f"human_feedback_table: {args.control} is not a control run (--control)")
    print("| raters' taste | seeds | RM held-out star-pair acc. | taste change, SD | control's change of that taste, SD "
          "| seeds above the control's largest | RM score, prior -> tuned | KL per step | KL per note "
          "| notes not in key, tuned |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out = {"control": control}
    rows = [(control, True)] + [(load(Path(f)), False) for f in args.tastes]
    for results, is_control in rows:
        taste = results[0]["taste"]
        change = spread(r["effect_sd"] for r in results)
        ctrl = spread(r["every_taste"][taste]["effect_sd"] for r in control)
        above = sum(v > ctrl.high for v in change.values)
        acc = spread(r["reward_model_heldout"]["star_pair_accuracy"] for r in results)
        rm_a = spread(r["reward_model_score_prior"] for r in results)
        rm_b = spread(r["reward_model_score_tuned"] for r in results)
        kl = spread(r["kl_per_step"] for r in results)
        kln = spread(r["kl_per_note"] for r in results)
        key = spread(r["notes_not_in_key_tuned"] for r in results)
        label = f"control ({taste} raters, stars shuffled)" if is_control else taste
        print(f"| {label} | {len(results)} | {acc.format()} | {change.format(digits=2)} | "
              f"{'-' if is_control else ctrl.format(digits=2)} | {'-' if is_control else f'{above}/{len(results)}'} | "
              f"{rm_a.mean:+.2f} -> {rm_b.format(digits=2)} | {kl.format()} | {kln.format()} | "
              f"{key.format(percent=True, digits=4)} |")
        if not is_control:
            out[taste] = results
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
