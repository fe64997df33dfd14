"""Learning curves of the reward model against the raters' own agreement (issue 21, item 2).

For each simulated taste and each rater noise (set so that two raters of the taste agree on
60%, 70% or 80% of the pairs they both decide), the reward model (``rlmusic.feedback.fit``,
``--model``) is fitted on N judgements (half star ratings, half comparisons, by 6 training
raters) for N in ``--sizes`` and scored on a held-out test set that shares nothing with
training: other clips of the shipped prior, other raters (their own seeds), statistics fitted
on training rows only. Figures: held-out pairwise accuracy (decided test comparisons) and
star-pair accuracy (pairs of one test rater's stars with different stars), and the ceiling:
how often a second test rater, judging the same test pairs, agrees with the first (measured
the same way). ``--orders random priority``: clips in random order, or active selection
(after each size the model's ensemble disagreement ranks the pool, and the next judgements go
to the clips it disagrees on most, as ``simulate-raters --order priority``).

    .venv/bin/python scripts/reward_learning_curve.py OUT.json [--tastes contour rhythm pitch ending]
        [--agreement 0.6 0.7 0.8] [--sizes 50 100 200 400 800 1600] [--seeds 3]
        [--orders random priority] [--priority-agreement 0.7] [--model frozen] [--plot OUT.png]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rlmusic.feedback.fit import RewardModelConfig, fit_reward_model, prioritise  # noqa: E402
from rlmusic.feedback.simulate import TASTES, make_raters, taste_score  # noqa: E402
from rlmusic.models.checkpoint import load_model  # noqa: E402
from rlmusic.models.generate import sample_tokens  # noqa: E402


def decide(rater, ta: np.ndarray, tb: np.ndarray, rng) -> np.ndarray:
    """+1 a, -1 b, 0 tie: the rater's choices on pairs with tastes ta, tb."""
    return np.array([{"a": 1, "b": -1, "tie": 0}[w] for w in rater.winners(ta, tb, rng)])


def agreement_at(taste_values: np.ndarray, taste: str, noise: float, seed: int, n: int = 20_000) -> float:
    """Share of random pairs, decided by two random raters of the taste, on which they agree."""
    rng = np.random.default_rng(seed)
    raters = make_raters(12, taste, noise, seed)
    a, b = rng.integers(0, len(taste_values), (2, n))
    d1, d2 = np.zeros(n, int), np.zeros(n, int)
    for d in (d1, d2):
        who = rng.integers(0, len(raters), n)
        for i, rater in enumerate(raters):
            m = who == i
            d[m] = decide(rater, taste_values[a[m]], taste_values[b[m]], rng)
    both = (d1 != 0) & (d2 != 0)
    return float((d1[both] == d2[both]).mean())


def noise_for(agreement: float, taste_values: np.ndarray, taste: str, seed: int) -> float:
    """The rater noise (stars) at which two raters agree on ``agreement`` of decided pairs (bisection)."""
    lo, hi = 0.01, 20.0
    for _ in range(22):
        mid = math.sqrt(lo * hi)
        if agreement_at(taste_values, taste, mid, seed) > agreement:
            lo = mid
        else:
            hi = mid
    return math.sqrt(lo * hi)


def judgements(raters, clips: np.ndarray, values: np.ndarray, star_idx: np.ndarray, pair_idx: np.ndarray,
               rng, start: int) -> tuple[list[dict], list[dict]]:
    """Star rows on ``star_idx`` and pair rows on ``pair_idx`` (P, 2), raters in turn."""
    stars, pairs = [], []
    for j, i in enumerate(star_idx):
        r = raters[(start + j) % len(raters)]
        stars.append({"rating_id": start + j, "clip_id": int(i), "rater": r.name, "tokens": clips[i].tolist(),
                      "stars": int(r.stars(values[[i]], rng)[0])})
    for j, (a, b) in enumerate(pair_idx):
        r = raters[(start + j) % len(raters)]
        w = r.winners(values[[a]], values[[b]], rng)[0]
        pairs.append({"comparison_id": start + j, "clip_a": int(a), "clip_b": int(b), "rater": r.name, "winner": w,
                      "tokens_a": clips[a].tolist(), "tokens_b": clips[b].tolist()})
    return stars, pairs


