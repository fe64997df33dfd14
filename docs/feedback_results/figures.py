"""Before/after figures of the feedback rounds in docs/results.md ("A full feedback round").

Usage: python docs/feedback_results/figures.py PRIOR ROUND_DIR [ROUND_DIR ...]
"""

import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from rlmusic.feedback.simulate import taste_score  # noqa: E402
from rlmusic.models.checkpoint import load_model  # noqa: E402
from rlmusic.models.generate import sample_tokens  # noqa: E402

prior_dir, rounds = sys.argv[1], sys.argv[2:]
names = ["prior"] + [Path(r).name for r in rounds]
models = [load_model(prior_dir)] + [load_model(Path(r) / "model") for r in rounds]
tastes = [taste_score(sample_tokens(m, 512, 32, seed=99), "rising") for m in models]
rows = []
for name, t, r in zip(names, tastes, [None, *rounds]):
    s = json.loads((Path(r) / "round.json").read_text()) if r else None
    d = (t.mean() - tastes[0].mean()) / math.sqrt((t.var(ddof=1) + tastes[0].var(ddof=1)) / 2)
    half = 1.96 * math.sqrt(t.var(ddof=1) / len(t) + tastes[0].var(ddof=1) / len(t))
    row = {"model": name, "taste_mean": float(t.mean()), "d_vs_prior": float(d),
           "diff_ci95": [float(t.mean() - tastes[0].mean() - half), float(t.mean() - tastes[0].mean() + half)]}
    if s:
        row |= {k: s["after"][k] for k in ("kl_per_note", "notes_not_in_key", "notes_excessively_repeated",
                                           "theory_reward_per_note", "structure")}
        row |= {"ratings": s["n_ratings"], "comparisons": s["n_comparisons"],
                "rm_pairwise_accuracy": s["reward_metrics"]["pairwise_accuracy"],
                "rm_spearman": s["reward_metrics"]["spearman"], "guard_triggered": s["guard"]["triggered"]}
    rows.append(row)
print(json.dumps(rows, indent=1))
out = Path(__file__).parent
(out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
bins = np.linspace(-3, 3, 25)
for name, t in zip(names, tastes):
    ax[0].hist(np.clip(t, -3, 3), bins, histtype="step", lw=2, label=f"{name} (mean {t.mean():+.2f})")
ax[0].set(title="simulated taste 'rising' of 512 samples", xlabel="taste units (~stars)")
ax[0].legend(fontsize=8)
for r in rounds:
    g = json.loads((Path(r) / "model" / "guard.json").read_text())["history"]
    x = [h["timesteps"] for h in g]
    ax[1].plot(x, [h["human_score"] for h in g], label=f"{Path(r).name}: reward-model score")
    ax[1].plot(x, [h["kl_per_note"] for h in g], "--", label=f"{Path(r).name}: KL nats/note")
ax[1].set(title="during tuning (per rollout)", xlabel="env steps")
ax[1].legend(fontsize=8)
fig.tight_layout()
fig.savefig(out / "taste_and_guard.png", dpi=90)
