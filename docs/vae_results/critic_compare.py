"""What the style critic buys against KL alone (docs/vae.md, docs/results.md).

For the shipped prior and each tuned run: the evaluation table of 1,000 melodies of 32
steps (rule metrics, novelty and the longest copied span against the Irish train split,
log p under the prior, diversity, KL per note), plus two critic figures:

- ``c2st_accuracy``: a fresh critic (the architecture and settings of
  ``rlmusic.tuning.critic``) trained for 600 updates on the Irish train split vs 2,048 of
  the model's melodies, then tested on held-out real windows (valid split) vs 1,024 fresh
  melodies; balanced accuracy, 0.5 = it cannot tell them from real tunes;
- ``style_critic``: the mean log-odds of "real" that the style run's own final critic
  (``OUT/critic.pt``) gives the model's melodies, next to what it gives held-out real
  tunes (test split: ``real_tunes``).

Usage: python docs/vae_results/critic_compare.py STYLE_RUN NAME=RUN [NAME=RUN ...]
Writes docs/vae_results/critic_compare.json and critic_compare.png.
"""

import json
import sys
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

torch.set_num_threads(1)
STEPS, N = 32, 1000
style_run = Path(sys.argv[1])
runs = {"prior": None, **{a.split("=", 1)[0]: Path(a.split("=", 1)[1]) for a in sys.argv[2:]}}

judge_state = torch.load(style_run / STATE_FILE, weights_only=False)
judge = StyleCritic(CriticConfig(**judge_state["config"]), DEFAULT_VOCAB, STEPS, "irish")
judge.net.load_state_dict(judge_state["net"])
test = melody_windows(load_corpus("irish", progress=False).split("test"), STEPS, 16, min_notes=1)

rows = {}
for name, run in runs.items():
    table, tokens = evaluate_model(run, n=N, steps=STEPS, seed=0, device="cpu", return_tokens=True)
    fresh = StyleCritic(CriticConfig(), DEFAULT_VOCAB, STEPS, "irish", seed=1)
    fresh.remember(evaluate_model(run, n=2048, steps=STEPS, seed=1, device="cpu", return_tokens=True)[1])
    fresh.update(600)
    c2st = fresh.accuracy(evaluate_model(run, n=1024, steps=STEPS, seed=2, device="cpu", return_tokens=True)[1],
                          n_real=len(fresh.heldout))
    rows[name] = {**{k: table[k] for k in (
        "notes_not_in_key", "starts_with_tonic", "leaps_resolved", "notes_in_motif", "notes_excessively_repeated",
        "novelty", "copied_notes", "copied_over_max", "log_p_prior_per_step", "diversity", "distinct_melodies",
        "kl_per_note", "notes_per_melody")},
        "c2st_accuracy": c2st["accuracy"], "c2st_accuracy_fake": c2st["accuracy_fake"],
        "style_critic": float(judge.log_odds(tokens).mean())}
    print(name, json.dumps(rows[name]), flush=True)
real_score = float(judge.log_odds(test).mean())
out = Path(__file__).parent
(out / "critic_compare.json").write_text(json.dumps({
    "runs": {k: (str(v) if v else "shipped-prior") for k, v in runs.items()}, "style_run": str(style_run),
    "real_tunes_style_critic": real_score, "n_real_test_windows": int(len(test)),
    "c2st": {"config": asdict(CriticConfig()), "updates": 600, "train_samples": 2048, "test_samples": 1024},
    "rows": rows}, indent=1) + "\n")

fig, axes = plt.subplots(1, 3, figsize=(16, 3.8))
curves = [r for r in read_csv(style_run / "metrics.csv") if "critic/accuracy" in r]
x = [r["timesteps"] for r in curves]
axes[0].plot(x, [r["critic/accuracy"] for r in curves], label="critic accuracy (fresh samples vs held-out real)")
axes[0].plot(x, [r["critic/accuracy_fake"] for r in curves], label="... on the fresh samples")
axes[0].set(title="style run: the critic", xlabel="env steps", ylim=(0, 1.02))
ax2 = axes[0].twinx()
ax2.plot(x, [r["reward/style"] for r in curves], c="grey", ls="--", label="reward/style per melody")
ax2.legend(fontsize=7, loc="lower left")
names = list(rows)
keys = ("c2st_accuracy", "novelty", "diversity", "notes_in_motif", "leaps_resolved", "starts_with_tonic")
width = 0.8 / len(names)
for i, name in enumerate(names):
    axes[1].bar(np.arange(len(keys)) + i * width, [rows[name][k] for k in keys], width, label=name)
axes[1].set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys, rotation=20, fontsize=8)
axes[1].set(title="1,000 melodies of 32 steps")
for i, name in enumerate(names):
    axes[2].bar(i, rows[name]["style_critic"], label=name)
axes[2].axhline(real_score, c="grey", ls=":", label="held-out real tunes")
axes[2].set(title="style run's final critic: mean log-odds of 'real'")
axes[2].set_xticks(range(len(names)), names)
for ax in axes:
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(out / "critic_compare.png", dpi=90)
print("real tunes (test split), style critic:", real_score)