def accuracy(scores: np.ndarray, test: dict) -> dict:
    """Held-out pairwise accuracy and star-pair accuracy of melody scores on the test set."""
    a, b, d1 = test["a"], test["b"], test["d1"]
    ds = scores[a] - scores[b]
    decided = d1 != 0
    pairwise = float(np.mean(np.where(ds[decided] == 0, 0.5, np.sign(ds[decided]) == d1[decided])))
    right = total = 0.0
    for idx, stars in test["stars"]:
        dz, dsc = stars[:, None] - stars[None, :], scores[idx][:, None] - scores[idx][None, :]
        mask = dz > 0
        total += mask.sum()
        right += np.where(dsc[mask] == 0, 0.5, dsc[mask] > 0).sum()
    return {"pairwise_accuracy": pairwise, "star_pair_accuracy": float(right / total)}


def test_set(prior, taste: str, noise: float, seed: int, steps: int, n_clips: int = 400, n_pairs: int = 2000) -> dict:
    """Clips, raters and judgements that share nothing with training (their own seeds)."""
    rng = np.random.default_rng([seed, 77])
    clips = sample_tokens(prior, n_clips, steps, seed=900_000 + seed)
    values = taste_score(clips, taste)
    raters = make_raters(6, taste, noise, 500_000 + seed)
    second = make_raters(6, taste, noise, 600_000 + seed)
    a, b = rng.integers(0, n_clips, (2, n_pairs))
    keep = a != b
    a, b = a[keep], b[keep]
    who = rng.integers(0, len(raters), len(a))
    d1, d2 = np.zeros(len(a), int), np.zeros(len(a), int)
    for i in range(len(raters)):
        m = who == i
        d1[m] = decide(raters[i], values[a[m]], values[b[m]], rng)
        d2[m] = decide(second[i], values[a[m]], values[b[m]], rng)
    both = (d1 != 0) & (d2 != 0)
    stars = []
    for r in raters:
        idx = rng.choice(n_clips, 60, replace=False)
        stars.append((idx, r.stars(values[idx], rng).astype(float)))
    return {"clips": clips, "a": a, "b": b, "d1": d1, "d2": d2, "stars": stars,
            "ceiling": float((d1[both] == d2[both]).mean())}


def curve(prior, taste: str, noise: float, seed: int, sizes: list[int], order: str, model: str, steps: int,
          test: dict, pool_size: int = 2000) -> list[dict]:
    pool = sample_tokens(prior, pool_size, steps, seed=seed)
    values = taste_score(pool, taste)
    raters = make_raters(6, taste, noise, seed)
    rng = np.random.default_rng([seed, 11])
    stars, pairs, out = [], [], []
    priority, used = None, np.zeros(pool_size, dtype=bool)
    for n in sizes:
        need = n - len(stars) - len(pairs)
        n_s, n_p = need // 2, need - need // 2
        if priority is None:
            s_idx = rng.integers(0, pool_size, n_s)
            p_idx = rng.integers(0, pool_size, (n_p, 2))
        else:  # active selection: the clips the ensemble disagrees on most, in that order
            ranked = np.where(used, -np.inf, priority)  # each clip judged once, as the queue serves it
            top = np.argsort(-ranked, kind="stable")[: max(2 * n_p, n_s, 2)]
            s_idx = top[:n_s]
            p_idx = rng.permutation(top[: 2 * n_p])[: 2 * n_p].reshape(n_p, 2)
        p_idx = p_idx[p_idx[:, 0] != p_idx[:, 1]]
        used[s_idx] = True
        used[p_idx.reshape(-1)] = True
        more_s, more_p = judgements(raters, pool, values, s_idx, p_idx, rng, len(stars) + len(pairs))
        stars += more_s
        pairs += more_p
        t = time.time()
        rm = fit_reward_model(stars, pairs, prior, RewardModelConfig(model=model, seed=seed),
                              evaluate=model != "frozen")  # the fine-tuned kind stops early on its split
        scores = rm.score(test["clips"])
        out.append({"n": n, **accuracy(scores, test), "seconds": time.time() - t,
                    "kept": rm.meta["head"].get("kind", "frozen")})
        if order == "priority":
            disagreement = prioritise(rm, [{"clip_id": i, "tokens": pool[i]} for i in range(pool_size)])
            priority = np.array([disagreement[i] for i in range(pool_size)])
    return out


