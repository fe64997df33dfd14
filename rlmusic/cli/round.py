"""``rlmusic round --out DIR``: one feedback round (``rlmusic.feedback.rounds``) on the
ratings database: every judgement so far fits a reward model, the model is tuned against
it, and a batch of its clips goes back in the rating queue.

The round runs as a job of the jobs table (``running`` with heartbeats and the tuning's
progress, then ``succeeded``, ``failed`` with its error, or ``cancelled``), so a failed
round is on record; ``rlmusic jobs cancel ID`` stops its tuning cleanly; ``--force``
reuses its folder. ``rlmusic jobs submit round [these options]`` queues one for a worker.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rlmusic.cli.generate import enqueue_rows, register_model
from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.feedback.fit import RewardModelConfig
from rlmusic.feedback.guard import GuardConfig
from rlmusic.feedback.rounds import run_round
from rlmusic.jobs.record import JobRecorder, db_safe, worker_name
from rlmusic.models.checkpoint import load_model
from rlmusic.runtime import read_table
from rlmusic.tuning.config import TuneConfig


class DbStore:
    """A ``RoundStore`` backed by the ratings database (``db``). The round is recorded as
    the job ``recorder`` holds (a worker's), else as a new job of its own."""

    def __init__(self, engine=None, recorder: JobRecorder | None = None):
        import db

        self.db = db
        self.engine = engine or db.get_engine()
        db.check_schema(self.engine)
        self.recorder, self.own_recorder = recorder, recorder is None

    def star_rows(self) -> list[dict[str, Any]]:
        return self.db.star_rows(self.engine)

    def pair_rows(self) -> list[dict[str, Any]]:
        return self.db.pair_rows(self.engine)

    def start_round(self, out: Path, config: dict[str, Any]) -> int:
        out = str(Path(out).resolve())
        if self.recorder is None:
            name = worker_name("round")
            job_id = self.db.create_job(self.engine, "round", db_safe({"out": out, **config}), worker=name,
                                        output_dir=out)
            self.recorder = JobRecorder(self.engine, self.db.get_job(self.engine, job_id), name).start()
        else:
            self.db.update_job(self.engine, self.recorder.job_id, output_dir=out)
        return self.recorder.job_id

    def tune_monitor(self, status: dict[str, Any]) -> bool:
        return self.recorder.tune_monitor(status)

    def record_round(self, handle: int, reward_model_dir: Path, rating_ids: list[int],
                     comparison_ids: list[int], parent_model: Path) -> int:
        parent_id = register_model(self.engine, Path(parent_model))
        return self.db.record_round(self.engine, reward_model_dir=str(Path(reward_model_dir).resolve()),
                                    rating_ids=rating_ids, comparison_ids=comparison_ids,
                                    parent_model_id=parent_id, notes=f"job {handle}")

    def record_tuned(self, round_id: int, tuned_dir: Path, parent_model: Path) -> int:
        tuned_id = register_model(self.engine, Path(tuned_dir))
        self.db.set_round_tuned_model(self.engine, round_id, tuned_id)
        return tuned_id

    def enqueue(self, rows: list[dict], clips_dir: Path, model_dir: Path, audio: bool) -> None:
        enqueue_rows(self.engine, rows, Path(clips_dir), Path(model_dir), load_model(model_dir).vocab, audio=audio)

    def prioritise(self, scores: dict[int, float]) -> None:
        self.db.set_clip_priority(self.engine, scores)

    def finish_round(self, handle: int, error: str | None, summary: dict[str, Any] | None) -> None:
        recorder = self.recorder
        if self.own_recorder:
            recorder.stop()
        if error is not None and error.startswith("KeyboardInterrupt"):
            recorder.stopped(error)  # Ctrl-C, a cancel, or its worker asked to stop
        elif error is not None:
            recorder.fail(error)
        else:
            recorder.succeed({"round_id": summary["round_id"], "tuned_model": summary["tuned_model"],
                              "n_ratings": summary["n_ratings"], "n_comparisons": summary["n_comparisons"],
                              "after": summary["after"]})


def configs_from_file(path: str | Path | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(tune keys, ``[reward]`` table, ``[guard]`` table) of a round's TOML (or JSON) file."""
    if path is None:
        return {}, {}, {}
    data = read_table(path)
    reward, guard = data.pop("reward", {}), data.pop("guard", {})
    for name, table in (("reward", reward), ("guard", guard)):
        if not isinstance(table, dict):
            raise ValueError(f"round config key {name!r} must be a table, got {table!r}")
    return data, reward, guard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="round folder: reward_model/, model/, clips/, round.json")
    parser.add_argument("--prior", help="KL reference and reward-model features (default: the shipped prior)")
    parser.add_argument("--from-model", help="model to tune from (default: --prior): the last round's model/")
    parser.add_argument("--preset", default="default", help="tuning preset the round starts from (default: default)")
    parser.add_argument("--config", help="TOML: TuneConfig keys at the top, reward model keys under [reward], "
                                         "guard keys under [guard]")
    parser.add_argument("--timesteps", type=int, help="PPO env steps (overrides the config)")
    parser.add_argument("--steps", type=int, help="steps per melody (overrides the config)")
    parser.add_argument("--n-clips", type=int, default=64, help="clips generated and enqueued after tuning")
    parser.add_argument("--active", action="store_true",
                        help="active selection: queue priority = ensemble disagreement of each new clip")
    parser.add_argument("--no-audio", action="store_true", help="enqueue without rendering audio (the app renders)")
    parser.add_argument("--seed", type=int, help="seed of tuning and generation (overrides the config)")
    parser.add_argument("--force", action="store_true", help="reuse --out when it holds an earlier (failed) round")
    add_device(parser)
    add_threads(parser)
    parser.add_argument("--progress", action="store_true", help="show the tuning progress bar")


def main(args: argparse.Namespace) -> int:
    run(args, None)
    return 0


def run(args: argparse.Namespace, recorder: JobRecorder | None) -> dict[str, Any]:
    """One round as ``args`` say, recorded as ``recorder``'s job (a worker's) or its own;
    returns the round's summary (``round.json``)."""
    tune_keys, reward_keys, guard_keys = configs_from_file(args.config)
    for key, value in (("timesteps", args.timesteps), ("steps", args.steps), ("seed", args.seed)):
        if value is not None:
            tune_keys[key] = value
    apply_threads(args)
    from rlmusic.tuning.config import preset_names

    preset = args.preset if args.preset in preset_names() else None
    if preset is None:
        raise ValueError(f"unknown preset {args.preset!r}; valid: {', '.join(preset_names())}")
    tune_config = TuneConfig.preset(preset, **tune_keys)
    guard = GuardConfig.from_dict({**tune_config.guard, **guard_keys})
    summary = run_round(
        args.out, DbStore(recorder=recorder), prior=args.prior, from_model=args.from_model, tune_config=tune_config,
        reward_config=RewardModelConfig.from_dict(reward_keys), guard=guard, n_clips=args.n_clips,
        active=args.active, audio=not args.no_audio, device=args.device, progress=args.progress, force=args.force,
    )
    before, after = summary["before"] or {}, summary["after"] or {}
    nan = float("nan")
    print(f"round {summary['round_id']}: tuned {summary['tuned_model']} (KL {after.get('kl_per_step', nan):.3f} "
          f"nats per step; theory reward per step {before.get('theory_reward_per_step', nan):.3f} -> "
          f"{after.get('theory_reward_per_step', nan):.3f}); enqueued {len(summary['clip_ids'])} clips")
    guard_report = summary["guard"]
    if guard_report and guard_report["triggered"]:
        print(f"round {summary['round_id']}: {guard_report['events'][-1]['message']}")
    return summary
