"""Pretraining throughput: our Trainer vs a bare torch loop over the same model and batch.

    .venv/bin/python benchmarks/bench_pretrain.py [--steps 30] [--batch-size 64] [--seq-len 128]

Both loops run the same arithmetic (forward, masked cross-entropy, backward, clip, AdamW)
on the same batches, alternating in rounds so background load hits both alike. Prints
tokens/s of each and the ratio, plus peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F

from rlmusic.models.lstm import MelodyLSTM
from rlmusic.models.pretrain import PAD, PretrainConfig, Trainer, inputs_for


def bare_loop(model: MelodyLSTM, batches: list[torch.Tensor], bos: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    t0 = time.perf_counter()
    for targets in batches:
        logits, _ = model(inputs_for(targets, bos))
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        float(loss.detach())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="optimiser steps per round and loop")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = PretrainConfig(seq_len=args.seq_len, batch_size=args.batch_size)
    g = torch.Generator().manual_seed(0)
    vocab = cfg.model_config().vocab
    data = torch.randint(0, vocab.size, (args.batch_size * args.steps, args.seq_len), generator=g)
    batches = list(data.split(args.batch_size))
    trainer = Trainer(cfg, data, data[:8], out="/tmp/bench_pretrain", device=torch.device("cpu"),
                      progress=False)
    bare = MelodyLSTM(cfg.model_config())
    tokens = data.numel()
    trainer.train_step(batches[0])  # warm-up both
    bare_loop(bare, batches[:1], vocab.BOS)
    ours_t, bare_t = 0.0, 0.0
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        for targets in batches:
            trainer.train_step(targets)
        ours_t += time.perf_counter() - t0
        bare_t += bare_loop(bare, batches, vocab.BOS)
    ours, ref = tokens * args.rounds / ours_t, tokens * args.rounds / bare_t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model 2x{cfg.hidden_size} LSTM, batch {args.batch_size} x {args.seq_len}, "
          f"{args.threads} threads, {args.rounds} rounds x {args.steps} steps")
    print(f"rlmusic Trainer : {ours:10,.0f} tokens/s")
    print(f"bare torch loop : {ref:10,.0f} tokens/s")
    print(f"ratio ours/bare : {ours / ref:.3f}")
    print(f"peak RSS        : {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
