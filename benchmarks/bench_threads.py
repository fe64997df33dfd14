"""Is one torch thread a safe default? The real tuning loop, threads 1 vs torch's default,
on a quiet machine and under background load, measured side by side in one run.

Each measurement is a fresh process running ``rlmusic.tuning.run.TuneRun`` (the code
behind ``rlmusic tune``) on the shipped prior for ``--timesteps`` env steps (T=32, 16
envs, the default theory rules, evaluation of 8 melodies at start and end). The process
is given ``--threads 1`` (the default of every rlmusic command) or ``--threads 0``
(torch's own choice: one thread per core). "Busy" runs the same while ``--hogs`` other
processes spin on the CPU (a stand-in for the other jobs of a shared machine). Settings
alternate (ABAB...) so drift in the machine's load hits all alike.

    .venv/bin/python benchmarks/bench_threads.py [--timesteps 4096] [--repeats 2] [--hogs 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def hog(stop) -> None:
    """Spin on one core until told to stop (pure Python: one thread, no sleeping)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def worker(threads: int, timesteps: int) -> None:
    """Run the tuning loop once in this process and print env steps per second as JSON."""
    from rlmusic.runtime import set_threads
    from rlmusic.tuning.config import TuneConfig
    from rlmusic.tuning.run import TuneRun

    set_threads(threads or None)
    import torch

    config = TuneConfig(steps=32, n_envs=16, timesteps=timesteps, eval_every=0, eval_melodies=8,
                        checkpoint_every=0, eval_corpus="none")
    with tempfile.TemporaryDirectory() as out:
        run = TuneRun(config, Path(out) / "run", device="cpu")
        start = time.perf_counter()
        run.train(progress=False)
        seconds = time.perf_counter() - start
    print(json.dumps({"threads": torch.get_num_threads(), "steps_per_s": config.total_timesteps / seconds}))


def measure(threads: int, timesteps: int) -> tuple[int, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, __file__, "--worker", str(threads), "--timesteps", str(timesteps)],
                         capture_output=True, text=True, check=True, env=env)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return result["threads"], result["steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timesteps", type=int, default=4096, help="env steps per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="measurements per setting (alternating)")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="busy processes in the busy setting")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.timesteps)
        return
    print(f"cores {os.cpu_count()}, load average before: {os.getloadavg()[0]:.2f}, {args.timesteps} env steps a run")
    results: dict[tuple[str, int], list[float]] = {}
    seen_threads: dict[int, int] = {}
    for load in ("quiet", "busy"):
        stop = mp.Event()
        hogs = [mp.Process(target=hog, args=(stop,), daemon=True) for _ in range(args.hogs if load == "busy" else 0)]
        for h in hogs:
            h.start()
        try:
            for _ in range(args.repeats):
                for threads in (1, 0):
                    actual, rate = measure(threads, args.timesteps)
                    seen_threads[threads] = actual
                    results.setdefault((load, threads), []).append(rate)
                    print(f"  {load:5s} --threads {threads} ({actual} torch threads): {rate:7.0f} env steps/s", flush=True)
        finally:
            stop.set()
            for h in hogs:
                h.join()
    print(f"\n{'machine':8s} {'threads 1':>10s} {'default':>10s} {'1 / default':>12s}")
    for load in ("quiet", "busy"):
        one = sum(results[(load, 1)]) / len(results[(load, 1)])
        default = sum(results[(load, 0)]) / len(results[(load, 0)])
        print(f"{load:8s} {one:10.0f} {default:10.0f} {one / default:11.2f}x")
    print(f"(default = torch's choice, {seen_threads.get(0)} threads here; busy = {args.hogs} spinning processes)")


if __name__ == "__main__":
    main()
