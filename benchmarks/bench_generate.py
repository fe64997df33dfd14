"""Generation throughput: one batched sample of N clips vs N one-clip calls.

    .venv/bin/python benchmarks/bench_generate.py [--n 256] [--steps 64] [--model DIR]

Same model, same clip length; prints clips/s of each and the ratio.

``--plan PRESET``: instead, the targets plan of a tune preset (``rlmusic targets plan
--preset PRESET``: sample ``--n`` prior melodies of the preset's steps, compute every
target's feature, fit the projection) in melodies per second, against batched generation
of the same melodies, alternating ``--rounds`` times (after a warm-up plan that loads the
corpus index).
"""

from __future__ import annotations

import argparse
import time

import torch

from rlmusic.models.checkpoint import default_prior_dir, load_model
from rlmusic.models.generate import sample_tokens
from rlmusic.models.lstm import MelodyLSTM, ModelConfig


def plan_rate(model, model_dir, preset: str, n: int, rounds: int) -> None:
    from rlmusic.tuning.config import TuneConfig
    from rlmusic.tuning.target_training import sample_plan

    config = TuneConfig.preset(preset)

    def plan(count: int) -> None:
        try:
            sample_plan(config, model, model_dir, count, min_ess=1)
        except ValueError:  # a projection the samples cannot fit: the work is done by then
            pass

    plan(64)  # loads the corpus index and the fitting code
    print(f"targets plan of preset {preset!r}: {n} melodies of {config.steps} steps, {torch.get_num_threads()} threads")
    for _ in range(rounds):
        t0 = time.perf_counter()
        sample_tokens(model, n, config.steps, seed=0)
        batched = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        plan(n)
        planned = n / (time.perf_counter() - t0)
        print(f"batched generation {batched:8,.1f} melodies/s   plan {planned:8,.1f} melodies/s   "
              f"plan/generation {planned / batched:.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="clips")
    ap.add_argument("--steps", type=int, default=64, help="steps per clip")
    ap.add_argument("--one-by-one", type=int, default=32, help="clips timed in the one-by-one loop")
    ap.add_argument("--model", default=None, help="model directory (default: shipped prior)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    ap.add_argument("--plan", default=None, help="time the targets plan of this tune preset instead")
    ap.add_argument("--rounds", type=int, default=2, help="with --plan: alternating timed rounds")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = args.model or default_prior_dir()
    try:
        model = load_model(model_dir)
    except FileNotFoundError:
        model = MelodyLSTM(ModelConfig()).eval()
    sample_tokens(model, 4, 8)  # warm-up
    if args.plan:
        plan_rate(model, model_dir, args.plan, args.n, args.rounds)
        return
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
