"""``rlmusic tune``: fine-tune a model with PPO from a preset or a TOML config.

``--reward-model DIR`` tunes against a reward model (``rlmusic reward fit``) behind its
over-optimisation guard; given alone (no ``--preset``/``--config``) it uses the
``human`` preset. ``--print-config`` prints every key with its value and documentation.
Ctrl-C stops at the next env step and keeps a checkpoint; ``--resume`` continues it, and
``--resume --timesteps N`` extends a finished run.

A config with a ``[targets]`` table trains to their projection (docs/targets.md): the run
first samples ``targets_plan_n`` prior melodies and prints the plan that ``rlmusic targets
plan`` prints (lambda per target, the KL floor), then pays ``lambda . phi`` at the end of each
melody with beta fixed at 1 and refits lambda after each rollout (``target/<KEY>``,
``lambda/<KEY>``, ``kl_floor_per_step`` in ``metrics.csv``). ``--method dpg`` (or ``method = "dpg"``)
trains to it by distributional policy gradient instead (``rlmusic.tuning.dpg``; a config
without targets is refused in one line).

Every run records itself in the jobs table (status, progress, metrics, output folder:
``rlmusic jobs show ID``, the app's Jobs page), and ``rlmusic jobs cancel ID`` stops it
like Ctrl-C; when the database is not set up the run says so in one line and goes on.
``rlmusic jobs submit tune [these options]`` queues the same run for a worker.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.jobs.record import command_recorder
from rlmusic.models.checkpoint import load_provenance
from rlmusic.tuning.checkpoints import read_evals, stored_run
from rlmusic.tuning.config import TuneConfig, preset_names, read_table
from rlmusic.tuning.dpg_run import DPGRun
from rlmusic.tuning.run import TuneRun

OVERRIDES = (("timesteps", "timesteps"), ("steps", "steps"), ("n_envs", "n_envs"), ("seed", "seed"),
             ("method", "method"), ("dpo_rater", "rater"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output folder: tuned model, logs, checkpoints (required unless --print-config)")
    parser.add_argument("--prior", help="model directory to start from and stay close to (default: the shipped prior)")
    parser.add_argument("--preset", choices=preset_names(),
                        help="named config shipped in the package (default: 'default'; 'human' with --reward-model alone)")
    parser.add_argument("--config", help="TOML (or JSON) file of config keys, on top of the preset")
    parser.add_argument("--print-config", action="store_true",
                        help="print every config key with its value and documentation, then exit")
    parser.add_argument("--timesteps", type=int, help="total env steps (overrides the config)")
    parser.add_argument("--steps", type=int, help="16th-note steps per melody T (overrides the config)")
    parser.add_argument("--n-envs", type=int, help="melodies generated in parallel (overrides the config)")
    parser.add_argument("--seed", type=int, help="random seed of torch, numpy and SB3 (overrides the config)")
    parser.add_argument("--reward-model", help="reward model directory (rlmusic reward fit) to tune against")
    parser.add_argument("--method", choices=("ppo", "dpg", "dpo"),
                        help="how the run trains (overrides the config's method, default ppo): ppo (RecurrentPPO; "
                             "with [targets], reward lambda . phi, beta 1, lambda refitted online), dpg "
                             "(distributional policy gradient to a [targets] projection; dpg_* keys) or dpo "
                             "(preference optimisation on the raters' comparisons and star pairs, the prior as "
                             "reference, no reward model; online with dpo_online_pairs and --reward-model; dpo_* keys)")
    parser.add_argument("--rater", help="--method dpo: only this rater's judgements (sets dpo_rater)")
    add_device(parser)
    add_threads(parser)
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (with --timesteps: extend it)")
    parser.add_argument("--force", action="store_true",
                        help="allow steps beyond the prior's max_steps; restart over an existing run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--stop-after-checkpoints", type=int, help=argparse.SUPPRESS)  # tests: simulate a kill


def config_from_args(args: argparse.Namespace) -> TuneConfig:
    """Preset, then ``--config``, then the flags; on ``--resume``, the stored run's config
    with the flags on top."""
    overrides: dict[str, Any] = {key: getattr(args, flag) for key, flag in OVERRIDES
                                 if getattr(args, flag, None) is not None}
    stored = stored_run(args.out) if getattr(args, "resume", False) and args.out else None
    if stored is not None and not (args.preset or args.config):  # continue with the stored config
        return TuneConfig.from_dict(stored["config"]).replace(**overrides)
    preset = args.preset or ("human" if args.reward_model and not args.config and "human" in preset_names()
                             else "default")
    config = TuneConfig.preset(preset)
    if args.config:
        config = config.replace(**read_table(args.config))
    return config.replace(**overrides)


def load_reward_model(directory: str, config: TuneConfig, device: str):
    """The guarded reward model of ``directory`` (the config's ``[guard]`` table)."""
    from rlmusic.feedback.guard import load_guarded
    from rlmusic.runtime import resolve_device

    return load_guarded(directory, resolve_device(device), config.guard)


def check(args: argparse.Namespace, config: TuneConfig) -> None:
    """Everything that can be checked before a run starts (``ValueError`` names it)."""
    if not args.out:
        raise ValueError("--out is required (the folder for the tuned model, logs and checkpoints)")
    config.validate()
    if config.guard:  # unknown [guard] keys raise here, with or without a reward model
        from rlmusic.feedback.guard import GuardConfig

        GuardConfig.from_dict(config.guard)


def replaces_a_model(out: Path, config: TuneConfig, args: argparse.Namespace) -> bool:
    """Whether this run would write over a finished model in ``out``: a restart
    (``--force``) or an extension (``--resume`` with more timesteps than it was trained for)."""
    if not (out / "config.json").is_file():
        return False
    if args.force and not args.resume:
        return True
    trained = (load_provenance(out).extra or {}).get("timesteps", 0)
    return args.resume and config.total_timesteps > int(trained)


def refuse_if_queued(out: Path) -> None:
    """Extending or restarting a finished run replaces its model: refuse while the rating
    queue (``RLMUSIC_DATABASE_URL``) holds clips sampled from it, so no rating is ever
    stored against a model other than the one that made its clip."""
    import db

    url = db.database_url()
    path = db.sqlite_path(url)
    if path is not None and not path.is_file():
        return  # no database yet: nothing can be queued
    engine = db.get_engine(url)
    if db.current_revision(engine) is None:
        return  # a database without the schema holds no clips
    queued = db.clips_of_model(engine, out)
    if queued:
        raise ValueError(
            f"the model in {out} has {queued} clips in the rating queue ({db.redacted(url)}); "
            f"tuning on would change the model their ratings are stored against: copy the folder "
            f"(cp -r {out} {out}-more) and extend the copy")


def prepare(args: argparse.Namespace, config: TuneConfig) -> TuneRun | DPGRun:
    """The run ``args`` ask for, built and checked (prior, reward model, resume) but not
    started: a mistake raises here, before anything is recorded or trained."""
    apply_threads(args)
    reward_dir = args.reward_model
    stored = stored_run(args.out) if args.resume else None
    if stored is not None and stored.get("reward_model"):
        if reward_dir and Path(reward_dir).resolve() != Path(stored["reward_model"]).resolve():
            raise ValueError(f"--resume: the run was tuned against {stored['reward_model']}, not {reward_dir}")
        reward_dir = stored["reward_model"]
    if replaces_a_model(Path(args.out), config, args):
        refuse_if_queued(Path(args.out))
    if config.method == "dpo":
        from rlmusic.cli.tune_dpo import prepare_dpo

        reward_model = load_reward_model(reward_dir, config, args.device) if reward_dir else None
        return prepare_dpo(args, config, reward_model, reward_dir)
    if config.method == "dpg":
        if reward_dir:
            raise ValueError("--method dpg trains to the projection of the [targets] alone: a reward model has no "
                             "place in it (use --method ppo)")
        return DPGRun(config, args.out, args.prior, device=args.device, resume=args.resume, force=args.force,
                      progress=not args.no_progress)
    reward_model = load_reward_model(reward_dir, config, args.device) if reward_dir else None
    return TuneRun(config, args.out, args.prior, reward_model=reward_model, reward_model_dir=reward_dir,
                   device=args.device, resume=args.resume, force=args.force, progress=not args.no_progress)


def train(run: TuneRun | DPGRun, args: argparse.Namespace, recorder) -> Path | None:
    """Train ``run``, reporting to ``recorder`` (a ``rlmusic.jobs.record`` recorder:
    progress and metrics after every update; a cancel stops the run at the next rollout
    with a checkpoint). Returns the tuned model's folder, or None when stopped."""
    run.monitor = recorder.tune_monitor
    return run.train(progress=not args.no_progress, stop_after_checkpoints=args.stop_after_checkpoints)


def final_metrics(out: str | Path) -> dict[str, Any]:
    """A finished run's last evaluation (``eval.jsonl``) and where its model is."""
    result = read_evals(Path(out))[-1]
    return {**result, "model": str(Path(out).resolve())}


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.print_config:
        print(config.describe())
        return 0
    check(args, config)
    run = prepare(args, config)
    options = {k: v for k, v in vars(args).items() if not k.startswith("_")}
    with command_recorder("tune", {"options": options, "tune": asdict(config)}, args.out, "tune") as recorder:
        out = train(run, args, recorder)
        if out is None:
            status = recorder.stopped("Ctrl-C")
            print(f"tune: stopped{' (cancelled)' if status == 'cancelled' and recorder.cancel_requested else ''}; "
                  f"a checkpoint is in {args.out}/checkpoints: continue with "
                  f"rlmusic tune --out {args.out} --resume")
            return 0
        result = final_metrics(out)
        recorder.succeed(result)
    floor = f"; floor {result['kl_floor_per_step']:.3f}" if "kl_floor_per_step" in result else ""
    print(f"tune: wrote the tuned model to {out} (KL to the prior {result['kl_per_step']:.3f} nats per step{floor}, "
          f"{result['kl_per_note']:.3f} per note)")
    return 0
