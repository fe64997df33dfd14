"""``rlmusic targets plan``: what the targets of a tuning config cost before anything trains.

Samples the prior (``-n`` melodies of the config's ``steps``, seeded, with a progress bar on
stderr), computes each target key's per-melody feature (``rlmusic.music.targets``), fits the
information projection ``P ∝ prior · exp(lambda · phi)`` (``rlmusic.tuning.targets``) and
prints per target the prior's figure, the target, lambda, the figure under the projection and
the effective sample size of that target's projection alone; then the projection's effective
sample size and its KL to the prior, the **floor**, per 16th step (``kl_floor_per_step``,
nats) and per melody. ``--json`` writes it all. A target the samples cannot reach is one
line naming it and what to do. docs/targets.md explains the numbers.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.tuning.config import TuneConfig, preset_names, read_table
from rlmusic.tuning.targets import MIN_ESS, TargetPlan, format_plan, parse_targets


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    plan = sub.add_parser("plan", help="fit the projection of the prior onto a config's [targets]: lambda and "
                                       "the KL floor")
    plan.add_argument("--preset", choices=preset_names(),
                      help="tuning preset whose [targets] to plan (default: 'default', which has none)")
    plan.add_argument("--config", help="TOML (or JSON) file of tuning config keys with a [targets] table, "
                                       "on top of the preset")
    plan.add_argument("--prior", help="prior model directory to sample (default: the shipped prior)")
    plan.add_argument("--proposal", metavar="MODEL",
                      help="sample this model (a run or model directory tuned from the prior) instead of the prior, "
                           "each melody weighed by prior / proposal: the same projection and floor, estimated "
                           "where the projection's mass lies (targets the prior's own samples reach too rarely)")
    plan.add_argument("-n", type=int, default=10_000, help="prior melodies to sample (default 10,000)")
    plan.add_argument("--steps", type=int, help="16th-note steps per melody (default: the config's steps)")
    plan.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same melodies")
    plan.add_argument("--min-ess", type=float, default=MIN_ESS,
                      help=f"refuse a projection whose effective sample size is below this (default {MIN_ESS:g})")
    plan.add_argument("--json", help="write the plan (every row, the floor, the settings) to this JSON file")
    plan.add_argument("--no-progress", action="store_true", help="no progress bar while sampling")
    add_device(plan)
    add_threads(plan)


def config_from_args(args: argparse.Namespace) -> TuneConfig:
    """The preset (default ``default``), ``--config`` on top, then ``--steps``."""
    config = TuneConfig.preset(args.preset or "default")
    if args.config:
        config = config.replace(**read_table(args.config))
    if args.steps is not None:
        config = config.replace(steps=args.steps)
    config.validate()
    return config


def plan_targets(args: argparse.Namespace) -> tuple[TargetPlan, dict[str, Any]]:
    """Sample, compute the features and fit; returns the plan and the settings it used."""
    from rlmusic.evaluation.table import load_reference_prior
    from rlmusic.models.checkpoint import default_prior_dir, model_path, model_ref
    from rlmusic.runtime import resolve_device
    from rlmusic.tuning.target_training import music_key, plan_for_config

    config = config_from_args(args)
    if not parse_targets(config.targets):
        where = f"--config {args.config}" if args.config else f"preset {args.preset or 'default'!r}"
        raise ValueError(f"{where} has no [targets] table: give one (\"KEY\" = \">= X\") or use "
                         "--preset rl-tuner-targets")
    if args.n < 2:
        raise ValueError(f"-n must be >= 2 melodies, got {args.n}")
    if args.min_ess < 0:
        raise ValueError(f"--min-ess must be >= 0, got {args.min_ess}")
    apply_threads(args)
    prior_dir = model_path(args.prior) if args.prior else default_prior_dir()
    prior = load_reference_prior(prior_dir, resolve_device(args.device), vocab=config.vocab)
    if config.steps > prior.config.max_steps:
        warnings.warn(f"steps={config.steps} exceeds the prior's max_steps={prior.config.max_steps}: "
                      "it was never trained on melodies this long", stacklevel=2)
    proposal = None
    if args.proposal:
        from rlmusic.models.checkpoint import load_model

        proposal = load_model(model_path(args.proposal), device=prior.device, vocab=config.vocab)
    plan = plan_for_config(config, prior, prior_dir, args.n, seed=args.seed, min_ess=args.min_ess,
                           progress=not args.no_progress, proposal=proposal)
    settings = {"prior": model_ref(prior_dir), "preset": args.preset, "config": args.config,
                "proposal": model_ref(model_path(args.proposal)) if args.proposal else None,
                "seed": args.seed, "key": music_key(config), "min_ess": args.min_ess}
    return plan, settings


def main(args: argparse.Namespace) -> int:
    plan, settings = plan_targets(args)
    source = settings["prior"] if settings["proposal"] is None else (
        f"{settings['proposal']}, weighed by prior / proposal (prior {settings['prior']})")
    print(f"targets plan: {plan.n:,} melodies of {plan.steps} steps sampled from {source} "
          f"(seed {settings['seed']})")
    print(format_plan(plan))
    if args.json:
        from rlmusic.runtime import json_safe

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(json_safe({**plan.to_dict(), **settings}), indent=2) + "\n")
    return 0
