"""What the style critic buys against KL alone, over training seeds (docs/vae.md, docs/results.md).

For the shipped prior and each tuned run of each training seed: the evaluation table of
``--n`` melodies of 32 steps (rule metrics, novelty and the longest copied span against the
Irish train split, log p under the prior, diversity, KL per note), plus two critic figures:

- ``c2st_accuracy``: a fresh critic (the architecture and settings of
  ``rlmusic.tuning.critic``) trained for 600 updates on the Irish train split vs 2,048 of
  the model's melodies, then tested on held-out real windows (valid split) vs 1,024 fresh
  melodies; balanced accuracy, 0.5 = it cannot tell them from real tunes;
- ``style_critic``: the mean log-odds of "real" that the same seed's style run's own final
  critic (``JUDGE/critic.pt``) gives the model's melodies, next to what it gives held-out
  real tunes (test split: ``real_tunes``).

Each seed's prior row samples with that seed (its spread is sampling noise alone); each
figure is reported as the mean and the range over seeds.

Usage:
  python docs/vae_results/critic_compare.py --seeds 3 --n 10000 --judge style_w20 \\
      kl_only=runs/critic/kl_only_s{seed} style_w20=runs/critic/style_w20_s{seed}
Writes docs/vae_results/critic_compare.json and critic_compare.png.
"""

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from rlmusic.corpus.cache import load_corpus  # noqa: E402
from rlmusic.evaluation.table import evaluate_model  # noqa: E402
from rlmusic.models.windows import melody_windows  # noqa: E402
from rlmusic.music.representation import DEFAULT_VOCAB  # noqa: E402
from rlmusic.tuning.critic import STATE_FILE, CriticConfig, StyleCritic  # noqa: E402
from rlmusic.tuning.curves import read_csv  # noqa: E402

STEPS = 32
# rlmusic's own rule figures (the rules these runs were tuned with), not Magenta's (rl_tuner/*)
KEYS = ("rlmusic/onsets_not_in_key", "rlmusic/starts_with_tonic_pitch_class", "rlmusic/leaps_resolved_by_next_note",
        "rlmusic/onsets_in_motif", "rlmusic/onsets_excessively_repeated", "novelty", "copied_notes", "copied_over_max", "log_p_prior_per_step", "diversity", "distinct_melodies",
        "kl_per_note", "notes_per_melody")


def load_judge(run: Path) -> StyleCritic:
    state = torch.load(run / STATE_FILE, weights_only=False)
    judge = StyleCritic(CriticConfig(**state["config"]), DEFAULT_VOCAB, STEPS, "irish")
    judge.net.load_state_dict(state["net"])
    return judge


def row(run: Path | None, seed: int, n: int, judge: StyleCritic) -> dict:
    """One model's figures; every sample drawn with seeds derived from the training seed."""
    table, tokens = evaluate_model(run, n=n, steps=STEPS, seed=1000 * seed, device="cpu", return_tokens=True)
    fresh = StyleCritic(CriticConfig(), DEFAULT_VOCAB, STEPS, "irish", seed=1 + 1000 * seed)
    fresh.remember(evaluate_model(run, n=2048, steps=STEPS, seed=1 + 1000 * seed, device="cpu",
                                  return_tokens=True)[1])
    fresh.update(600)
    c2st = fresh.accuracy(evaluate_model(run, n=1024, steps=STEPS, seed=2 + 1000 * seed, device="cpu",
                                         return_tokens=True)[1], n_real=len(fresh.heldout))
    return {**{k: table[k] for k in KEYS}, "c2st_accuracy": c2st["accuracy"],
            "c2st_accuracy_fake": c2st["accuracy_fake"], "style_critic": float(judge.log_odds(tokens).mean())}


