"""How well a revised span joins what follows it: the melody prior's log-likelihood of the
unchanged steps after the span given the new span, for spans drawn blind (left to right,
K = 1) and picked among K candidates by sampling-importance-resampling
(rlmusic.harmony.revise).

    python docs/harmony_results/revise_join.py --out docs/harmony_results/revise_join.json

Held-out melodies: the first 64 steps of every test melody of the Irish corpus that has
64; span 16:32 (the second bar); seeds 0..S-1 per melody. Printed and written: for each
K, the mean over revisions of the NLL per step of the steps after the span (nats, under
the shipped prior), the share of revisions after which those steps are more likely than
after the tune's own span, and the mean size of the leap into step 32 (semitones) beside
the original's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from rlmusic.corpus.cache import load_corpus
from rlmusic.harmony.revise import revise_melody, sounding_pitch
from rlmusic.models.checkpoint import load_model

START, END, STEPS = 16, 32, 64


def leap(tokens, vocab) -> float:
    a, b = sounding_pitch(tokens, END - 1, vocab), sounding_pitch(tokens, END, vocab)
    return abs(a - b) if a >= 0 and b >= 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, 4, 16, 64], help="values of K")
    parser.add_argument("--seeds", type=int, default=3, help="revisions per melody and K")
    parser.add_argument("--melodies", type=int, default=40, help="held-out melodies (at most)")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    prior = load_model()
    vocab = prior.vocab
    melodies = [t[:STEPS] for t in load_corpus("irish", progress=False).split("test") if len(t) >= STEPS]
    melodies = melodies[: args.melodies]
    with torch.no_grad():
        logp = prior.log_probs(torch.from_numpy(np.stack(melodies))).double().numpy()
    original_nll = -logp[:, END:].mean(axis=1)
    rows = {"melodies": len(melodies), "span": [START, END], "steps": STEPS, "seeds": args.seeds,
            "original": {"following_nll_per_step": float(original_nll.mean()),
                         "leap_into_following": float(np.nanmean([leap(m, vocab) for m in melodies]))}}
    for k in args.candidates:
        t0, nll, better, leaps, restruck = time.perf_counter(), [], [], [], []
        for i, tokens in enumerate(melodies):
            for seed in range(args.seeds):
                new, info = revise_melody(prior, tokens, START, END, seed=1000 * i + seed, candidates=k)
                nll.append(info["suffix_nll_per_step"])
                better.append(info["suffix_nll_per_step"] < original_nll[i])
                leaps.append(leap(new, vocab))
                restruck.append(info["restruck"])
        rows[f"K={k}"] = {"following_nll_per_step": float(np.mean(nll)),
                          "following_nll_sem": float(np.std(nll) / np.sqrt(len(nll))),
                          "share_following_likelier_than_original": float(np.mean(better)),
                          "leap_into_following": float(np.nanmean(leaps)), "restruck": float(np.mean(restruck)),
                          "seconds_per_revision": (time.perf_counter() - t0) / len(nll)}
        print(f"K={k:3d}: following NLL {np.mean(nll):.3f} +- {rows[f'K={k}']['following_nll_sem']:.3f} nats/step, "
              f"likelier than original {100 * np.mean(better):.0f}%, leap {np.nanmean(leaps):.2f} st, "
              f"{rows[f'K={k}']['seconds_per_revision']:.2f} s each")
    print(f"original: following NLL {original_nll.mean():.3f} nats/step, leap {rows['original']['leap_into_following']:.2f} st")
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
