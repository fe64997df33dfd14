"""``rlmusic sweep``: a grid of tuning runs, one trial per grid point and seed, on Ray Tune
(``--executor ray``: a local Ray started on demand, or ``--address`` of a cluster) or one
after another in this process (``--executor local``); each trial is recorded as a job
under the sweep's job, and ``OUT/summary.csv`` / ``summary.png`` hold every trial's final
evaluation (``rlmusic.jobs.sweep``).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict

from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.jobs.record import command_recorder
from rlmusic.jobs.sweep import SUMMARY_METRICS, SweepConfig, parse_grid, run_sweep
from rlmusic.tuning.config import TuneConfig, preset_names, read_table

OVERRIDES = ("timesteps", "steps", "n_envs", "seed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=preset_names(), default="default",
                        help="tuning preset every trial starts from (default: default)")
    parser.add_argument("--config", help="TOML (or JSON) file of config keys, on top of the preset")
    parser.add_argument("--grid", action="append", required=True, metavar="KEY=V1,V2",
                        help="a config key and its values (repeat for more keys: the grid is their product)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per grid point: the config's seed, +1, ...")
    parser.add_argument("--executor", choices=("ray", "local"), required=True,
                        help="ray: trials in parallel on Ray Tune; local: one after another in this process")
    parser.add_argument("--address", help="with --executor ray: the Ray cluster (default: start a local Ray)")
    parser.add_argument("--ray-cpus", type=int, help="with --executor ray and no --address: CPUs of the local Ray (default 2)")
    parser.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray CPUs each trial holds (default 1)")
    parser.add_argument("--gpus-per-trial", type=float, default=0.0, help="Ray GPUs each trial holds (default 0)")
    parser.add_argument("--out", required=True, help="sweep folder: trials/, summary.csv, summary.png")
    parser.add_argument("--prior", help="model directory every trial starts from (default: the shipped prior)")
    parser.add_argument("--timesteps", type=int, help="total env steps per trial (overrides the config)")
    parser.add_argument("--steps", type=int, help="16th-note steps per melody (overrides the config)")
    parser.add_argument("--n-envs", type=int, help="melodies generated in parallel (overrides the config)")
    parser.add_argument("--seed", type=int, help="first seed (overrides the config)")
    add_device(parser)
    add_threads(parser)


def main(args: argparse.Namespace) -> int:
    apply_threads(args)
    base = TuneConfig.preset(args.preset)
    if args.config:
        base = base.replace(**read_table(args.config))
    base = base.replace(**{k: getattr(args, k) for k in OVERRIDES if getattr(args, k) is not None})
    sweep = SweepConfig(grid=parse_grid(args.grid), seeds=args.seeds, executor=args.executor, address=args.address,
                        num_cpus=args.ray_cpus, cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                        prior=args.prior, device=args.device, threads=args.threads or 1)
    sweep.validate()
    base.validate()
    options = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    with command_recorder("sweep", {"options": options, "sweep": asdict(sweep), "tune": asdict(base)},
                          args.out, "sweep") as recorder:
        rows = run_sweep(base, sweep, args.out, recorder, say=lambda line: print(line, flush=True))
        ok = [r for r in rows if r["status"] == "succeeded"]
        if ok:
            recorder.succeed({"trials": len(rows), "succeeded": len(ok)})
        else:
            recorder.fail(f"no trial succeeded ({len(rows)} trials)")
    for row in rows:
        shown = ", ".join(f"{k} {row[k]:.3f}" for k in SUMMARY_METRICS[:2] if isinstance(row.get(k), float))
        print(f"sweep: {row['trial']}: {row['status']}" + (f" ({shown})" if shown else "")
              + (f": {row['error']}" if row.get("error") else ""))
    print(f"sweep: {len(ok)} of {len(rows)} trials succeeded; summary in {args.out}/summary.csv and summary.png")
    return 0 if ok else 1
