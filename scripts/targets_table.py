"""Targets met or missed over training seeds: models tuned to a ``[targets]`` table, each
against its bars, its floor and the shipped prior (docs/results.md, "Targets").

Every model is evaluated on the same footing: ``-n`` melodies of ``--steps`` steps (default
10,000; steps: the models' own), sampling seed 0, KL to its reference prior. A model path with
``{seed}`` and ``--seeds K`` names the K training seeds of one configuration. Per target: the
prior's figure, the bar, and per configuration the mean [min, max] over seeds with the number
of seeds that meet it (``met``: the figure meets the bar on 10,000 fresh melodies, as
``rlmusic evaluate`` says). Then per configuration: KL per step against the floor its plan
printed (and their ratio, the largest over seeds), batch diversity and novelty as shares of
the prior's (the smallest over seeds), env steps and training minutes.

``--refit-floor N`` also refits each model's floor with the model itself as the proposal
(``rlmusic targets plan --proposal``: N of its melodies weighed by prior / model) and reports
it with its effective sample size beside the plan's; KL / floor then uses, per model, the
estimate of the two with the larger effective sample size (for targets the prior's own
samples reach too rarely, as structure at 128 steps).

    .venv/bin/python scripts/targets_table.py 'runs/ppo-s{seed}' ['runs/dpg-s{seed}' ...] --seeds 3 [--json F]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from rlmusic.evaluation.seeds import Spread, expand_seeds
from rlmusic.evaluation.table import evaluate_model
from rlmusic.models.checkpoint import load_provenance, model_path
from rlmusic.tuning.target_training import model_target_rows


def training_minutes(model_dir: Path) -> float:
    """Wall-clock minutes of the run's training, from its metrics.csv (PPO: SB3's
    time/time_elapsed; DPG: time/minutes); NaN when not logged."""
    path = Path(model_dir) / "metrics.csv"
    if not path.is_file():
        return float("nan")
    last = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            last.update({k: v for k, v in row.items() if v not in ("", None)})
    if "time/minutes" in last:
        return float(last["time/minutes"])
    return float(last["time/time_elapsed"]) / 60 if "time/time_elapsed" in last else float("nan")


def sig(spread: Spread) -> str:
    """``0.7316 [0.7301, 0.733]``: four significant digits (one seed: the value)."""
    one = [format(v, ".4g") for v in (spread.mean, spread.low, spread.high)]
    return one[0] if len(spread.values) == 1 else f"{one[0]} [{one[1]}, {one[2]}]"


def refit_floor(model_dir: str, config: dict, n: int, seed: int) -> dict:
    """The model's plan refitted with the model as the proposal: floor and effective sample size."""
    from rlmusic.evaluation.table import load_reference_prior
    from rlmusic.models.checkpoint import load_model, reference_prior_dir
    from rlmusic.tuning.config import TuneConfig
    from rlmusic.tuning.target_training import plan_for_config

    tune_config = TuneConfig.from_dict(config)
    prior_dir = reference_prior_dir(model_path(model_dir))
    prior = load_reference_prior(prior_dir, "cpu", vocab=tune_config.vocab)
    proposal = load_model(model_path(model_dir), device="cpu", vocab=tune_config.vocab)
    plan = plan_for_config(tune_config, prior, prior_dir, n, seed=seed, min_ess=0, proposal=proposal)
    return {"kl_floor_per_step": plan.kl_floor_per_step, "ess": plan.projection.ess, "n": n,
            "lambda": {t.key: float(v) for t, v in zip(plan.targets, plan.projection.lam, strict=True)}}


