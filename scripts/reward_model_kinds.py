"""Frozen-feature heads against the prior's LSTM fine-tuned, on the same stars (docs/feedback.md,
"Frozen against fine-tuned"; issue 21, item 1).

For each taste and seed: 300 clips of 64 steps from the shipped prior (sampling seed = the
seed), 6 simulated raters of the taste (noise 0.5 stars) giving 100 stars each on their own
random clips, and ``fit_reward_model`` with each kind (ensemble 5; the same clip-disjoint
split): each kind's held-out star-pair accuracy on that split (75 clips), its pairwise and
star-pair accuracy on an external test set that shares nothing with training (400 other prior
clips, 2,000 pairs and 360 stars by 6 other raters: ``reward_learning_curve.test_set``), which
kind ``auto`` would keep, the fine-tuned model's epochs and the minutes. ``--shuffle``: the
stars permuted among all the ratings (the control: no taste left in them).

    .venv/bin/python scripts/reward_model_kinds.py OUT.json [--tastes contour rhythm pitch ending] [--seeds 3] [--shuffle]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reward_learning_curve import accuracy, test_set  # noqa: E402

from rlmusic.feedback.fit import RewardModelConfig, fit_reward_model  # noqa: E402
from rlmusic.feedback.simulate import TASTES, make_raters, taste_score  # noqa: E402
from rlmusic.models.checkpoint import load_model  # noqa: E402
from rlmusic.models.generate import sample_tokens  # noqa: E402


def one(prior, taste: str, seed: int, shuffle: bool) -> dict:
    clips = sample_tokens(prior, 300, 64, seed=seed)
    rng = np.random.default_rng(seed)
    rows = []
    for r in make_raters(6, taste, 0.5, seed):
        idx = rng.choice(300, 100, replace=False)
        stars = r.stars(taste_score(clips[idx], taste), rng)
        rows += [{"rating_id": len(rows), "clip_id": int(i), "rater": r.name, "stars": int(s),
                  "tokens": clips[i].tolist()} for i, s in zip(idx, stars)]
    if shuffle:
        permuted = [rows[i]["stars"] for i in rng.permutation(len(rows))]
        for row, s in zip(rows, permuted):
            row["stars"] = s
    test = test_set(prior, taste, 0.5, seed, 64)
    out = {"taste": taste, "seed": seed, "shuffled": shuffle, "ceiling": test["ceiling"]}
    for kind in ("frozen", "finetuned"):
        t = time.time()
        m = fit_reward_model(rows, [], prior, RewardModelConfig(model=kind, seed=seed, ensemble=5))
        external = accuracy(m.score(test["clips"]), test)
        out[kind] = {"heldout_star_pair_accuracy": m.metrics["star_pair_accuracy"],
                     "external_pairwise_accuracy": external["pairwise_accuracy"],
                     "external_star_pair_accuracy": external["star_pair_accuracy"],
                     "finetune_epochs_kept": m.metrics.get("finetune_epochs_kept"), "minutes": (time.time() - t) / 60}
    out["auto_keeps"] = max(("frozen", "finetuned"), key=lambda k: (out[k]["heldout_star_pair_accuracy"], k == "frozen"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--tastes", nargs="+", default=list(TASTES), choices=TASTES)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--shuffle", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    prior, rows = load_model(), []
    for taste in args.tastes:
        for seed in range(args.seeds):
            rows.append(one(prior, taste, seed, args.shuffle))
            r = rows[-1]
            f, g = r["frozen"], r["finetuned"]
            print(f"{taste:8s} seed {seed}{' shuffled' if args.shuffle else ''}: held-out {f['heldout_star_pair_accuracy']:.3f}"
                  f" / {g['heldout_star_pair_accuracy']:.3f} (auto keeps {r['auto_keeps']}), external pairwise "
                  f"{f['external_pairwise_accuracy']:.3f} / {g['external_pairwise_accuracy']:.3f} (frozen / fine-tuned; "
                  f"ceiling {r['ceiling']:.3f})", flush=True)
            Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
