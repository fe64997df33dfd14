"""Generation throughput: one batched sample of N clips vs N one-clip calls.

    .venv/bin/python benchmarks/bench_generate.py [--n 256] [--steps 64] [--model DIR]

Same model, same clip length; prints clips/s of each and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from rlmusic.models.checkpoint import default_prior_dir, load_model
from rlmusic.models.generate import sample_tokens
from rlmusic.models.lstm import MelodyLSTM, ModelConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="clips")
    ap.add_argument("--steps", type=int, default=64, help="steps per clip")
    ap.add_argument("--one-by-one", type=int, default=32, help="clips timed in the one-by-one loop")
    ap.add_argument("--model", default=None, help="model directory (default: shipped prior)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = args.model or default_prior_dir()
    try:
        model = load_model(model_dir)
    except FileNotFoundError:
        model = MelodyLSTM(ModelConfig()).eval()
    sample_tokens(model, 4, 8)  # warm-up
    t0 = time.perf_counter()
    sample_tokens(model, args.n, args.steps, seed=0)
    batched = args.n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(args.one_by_one):
        model.sample(1, args.steps, generator=torch.Generator().manual_seed(i))
    single = args.one_by_one / (time.perf_counter() - t0)
    print(f"model 2x{model.config.hidden_size} LSTM, {args.steps} steps per clip, {args.threads} threads")
    print(f"batched ({args.n} clips in one batch) : {batched:10,.1f} clips/s")
    print(f"one by one ({args.one_by_one} clips)          : {single:10,.1f} clips/s")
    print(f"ratio batched/one-by-one            : {batched / single:.1f}x")


if __name__ == "__main__":
    main()