def summarise(runs: list[list[dict]], ceiling: list[float]) -> dict:
    by_n = {}
    for i, row in enumerate(runs[0]):
        vals = [r[i] for r in runs]
        by_n[row["n"]] = {k: {"mean": float(np.mean([v[k] for v in vals])), "min": float(min(v[k] for v in vals)),
                              "max": float(max(v[k] for v in vals))} for k in ("pairwise_accuracy", "star_pair_accuracy")}
    c = float(np.mean(ceiling))
    within = [n for n, v in by_n.items() if v["pairwise_accuracy"]["mean"] >= c - 0.05]
    return {"by_n": by_n, "ceiling": {"mean": c, "min": min(ceiling), "max": max(ceiling)},
            "judgements_within_5_points": min(within) if within else None}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tastes = result["tastes"]
    fig, axes = plt.subplots(1, len(tastes), figsize=(4 * len(tastes), 3.4), sharey=True, squeeze=False)
    for ax, taste in zip(axes[0], tastes):
        for key, entry in result["curves"].items():
            if not key.startswith(taste + "/"):
                continue
            n = sorted(int(k) for k in entry["by_n"])
            mean = [entry["by_n"][str(k) if str(k) in entry["by_n"] else k]["pairwise_accuracy"]["mean"] for k in n]
            line = ax.plot(n, mean, marker="o", label=key.split("/", 1)[1])[0]
            ax.axhline(entry["ceiling"]["mean"], color=line.get_color(), ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_title(taste)
        ax.set_xlabel("judgements")
        ax.axhline(0.5, color="grey", lw=0.5)
    axes[0][0].set_ylabel("pairwise accuracy (dotted: agreement)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="JSON file to write")
    ap.add_argument("--tastes", nargs="+", default=list(TASTES), choices=TASTES)
    ap.add_argument("--agreement", nargs="+", type=float, default=[0.6, 0.7, 0.8])
    ap.add_argument("--sizes", nargs="+", type=int, default=[50, 100, 200, 400, 800, 1600])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--orders", nargs="+", default=["random", "priority"], choices=("random", "priority"))
    ap.add_argument("--priority-agreement", type=float, default=0.7,
                    help="active selection is measured at this agreement only (default 0.7)")
    ap.add_argument("--model", default="frozen", choices=("frozen", "finetuned", "auto"))
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--plot", help="PNG of the curves")
    args = ap.parse_args()
    torch.set_num_threads(1)
    prior = load_model()
    calib = sample_tokens(prior, 2000, args.steps, seed=424242)
    result = {"tastes": args.tastes, "sizes": args.sizes, "seeds": args.seeds, "model": args.model,
              "steps": args.steps, "noise": {}, "curves": {}}
    for taste in args.tastes:
        values = taste_score(calib, taste)
        for agreement in args.agreement:
            noise = noise_for(agreement, values, taste, seed=1)
            result["noise"][f"{taste}/{agreement}"] = noise
            for order in args.orders:
                if order == "priority" and not math.isclose(agreement, args.priority_agreement):
                    continue
                runs, ceilings = [], []
                for seed in range(args.seeds):
                    test = test_set(prior, taste, noise, seed, args.steps)
                    ceilings.append(test["ceiling"])
                    runs.append(curve(prior, taste, noise, seed, args.sizes, order, args.model, args.steps, test))
                key = f"{taste}/agree {agreement:.0%}/{order}"
                result["curves"][key] = {"noise": noise, "runs": runs, **summarise(runs, ceilings)}
                s = result["curves"][key]
                print(f"{key:28s} noise {noise:.2f}  ceiling {s['ceiling']['mean']:.3f}  " + "  ".join(
                    f"{n}:{v['pairwise_accuracy']['mean']:.3f}" for n, v in s["by_n"].items())
                    + f"  within 5 points at {s['judgements_within_5_points']}", flush=True)
                Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    if args.plot:
        plot(json.loads(Path(args.out).read_text()), Path(args.plot))


if __name__ == "__main__":
    main()