def one_model(model_dir: str, n: int, steps: int | None, seed: int, refit: int = 0) -> dict:
    """The evaluation table of one tuned model, its targets' rows, floor, env steps, minutes."""
    prov = load_provenance(model_path(model_dir))
    config = (prov.extra or {}).get("tune_config") or {}
    if not config.get("targets"):
        raise ValueError(f"{model_dir}: not tuned to targets (its provenance has no [targets] table)")
    steps = steps or int(config["steps"])
    table, tokens = evaluate_model(model_dir, n=n, steps=steps, seed=seed, device="cpu", return_tokens=True)
    rows, _ = model_target_rows(model_dir, tokens)
    return {"model": model_dir, "steps": steps, "table": table, "targets": rows,
            "method": (prov.extra.get("targets") or {}).get("method", "ppo"),
            "kl_floor_per_step": float(prov.metrics.get("kl_floor_per_step", float("nan"))),
            "plan_ess": float(((prov.extra or {}).get("targets") or {}).get("plan", {}).get("ess", float("nan"))),
            "floor_refit": refit_floor(model_dir, config, refit, seed) if refit else None,
            "env_steps": int((prov.extra or {}).get("timesteps") or prov.metrics.get("timesteps") or 0),
            "minutes": training_minutes(Path(model_dir))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model directories tuned to targets, each may hold {seed}")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per model: {seed} = 0..K-1")
    ap.add_argument("-n", type=int, default=10_000, help="melodies per model and seed")
    ap.add_argument("--steps", type=int, default=None, help="steps per melody (default: the models' own)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--json", default=None, help="write every seed's figures as JSON")
    ap.add_argument("--refit-floor", type=int, default=0, metavar="N",
                    help="also refit each model's floor on N of its own melodies weighed by prior / model")
    args = ap.parse_args()
    try:
        groups = {m: expand_seeds(m, args.seeds) for m in args.models}
        results = {m: [one_model(d, args.n, args.steps, args.seed, args.refit_floor) for d in dirs] for m, dirs in groups.items()}
    except (ValueError, FileNotFoundError) as exc:
        sys.exit(f"targets_table: {exc}")
    names = list(results)
    steps = results[names[0]][0]["steps"]
    prior = evaluate_model(None, n=args.n, steps=steps, seed=args.seed, device="cpu")
    print(f"{args.n:,} melodies of {steps} steps per model and seed, sampling seed {args.seed}; "
          f"mean [min, max] over seeds; (k/K): seeds that meet the target")
    keys = [(r["key"], r["op"], r["target"]) for r in results[names[0]][0]["targets"]]
    print(f"{'target':38s} {'bar':>10s} {'prior':>9s} " + "  ".join(f"{n[-30:]:>34s}" for n in names))
    for i, (key, op, bar) in enumerate(keys):
        cells = []
        for n in names:
            rows = [r["targets"][i] for r in results[n]]
            spread = Spread(tuple(r["figure"] for r in rows))
            met = sum(r["status"] == "met" for r in rows)
            cells.append(f"{sig(spread)} ({met}/{len(rows)})")
        print(f"{key:38s} {op + ' ' + format(bar, 'g'):>10s} {prior[key]:9.4g} " + "  ".join(f"{c:>34s}" for c in cells))
    summary = {}
    for n in names:
        rs = results[n]
        met = [sum(r["status"] == "met" for r in x["targets"]) for x in rs]
        kl = Spread(tuple(x["table"]["kl_per_step"] for x in rs))
        for x in rs:  # the floor of the estimate with the larger effective sample size
            refit = x["floor_refit"]
            x["floor_used"] = (refit["kl_floor_per_step"] if refit and refit["ess"] > x["plan_ess"]
                               else x["kl_floor_per_step"])
            if refit:
                print(f"{x['model']}: floor {x['kl_floor_per_step']:.4f} from the plan (ESS {x['plan_ess']:,.0f}), "
                      f"{refit['kl_floor_per_step']:.4f} refitted on {refit['n']:,} of its own melodies "
                      f"(ESS {refit['ess']:,.0f}); used {x['floor_used']:.4f}")
        floor = Spread(tuple(x["floor_used"] for x in rs))
        ratio = Spread(tuple(x["table"]["kl_per_step"] / x["floor_used"] for x in rs))
        div = Spread(tuple(x["table"]["diversity"] / prior["diversity"] for x in rs))
        nov = Spread(tuple(x["table"]["novelty"] / prior["novelty"] for x in rs))
        minutes = Spread(tuple(x["minutes"] for x in rs))
        print(f"{n}: targets met per seed {met} (of {len(keys)}); KL {kl.format()} nats per step, floor "
              f"{floor.format()}, KL / floor {ratio.format(digits=2)} (largest {ratio.high:.2f}); diversity "
              f"{div.format(percent=True)} of the prior's, novelty {nov.format(percent=True)}; "
              f"{rs[0]['method']}, {max(x['env_steps'] for x in rs):,} env steps, {minutes.format(digits=1)} minutes")
        summary[n] = {"met_per_seed": met, "kl_over_floor_max": ratio.high, "diversity_share_min": div.low,
                      "novelty_share_min": nov.low}
    if args.json:
        out = {"n": args.n, "steps": steps, "seed": args.seed, "prior": prior, "summary": summary,
               "models": {n: results[n] for n in names}}
        Path(args.json).write_text(json.dumps(out, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
