"""Grid sweeps of tuning runs: one trial per grid point and seed, on Ray Tune or one
after another in this process, each trial recorded as a job, then a summary table and plot.

The grid is ``KEY=V1,V2,...`` over ``TuneConfig`` keys (values read as TOML: ``0.1``,
``true``, ``"text"``; bare words are strings), crossed with ``seeds`` seeds (the
config's seed, +1, ...). Every trial's config is checked before any trial starts. The
sweep records itself as a ``sweep`` job and each trial as a ``tune`` job (origin
``sweep``, its ``parent_id`` the sweep's); a trial claims its own row in whatever process
runs it and reports its curves there, so ``rlmusic jobs show`` and the app follow trials
on a cluster too (docs/jobs.md).

Output folder ``OUT``: ``trials/NN-KEY=V.../`` (one tuning run each), ``summary.csv`` and
``summary.json`` (one row per trial: grid point, seed, status, job id, seconds, the final
evaluation), ``summary.png`` (theory reward and KL per trial), and with Ray ``ray/``
(Ray Tune's own records).
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rlmusic.jobs.cluster import ray_session
from rlmusic.jobs.record import JobRecorder, NullRecorder, db_safe, error_text, worker_name
from rlmusic.runtime import json_safe, set_threads
from rlmusic.tuning.config import TuneConfig

SUMMARY_METRICS = ("theory_reward_per_step", "kl_per_step", "kl_per_note", "structure", "diversity",
                   "log_p_prior_per_step")  # first columns of the summary; every other number follows


@dataclass
class SweepConfig:
    """Options of ``rlmusic sweep`` (besides the base ``TuneConfig``)."""

    grid: dict[str, list[Any]] = field(default_factory=dict)  # TuneConfig key -> values, crossed
    seeds: int = 1  # seeds per grid point: the base config's seed, +1, ...
    executor: str = "local"  # ray: trials in parallel on Ray Tune; local: one after another here
    address: str | None = None  # Ray cluster address (None: a local Ray started on demand)
    num_cpus: int | None = None  # CPUs of that local Ray (default 2)
    cpus_per_trial: float = 1.0  # Ray resources a trial holds
    gpus_per_trial: float = 0.0  # GPUs a trial holds on Ray (with --device auto it then tunes on CUDA)
    prior: str | None = None  # prior (KL reference) of every trial (default: the shipped prior)
    device: str = "auto"  # torch device of the trials
    threads: int = 1  # torch CPU threads per trial

    def validate(self) -> None:
        if not self.grid:
            raise ValueError("a sweep needs at least one --grid KEY=V1,V2")
        if self.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {self.seeds}")
        if self.executor not in ("local", "ray"):
            raise ValueError(f"--executor must be local or ray, got {self.executor!r}")
        if self.executor == "local" and (self.address or self.num_cpus):
            raise ValueError("--address and --ray-cpus go with --executor ray")
        if self.address and self.num_cpus:
            raise ValueError("--ray-cpus sizes a local Ray; the cluster at --address has its own CPUs")
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise ValueError(f"cpus per trial must be > 0 and gpus >= 0, got {self.cpus_per_trial}, "
                             f"{self.gpus_per_trial}")


def parse_value(text: str) -> Any:
    """A grid value as TOML reads it (``0.1``, ``3``, ``true``, ``"x"``); else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["beta=0.1,0.5", "steps=16"]`` -> ``{"beta": [0.1, 0.5], "steps": [16]}``."""
    keys = {f.name for f in fields(TuneConfig)}
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, eq, values = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or not values.strip():
            raise ValueError(f"--grid {item!r}: write KEY=V1,V2[,...]")
        if key not in keys:
            raise ValueError(f"--grid {item!r}: {key!r} is not a tuning config key (rlmusic tune --print-config)")
        if key in grid:
            raise ValueError(f"--grid names {key!r} twice")
        grid[key] = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def trial_name(index: int, point: dict[str, Any], seed: int) -> str:
    parts = [f"{k}={v}" for k, v in point.items()] + [f"seed={seed}"]
    return f"{index:02d}-" + "_".join(parts).replace("/", "-").replace(" ", "")


def trial_specs(base: TuneConfig, sweep: SweepConfig, out: Path) -> list[dict[str, Any]]:
    """One spec per grid point and seed: name, point, seed, full config (checked), folder."""
    keys = list(sweep.grid)
    specs = []
    points = itertools.product(*(sweep.grid[k] for k in keys))
    for index, (values, k) in enumerate(itertools.product(list(points), range(sweep.seeds))):
        point = dict(zip(keys, values))
        seed = base.seed + k
        try:
            config = base.replace(**point, seed=seed)
            config.validate()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"trial {point} seed {seed}: {exc}") from None
        name = trial_name(index, point, seed)
        specs.append({"name": name, "point": point, "seed": seed, "config": asdict(config),
                      "out": str((out / "trials" / name).resolve()), "prior": sweep.prior,
                      "device": sweep.device, "threads": sweep.threads})
    return specs


# --------------------------------------------------------------------------- one trial


def trial_recorder(spec: dict[str, Any]) -> JobRecorder | NullRecorder:
    """The trial's own job row, claimed by this process (NullRecorder when unrecorded)."""
    if spec.get("job_id") is None:
        return NullRecorder()
    import db

    engine = db.get_engine(spec["database_url"])
    name = worker_name("trial")
    job = db.claim_job(engine, name, job_id=spec["job_id"])
    if job is None:
        raise ValueError(f"trial job {spec['job_id']} is not queued any more (cancelled?)")
    return JobRecorder(engine, job, name)