def summary(values: list[float]) -> dict:
    return {"mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN", help="a tuned run per name; {seed} in RUN is the seed")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..K-1 (default 3)")
    parser.add_argument("--n", type=int, default=10_000, help="melodies per model and seed (default 10,000)")
    parser.add_argument("--judge", required=True, help="the NAME whose runs' final critics judge every model")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pattern = dict(a.split("=", 1) for a in args.runs)
    if args.judge not in pattern:
        parser.error(f"--judge {args.judge!r} is not among the runs' names {sorted(pattern)}")
    names = ["prior", *pattern]
    test = melody_windows(load_corpus("irish", progress=False).split("test"), STEPS, 16, min_notes=1)

    seeds: dict[str, list[dict]] = {name: [] for name in names}
    real_scores = []
    for seed in range(args.seeds):
        runs = {"prior": None, **{k: Path(v.format(seed=seed)) for k, v in pattern.items()}}
        for run in runs.values():
            if run is not None and not run.exists():
                raise SystemExit(f"critic_compare: no run at {run} (train it first; see docs/vae.md)")
        judge_run = runs[args.judge]
        judge = load_judge(judge_run)
        real_scores.append(float(judge.log_odds(test).mean()))
        for name, run in runs.items():
            seeds[name].append({"seed": seed, "run": str(run) if run else "shipped-prior", **row(run, seed, args.n, judge)})
            print(name, seed, json.dumps(seeds[name][-1]), flush=True)

    figures = [*KEYS, "c2st_accuracy", "c2st_accuracy_fake", "style_critic"]
    rows = {name: {k: summary([r[k] for r in seeds[name]]) for k in figures} for name in names}
    out = Path(__file__).parent
    (out / "critic_compare.json").write_text(json.dumps({
        "runs": pattern, "judge": args.judge, "seeds": args.seeds, "n": args.n, "steps": STEPS,
        "real_tunes_style_critic": summary(real_scores), "n_real_test_windows": int(len(test)),
        "c2st": {"config": asdict(CriticConfig()), "updates": 600, "train_samples": 2048, "test_samples": 1024},
        "rows": rows, "per_seed": seeds}, indent=1) + "\n")

    fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
    for seed in range(args.seeds):
        curves = [r for r in read_csv(Path(pattern[args.judge].format(seed=seed)) / "metrics.csv")
                  if "critic/accuracy" in r]
        x = [r["timesteps"] for r in curves]
        axes[0].plot(x, [r["critic/accuracy"] for r in curves], c=f"C{seed}", label=f"seed {seed}: critic accuracy")
    axes[0].set(title=f"{args.judge} runs: the critic (fresh samples vs held-out real)", xlabel="env steps",
                ylim=(0, 1.02))
    keys = ("c2st_accuracy", "novelty", "diversity", "rlmusic/onsets_in_motif", "rlmusic/leaps_resolved_by_next_note",
            "rlmusic/starts_with_tonic_pitch_class")
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        mean = np.array([rows[name][k]["mean"] for k in keys])
        err = np.array([[mean[j] - rows[name][k]["min"], rows[name][k]["max"] - mean[j]] for j, k in enumerate(keys)]).T
        axes[1].bar(np.arange(len(keys)) + i * width, mean, width, yerr=err, capsize=2, label=name)
    axes[1].set_xticks(np.arange(len(keys)) + 0.4 - width / 2, [k.split("/")[-1] for k in keys], rotation=20,
                       fontsize=8)
    axes[1].set(title=f"{args.n:,} melodies of {STEPS} steps; bars: mean, whiskers: range over {args.seeds} seeds")
    for i, name in enumerate(names):
        s = rows[name]["style_critic"]
        axes[2].bar(i, s["mean"], yerr=[[s["mean"] - s["min"]], [s["max"] - s["mean"]]], capsize=3, label=name)
    axes[2].axhline(np.mean(real_scores), c="grey", ls=":", label="held-out real tunes")
    axes[2].set(title=f"{args.judge} runs' final critics: mean log-odds of 'real'")
    axes[2].set_xticks(range(len(names)), names)
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "critic_compare.png", dpi=90)
    print("real tunes (test split), style critic:", json.dumps(summary(real_scores)))


if __name__ == "__main__":
    main()
