"""The kinds of queued jobs: ``tune``, ``round`` and ``generate``, each parsed by its own
command's options (``rlmusic jobs submit tune [rlmusic tune options]``), checked when
submitted, and run by a worker.

A job stores the options it was submitted with (``config["argv"]``, paths made
absolute) and its output folder (``--out``, else ``db.default_output_dir``). A
worker runs ``argv --out OUTPUT_DIR`` (plus ``--device`` when the job names none) with
the command's own code: a tuning job without a progress bar, and, when it was claimed
before (its worker was lost), with ``--resume`` from its last checkpoint; a round claimed
again starts over (``--force``); generation simply runs again (same seed, same clips).
"""

from __future__ import annotations

import argparse
import importlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

KINDS = ("tune", "round", "generate")  # job kinds a worker runs, each a command of rlmusic.cli
PATH_OPTIONS = {  # options whose value is a path: made absolute when submitted
    "tune": ("--out", "--prior", "--config", "--reward-model"),
    "round": ("--out", "--prior", "--from-model", "--config"),
    "generate": ("--out", "--model", "--primer"),
}


class OptionsParser(argparse.ArgumentParser):
    """A command's parser whose mistakes raise ``ValueError`` (one line) instead of exiting."""

    def error(self, message: str):
        raise ValueError(f"{self.prog}: {message}")


def command(kind: str):
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; valid: {', '.join(KINDS)}")
    return importlib.import_module(f"rlmusic.cli.{kind}")


def parse(kind: str, argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed by the options of ``rlmusic KIND``."""
    parser = OptionsParser(prog=f"rlmusic jobs submit {kind}")
    command(kind).add_arguments(parser)
    return parser.parse_args(argv)


def has_option(argv: list[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in argv)


def option_value(argv: list[str], option: str) -> str | None:
    """The last value ``argv`` gives ``option`` (``--opt V`` or ``--opt=V``), else None."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        elif arg == option and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def absolute_paths(kind: str, argv: list[str]) -> list[str]:
    """``argv`` with the values of its path options made absolute (a worker may run
    elsewhere); ``--opt VALUE`` and ``--opt=VALUE`` both."""
    out, i = [], 0
    paths = PATH_OPTIONS[kind]
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in paths and eq:
            out.append(f"{name}={Path(value).expanduser().resolve()}")
        elif arg in paths and i + 1 < len(argv):
            out += [arg, str(Path(argv[i + 1]).expanduser().resolve())]
            i += 1
        else:
            out.append(arg)
        i += 1
    return out


def check(kind: str, argv: list[str]) -> dict[str, Any]:
    """Check a job's options as its command would before running (``ValueError`` names
    the problem); returns the job's config: ``argv`` (paths absolute), and for a tuning
    job the full ``TuneConfig`` it will run with."""
    argv = absolute_paths(kind, list(argv))
    given_out = has_option(argv, "--out")
    args = parse(kind, argv if given_out else [*argv, "--out", "JOB_OUTPUT_FOLDER"])  # set when queued
    config: dict[str, Any] = {"argv": argv}
    if kind == "tune":
        if args.print_config:
            raise ValueError("--print-config prints a config and runs nothing: use rlmusic tune --print-config")
        tune = command("tune")
        tune_config = tune.config_from_args(args)
        tune.check(args, tune_config)
        config["tune"] = asdict(tune_config)
    elif kind == "round":
        from rlmusic.tuning.config import preset_names

        command("round").configs_from_file(args.config)
        if args.preset not in preset_names():
            raise ValueError(f"unknown preset {args.preset!r}; valid: {', '.join(preset_names())}")
    elif kind == "generate":
        command("generate").check(args)
    return config


def finished_tune(out: Path, total_timesteps: int) -> bool:
    """A tuning run in ``out`` saved its model at ``total_timesteps`` (its job ended
    before it was recorded as done)."""
    metas = sorted((out / "checkpoints").glob("step_*.json")) if (out / "checkpoints").is_dir() else []
    return ((out / "model.safetensors").is_file() and bool(metas)
            and json.loads(metas[-1].read_text())["num_timesteps"] >= total_timesteps)


def run_job(job: dict[str, Any], recorder, device: str) -> dict[str, Any] | None:
    """A worker's runner: run the job's command with its options; its final metrics, or
    None when it stopped before the end (see the module docstring)."""
    kind = job["kind"]
    import db

    out = Path(job["output_dir"] or db.default_output_dir(job["id"]))
    argv = [*job["config"]["argv"], "--out", str(out)]
    if not has_option(argv, "--device"):
        argv += ["--device", device]
    again = job["attempts"] > 1
    if kind == "tune":
        tune = command("tune")
        from rlmusic.tuning.checkpoints import stored_run

        if again and stored_run(out) is not None:
            argv.append("--resume")
        args = parse(kind, [*argv, "--no-progress"])
        config = tune.config_from_args(args)
        tune.check(args, config)
        if again and finished_tune(out, config.total_timesteps):
            recorder.log(f"the run in {out} had already finished")
            return tune.final_metrics(out)
        if args.resume:
            recorder.log(f"resuming the run in {out} from its last checkpoint")
        result = tune.train(tune.prepare(args, config), args, recorder)
        if result is None:
            return None
        metrics = tune.final_metrics(result)
        print(f"tune: wrote the tuned model to {result} (KL {metrics['kl_per_step']:.3f} nats per step)")
        return metrics
    if kind == "round":
        args = parse(kind, [*argv, "--force"] if again else argv)
        summary = command("round").run(args, recorder)
        return {"round_id": summary["round_id"], "tuned_model": summary["tuned_model"]}
    return command("generate").run(parse(kind, argv), recorder)