def run_trial(spec: dict[str, Any], report=None) -> dict[str, Any]:
    """Run one trial where this is called (this process or a Ray Tune worker); returns its
    summary row. ``report(metrics)`` (Ray Tune's) hears every update's metrics."""
    from rlmusic.tuning.run import tune

    set_threads(spec["threads"])
    start = time.monotonic()
    row: dict[str, Any] = {"trial": spec["name"], **spec["point"], "seed": spec["seed"],
                           "job_id": spec.get("job_id"), "out": spec["out"]}
    recorder = trial_recorder(spec)

    def monitor(status: dict[str, Any]) -> bool:
        if report is not None:
            report({"timesteps": status["timesteps"], **status["metrics"]})
        return recorder.tune_monitor(status)

    with recorder:
        try:
            out = tune(TuneConfig.from_dict(spec["config"]), spec["out"], spec["prior"], device=spec["device"],
                       progress=False, monitor=monitor)
        except Exception as exc:
            recorder.fail(exc)
            return {**row, "status": "failed", "error": error_text(exc), "seconds": time.monotonic() - start}
        if out is None:
            status = recorder.stopped("cancelled")
            return {**row, "status": status, "seconds": time.monotonic() - start}
        final = json.loads((Path(out) / "eval.jsonl").read_text().splitlines()[-1])
        recorder.succeed({**final, "model": str(out)})
    numbers = {k: v for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {**row, "status": "succeeded", "seconds": time.monotonic() - start, **numbers}


def ray_trainable(config: dict[str, Any]) -> None:
    """Ray Tune's function trainable: one trial; its summary row is the last report."""
    from ray import tune as ray_tune

    row = run_trial(config["spec"], report=ray_tune.report)
    ray_tune.report({"summary_row": json.dumps(json_safe(row))})  # a string: Ray keeps it as it is


# --------------------------------------------------------------------------- the sweep


def record_trials(recorder, specs: list[dict[str, Any]]) -> None:
    """A queued ``tune`` job per trial under the sweep's job (nothing when unrecorded)."""
    if recorder.job_id is None:
        return
    import db

    url = recorder.engine.url.render_as_string(hide_password=False)
    for spec in specs:
        spec["database_url"] = url
        spec["job_id"] = db.create_job(recorder.engine, "tune", db_safe({"trial": spec["name"], "point": spec["point"],
                                                                        "seed": spec["seed"], "tune": spec["config"]}),
                                       origin="sweep", output_dir=spec["out"], parent_id=recorder.job_id)


def run_sweep(base: TuneConfig, sweep: SweepConfig, out: str | Path, recorder=None,
              say=print) -> list[dict[str, Any]]:
    """Run every trial (module docstring); returns the summary rows, in trial order."""
    sweep.validate()
    out = Path(out).resolve()
    specs = trial_specs(base, sweep, out)
    busy = [s["out"] for s in specs if Path(s["out"]).exists()]
    if busy:
        raise ValueError(f"{out} already holds trials ({busy[0]} ...): choose another --out")
    recorder = recorder or NullRecorder()
    record_trials(recorder, specs)
    say(f"sweep: {len(specs)} trials ({' x '.join(f'{len(v)} {k}' for k, v in sweep.grid.items())}"
        f" x {sweep.seeds} seeds) on {sweep.executor}")
    rows: list[dict[str, Any]] = []
    if sweep.executor == "local":
        for i, spec in enumerate(specs):
            if recorder.stop_requested:
                say("sweep: cancelled; the trials left are not run")
                break
            rows.append(run_trial(spec))
            say(f"sweep: trial {spec['name']} {rows[-1]['status']} ({rows[-1]['seconds']:.1f} s)")
            recorder.progress((i + 1) / len(specs), step=i + 1, force=True)
    else:
        rows = run_on_ray(specs, sweep, out)
        recorder.progress(1.0, step=len(specs), force=True)
    write_summary(out, rows, list(sweep.grid))
    return rows


def run_on_ray(specs: list[dict[str, Any]], sweep: SweepConfig, out: Path) -> list[dict[str, Any]]:
    """The trials as one Ray Tune grid; their rows from each trial's last report."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no progress tables on the console
    with ray_session(sweep.address, sweep.num_cpus):
        from ray import tune as ray_tune

        resources = {"cpu": sweep.cpus_per_trial, "gpu": sweep.gpus_per_trial}
        tuner = ray_tune.Tuner(
            ray_tune.with_resources(ray_trainable, resources),
            param_space={"spec": ray_tune.grid_search(specs)},
            run_config=ray_tune.RunConfig(storage_path=str(out / "ray"), name="sweep", verbose=0),
        )
        results = tuner.fit()
    rows = {}
    for result in results:
        spec = result.config["spec"]
        if result.metrics and "summary_row" in result.metrics:
            rows[spec["name"]] = json.loads(result.metrics["summary_row"])
        else:  # the trial died before its end (its job says why)
            error = str(result.error).strip().splitlines()[-1] if result.error else "no result"
            rows[spec["name"]] = {"trial": spec["name"], **spec["point"], "seed": spec["seed"],
                                  "job_id": spec.get("job_id"), "out": spec["out"], "status": "failed", "error": error}
    return [rows[s["name"]] for s in specs]


def write_summary(out: Path, rows: list[dict[str, Any]], grid_keys: list[str]) -> tuple[Path, Path]:
    """``summary.csv`` (trial, grid point, seed, status, job, seconds, then the final
    evaluation's numbers), ``summary.json`` and ``summary.png`` of the rows."""
    out.mkdir(parents=True, exist_ok=True)
    head = ["trial", *grid_keys, "seed", "status", "job_id", "seconds"]
    numbers = {k for r in rows for k, v in r.items() if isinstance(v, float) and k not in head}
    columns = head + [k for k in SUMMARY_METRICS if k in numbers] + sorted(numbers - set(SUMMARY_METRICS))
    columns += ["out", "error"]
    with open(out / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps(json_safe(rows), indent=2) + "\n")
    return out / "summary.csv", plot_summary(out / "summary.png", rows)


def plot_summary(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Theory reward per step and KL per step of each trial's final evaluation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [("theory_reward_per_step", "theory reward per step"), ("kl_per_step", "KL to the prior (nats/step)")]
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 0.5 * max(4, len(rows)) + 1.5), squeeze=False)
    names = [r["trial"] for r in rows]
    for ax, (key, label) in zip(axes[0], shown):
        values = [r.get(key) if isinstance(r.get(key), (int, float)) else float("nan") for r in rows]
        ax.barh(range(len(rows)), values, color=["#4c72b0" if r.get("status") == "succeeded" else "#c44e52"
                                                 for r in rows])
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("sweep: final evaluation per trial (red: not succeeded)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
