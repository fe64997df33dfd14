"""Per-step theory reward vs the prior's forward step, measured in the same run.

    .venv/bin/python benchmarks/bench_theory.py [--envs 16] [--repeats 300]

For T in 32/64/128: ``step_rewards`` on a batch of ``--envs`` histories of T - 1
tokens (default TheoryConfig: RL Tuner's nine rules; then every rule, structure
included, with melody length T), against one ``MelodyLSTM(ModelConfig()).step`` on the
same batch (default size: 2 x 256 LSTM). Prints calls per second and the ratio
reward time / forward time (below 1: the reward costs less than the prior's step).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.music.reward import RULES, TheoryConfig, step_rewards


def per_call(fn, repeats: int) -> float:
    """Median seconds per call over 5 rounds of ``repeats`` calls (after a warm-up)."""
    for _ in range(10):
        fn()
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        rounds.append((time.perf_counter() - t0) / repeats)
    return float(np.median(rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", type=int, default=16, help="batch size (parallel envs)")
    parser.add_argument("--repeats", type=int, default=300, help="calls per timing round")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    B = args.envs
    model = MelodyLSTM(ModelConfig()).eval()
    vocab = model.vocab
    rng = np.random.default_rng(0)
    token = torch.randint(0, vocab.size, (B,))
    state = model.initial_state(B)

    def forward():
        with torch.no_grad():
            model.step(token, state)

    t_fwd = per_call(forward, args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {B}")
    print(f"prior step (MelodyLSTM default, {sum(p.numel() for p in model.parameters())} params): "
          f"{1 / t_fwd:9.0f} steps/s ({t_fwd * 1e6:.0f} us)")
    print(f"{'T':>4} {'rules':>10} {'steps/s':>9} {'us/step':>8} {'reward/forward':>15}")
    all_on = TheoryConfig(weights={n: 1.0 for n in RULES})
    for T in (32, 64, 128):
        # a realistic token mix: ~half notes, the rest holds and a few rests
        hist = rng.choice(vocab.size, size=(B, T - 1), p=_token_mix(vocab.size))
        nxt = rng.integers(0, vocab.size, B)
        for label, cfg in (("rl_tuner", TheoryConfig()), ("all", all_on)):
            t = per_call(lambda cfg=cfg, h=hist, x=nxt, T=T: step_rewards(h, x, cfg, vocab=vocab, steps=T),
                         args.repeats)
            print(f"{T:>4} {label:>10} {1 / t:9.0f} {t * 1e6:8.0f} {t / t_fwd:15.2f}")


def _token_mix(size: int) -> np.ndarray:
    p = np.full(size, 0.5 / (size - 2))
    p[0], p[1] = 0.1, 0.4  # REST, HOLD
    return p / p.sum()


if __name__ == "__main__":
    main()
