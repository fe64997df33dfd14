"""Merge per-seed ``scripts/targets_table.py --json`` files of one configuration into one
(each file one seed, run separately to spread the work): the same per-target and summary
figures over the seeds, mean [min, max], and a JSON of all of them.

    .venv/bin/python scripts/merge_targets_tables.py runs/st/table_s0.json runs/st/table_s1.json ... [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlmusic.evaluation.seeds import Spread

EXTRA = ("diversity", "unshared_ngrams", "novelty", "copied_notes", "notes_per_melody")  # as shares of the prior's


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="+", help="targets_table.py --json files, one model each")
    ap.add_argument("--json", default=None, help="write the merged figures here")
    args = ap.parse_args()
    models, prior, settings = [], None, None
    for path in args.tables:
        data = json.loads(Path(path).read_text())
        if len(data["models"]) != 1:
            sys.exit(f"merge_targets_tables: {path} holds {len(data['models'])} configurations, want one")
        here = (data["n"], data["steps"], data["seed"])
        if settings is not None and here != settings:
            sys.exit(f"merge_targets_tables: {path} was evaluated on (n, steps, seed) {here}, the others on {settings}")
        settings, prior = here, data["prior"]
        models.extend(next(iter(data["models"].values())))
    n, steps, seed = settings
    print(f"{len(models)} models, {n:,} melodies of {steps} steps each, sampling seed {seed}; mean [min, max]")
    rows = {}
    for i, target in enumerate(models[0]["targets"]):
        figs = Spread(tuple(m["targets"][i]["figure"] for m in models))
        met = sum(m["targets"][i]["status"] == "met" for m in models)
        rows[target["key"]] = {"op": target["op"], "bar": target["target"], "prior": prior[target["key"]],
                               "mean": figs.mean, "low": figs.low, "high": figs.high, "met": met}
        print(f"{target['key']:24s} {target['op']} {target['target']:<8g} prior {prior[target['key']]:.4g}  "
              f"{figs.format()} ({met}/{len(models)})")
    summary = {
        "met_per_seed": [sum(t["status"] == "met" for t in m["targets"]) for m in models],
        "kl_per_step": Spread(tuple(m["table"]["kl_per_step"] for m in models)),
        "kl_per_note": Spread(tuple(m["table"]["kl_per_note"] for m in models)),
        "floor_plan": Spread(tuple(m["kl_floor_per_step"] for m in models)),
        "plan_ess": Spread(tuple(m["plan_ess"] for m in models)),
        "floor_used": Spread(tuple(m["floor_used"] for m in models)),
        "kl_over_floor": Spread(tuple(m["table"]["kl_per_step"] / m["floor_used"] for m in models)),
        "minutes": Spread(tuple(m["minutes"] for m in models)),
        **{f"{k}_share_of_prior": Spread(tuple(m["table"][k] / prior[k] for m in models)) for k in EXTRA},
    }
    if all(m["floor_refit"] for m in models):
        summary["floor_refit"] = Spread(tuple(m["floor_refit"]["kl_floor_per_step"] for m in models))
        summary["refit_ess"] = Spread(tuple(m["floor_refit"]["ess"] for m in models))
    for k, v in summary.items():
        print(f"{k}: {v if isinstance(v, list) else v.format()}")
    if args.json:
        out = {"n": n, "steps": steps, "seed": seed, "prior": prior, "targets": rows,
               "summary": {k: (v if isinstance(v, list) else {"mean": v.mean, "low": v.low, "high": v.high,
                                                              "values": list(v.values)})
                           for k, v in summary.items()},
               "models": models}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
