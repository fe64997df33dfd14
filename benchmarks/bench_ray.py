"""Ray against this process alone, on this machine: a sweep of tuning trials and batch
generation, side by side in one run.

    .venv/bin/python benchmarks/bench_ray.py [--trials 2] [--timesteps 2048] [--clips 2048]
                                             [--audio-clips 64] [--cpus 2]

- sweep: ``--trials`` trials of the default preset (shipped prior, T=32, 16 envs,
  ``--timesteps`` env steps each, one final evaluation of 32 melodies), a grid over beta;
  local = one after another in this process, ray = Ray Tune on a local Ray of ``--cpus``
  CPUs (one CPU per trial), both through ``rlmusic.jobs.sweep.run_sweep``;
- generation: ``--clips`` clips of 64 steps from the shipped prior written as MIDI with
  their manifest (chunks of 128), and ``--audio-clips`` clips also rendered to OGG; local =
  ``generate_clips`` in this process, ray = the same with ``executor=RayExecutor()`` (one task per CPU,
  same chunks and seeds: the outputs are checked equal).

Ray's start (``ray.init`` of a local Ray) is timed on its own; the Ray figures exclude it
and the line "with start" adds it. Every process uses one torch thread.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from rlmusic.jobs.cluster import ray_session
from rlmusic.jobs.distributed import RayExecutor
from rlmusic.jobs.sweep import SweepConfig, run_sweep
from rlmusic.models.generate import generate_clips, read_manifest
from rlmusic.tuning.config import TuneConfig


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2, help="sweep trials (a grid over beta)")
    ap.add_argument("--timesteps", type=int, default=2048, help="env steps per trial")
    ap.add_argument("--clips", type=int, default=2048, help="clips generated as MIDI")
    ap.add_argument("--audio-clips", type=int, default=64, help="clips generated as MIDI + OGG audio")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="bench_ray_"))
    base = TuneConfig.preset("default").replace(steps=32, n_envs=16, timesteps=args.timesteps, eval_every=0,
                                                eval_melodies=32, checkpoint_every=0, eval_corpus="")
    betas = [round(0.05 * (k + 1), 2) for k in range(args.trials)]

    finals = {}

    def sweep(executor: str) -> float:
        cfg = SweepConfig(grid={"beta": betas}, executor=executor, device="cpu", threads=1)
        seconds, rows = timed(run_sweep, base, cfg, root / f"sweep_{executor}", say=lambda line: None)
        assert all(r["status"] == "succeeded" for r in rows), rows
        finals[executor] = [(r["theory_reward_per_step"], r["kl_per_step"]) for r in rows]
        return seconds

    def generate(executor: str, n: int, audio: str | None) -> float:
        out = root / f"gen_{executor}_{audio}"
        ray = RayExecutor(num_cpus=args.cpus) if executor == "ray" else None
        seconds, _ = timed(generate_clips, None, n, out, steps=64, seed=0, audio_format=audio, device="cpu",
                           batch_size=128 if audio is None else 8, executor=ray)
        return seconds

    local = {"sweep": sweep("local"), "midi": generate("local", args.clips, None),
             "audio": generate("local", args.audio_clips, "ogg")}
    start = time.perf_counter()
    with ray_session(num_cpus=args.cpus):
        startup = time.perf_counter() - start
        ray = {"sweep": sweep("ray"), "midi": generate("ray", args.clips, None),
               "audio": generate("ray", args.audio_clips, "ogg")}
    for audio in (None, "ogg"):
        a, b = read_manifest(root / f"gen_local_{audio}"), read_manifest(root / f"gen_ray_{audio}")
        assert a == b, "ray and local generation differ"
    load = os.getloadavg()
    print(f"cpus={args.cpus} (local Ray), machine: {os.cpu_count()} cores, load average {load[0]:.1f} at the end")
    print(f"ray start (local, {args.cpus} CPUs): {startup:.1f} s")
    print(f"{'work':<40} {'local s':>8} {'ray s':>8} {'ray/local':>10} {'ray+start/local':>16}")
    work = {"sweep": f"sweep, {args.trials} trials x {args.timesteps} env steps",
            "midi": f"generate {args.clips} clips (MIDI)", "audio": f"generate {args.audio_clips} clips (MIDI+OGG)"}
    for key, label in work.items():
        print(f"{label:<40} {local[key]:>8.1f} {ray[key]:>8.1f} {ray[key] / local[key]:>10.2f} "
              f"{(ray[key] + startup) / local[key]:>16.2f}")
    print(f"generation throughput, clips/s: MIDI local {args.clips / local['midi']:.0f}, ray "
          f"{args.clips / ray['midi']:.0f}; MIDI+OGG local {args.audio_clips / local['audio']:.1f}, "
          f"ray {args.audio_clips / ray['audio']:.1f}")
    print("ray and local generation wrote identical manifests")
    same = finals["ray"] == finals["local"]
    print(f"sweep trials' final evaluation (theory reward, KL per step) on ray and local: "
          f"{'identical' if same else 'DIFFERENT'}: {finals['ray']}" + ("" if same else f" vs {finals['local']}"))


if __name__ == "__main__":
    main()
