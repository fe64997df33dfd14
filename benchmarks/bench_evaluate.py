"""``rlmusic evaluate``'s exact KL from the log-probabilities sampling kept, against the
model's forward run again over the sampled melodies (what it did before 2026-12-07).

    .venv/bin/python benchmarks/bench_evaluate.py [--n 2000] [--steps 128] [--rounds 2] [--model DIR]

``rlmusic.evaluation.table.evaluate_model`` on the same model, melodies and seed both ways,
alternating ``--rounds`` times (after a small warm-up); prints seconds of each and the ratio,
and the KL per step of each (equal to float rounding).
"""

from __future__ import annotations

import argparse
import time

import torch

import rlmusic.evaluation.table as table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000, help="melodies")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default=None, help="model directory (default: the shipped prior)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cap = table.KEEP_LOG_PROBS_BYTES
    table.evaluate_model(args.model, n=64, steps=args.steps, seed=0, device="cpu")  # warm-up: corpus index
    print(f"evaluate {args.n} melodies of {args.steps} steps, {args.threads} thread(s)")
    for _ in range(args.rounds):
        seconds = {}
        for name, limit in (("kept", cap), ("forward", 0)):
            table.KEEP_LOG_PROBS_BYTES = limit
            start = time.perf_counter()
            result = table.evaluate_model(args.model, n=args.n, steps=args.steps, seed=0, device="cpu")
            seconds[name] = time.perf_counter() - start
            print(f"  {name:>8}: {seconds[name]:6.1f} s  kl_per_step {result['kl_per_step']:.6g}", flush=True)
        print(f"  forward / kept: {seconds['forward'] / seconds['kept']:.2f}x")
    table.KEEP_LOG_PROBS_BYTES = cap


if __name__ == "__main__":
    main()
