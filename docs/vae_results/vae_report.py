"""The VAE figures of docs/vae.md: held-out reconstruction on the test split, the KL term,
and interpolation smoothness (latent paths vs a token-space mix) with a plot.

Also: the same reconstruction on the test split's Bach chorale sopranos, the KL of each
latent dimension, and (2-bar VAEs) the hand-written melodies of tests/data/written_melodies.json.

Usage: python docs/vae_results/vae_report.py VAE_DIR [NAME [METRICS_CSV]]
Writes docs/vae_results/NAME.json and NAME.png (NAME defaults to the folder's name; the
training curve comes from METRICS_CSV, default VAE_DIR/metrics.csv).
"""

import json
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from rlmusic.corpus.cache import load_corpus  # noqa: E402
from rlmusic.evaluation.latent import interpolation_report  # noqa: E402
from rlmusic.models.vae import load_vae  # noqa: E402
from rlmusic.models.vae_train import accuracies, evaluate_vae  # noqa: E402
from rlmusic.models.windows import melody_windows  # noqa: E402
from rlmusic.music.representation import Note, notes_to_tokens  # noqa: E402
from rlmusic.tuning.curves import read_csv  # noqa: E402

torch.set_num_threads(1)
vae_dir = Path(sys.argv[1])
name = sys.argv[2] if len(sys.argv) > 2 else vae_dir.name
vae = load_vae(vae_dir)
c = vae.config
prov = json.loads((vae_dir / "config.json").read_text())["provenance"]
corpus = load_corpus(prov["extra"]["vae_train"]["corpus"], vocab=vae.vocab, progress=False)
test = melody_windows(corpus.split("test"), c.window, hop=c.window)  # non-overlapping, tunes never trained on
report = interpolation_report(vae, test, n_pairs=300, n_points=7, seed=0)


def held_out(windows):
    """Greedy free-running reconstruction from mu and the KL of each latent dimension."""
    figures = evaluate_vae(vae, windows)
    with torch.no_grad():
        mu, logvar = vae.encode(torch.as_tensor(windows))
    kl = vae.kl_per_dim(mu, logvar).mean(0)
    return {**figures, "n_windows": int(len(windows)), "kl_per_dim_min": float(kl.min()),
            "kl_per_dim_median": float(kl.median()), "kl_per_dim_max": float(kl.max())}


bach = load_corpus("bach", vocab=vae.vocab, progress=False)  # chorale sopranos; the test split is never trained on
report["bach_test_sopranos"] = held_out(melody_windows(bach.split("test"), c.window, hop=c.window))
report["heldout_kl"] = held_out(test)
if c.window == 32:  # the two-bar melodies tests/test_vae.py writes (tests/data/written_melodies.json)
    written = json.loads((Path(__file__).parents[2] / "tests" / "data" / "written_melodies.json").read_text())
    rows = np.stack([notes_to_tokens([Note(s, d, p) for p, s, d in notes], vae.vocab, c.window)
                     for notes in written["melodies"].values()])
    got = vae.decode(vae.posterior_mean(torch.as_tensor(rows)))
    report["written"] = {"all": accuracies(got, torch.as_tensor(rows)), "each": {
        name: accuracies(got[i : i + 1], torch.as_tensor(rows[i : i + 1])) for i, name in enumerate(written["melodies"])}}
report["vae"] = {"dir": str(vae_dir), "config": vars(c), "train": prov["extra"]["vae_train"],
                 "valid_metrics": prov["metrics"], "params": sum(p.numel() for p in vae.parameters())}
out = Path(__file__).parent
(out / f"{name}.json").write_text(json.dumps(report, indent=1) + "\n")
print(json.dumps({k: report[k] for k in ("heldout", "endpoint_reconstruction", "inputs", "bach_test_sopranos",
                                         "heldout_kl", "written") if k in report}, indent=1))

fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
x = [i / (report["n_points"] - 1) for i in range(report["n_points"])]
for label, style in (("latent", "o-"), ("token_mix", "s--")):
    s = report[label]
    axes[0].plot(x, s["from_a"], style, label=f"{label}: differs from A")
    axes[0].plot(x, s["from_b"], style, label=f"{label}: differs from B")
    axes[1].plot(x, s["mean_interval"], style, label=label)
    axes[2].plot(x, s["leap_share"], style, label=f"{label}: leaps > M3")
    axes[2].plot(x, s["in_key"], style, label=f"{label}: notes in key")
axes[1].axhline(report["inputs"]["mean_interval"], c="grey", ls=":", label="held-out inputs")
axes[2].axhline(report["inputs"]["in_key"], c="grey", ls=":", label="inputs: in key")
axes[2].axhline(report["inputs"]["leap_share"], c="grey", ls="-.", label="inputs: leaps")
axes[0].set(title="share of steps differing from the ends", xlabel="alpha")
axes[1].set(title="mean |interval| (semitones)", xlabel="alpha")
axes[2].set(title="shares of notes / intervals", xlabel="alpha", ylim=(0, 1.02))
rows = read_csv(Path(sys.argv[3]) if len(sys.argv) > 3 else vae_dir / "metrics.csv")
axes[3].plot([r["epoch"] for r in rows], [r["valid_token_accuracy"] for r in rows], "o-", label="tokens (greedy)")
axes[3].plot([r["epoch"] for r in rows], [r["valid_onset_accuracy"] for r in rows], "s-", label="onsets (greedy)")
axes[3].set(title="held-out reconstruction (valid split)", xlabel="epoch", ylim=(0, 1))
for ax in axes:
    ax.legend(fontsize=7)
fig.suptitle(f"{name}: {report['n_pairs']} pairs of held-out {c.window}-step windows, {report['n_points']} points")
fig.tight_layout()
fig.savefig(out / f"{name}.png", dpi=90)
