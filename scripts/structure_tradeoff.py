"""Structure against originality against KL, across tuning runs of the structure preset with
other weights (docs/results.md, "Structure with originality").

Each run's tuned model (and the shipped prior) is evaluated on the same footing: 10,000
melodies of 128 steps, sampling seed 0, novelty and copied spans against the prior's training
corpus, KL to the prior per step. Prints a table and draws structure vs novelty (point
size: diversity, colour: KL), with the held-out tunes' structure as a line. A run path with
``{seed}`` and ``--seeds K`` is one configuration trained with K seeds: its row is the mean
over seeds, printed with [min, max] (``spread`` in the JSON).

    .venv/bin/python scripts/structure_tradeoff.py 'RUN-s{seed}' [RUN ...] --seeds 3 --out docs/results/structure_tradeoff.png
    .venv/bin/python scripts/structure_tradeoff.py --redraw docs/results/structure_tradeoff.json --out F.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rlmusic.corpus.cache import load_corpus
from rlmusic.evaluation.seeds import expand_seeds, spreads
from rlmusic.evaluation.table import evaluate_model
from rlmusic.models.checkpoint import load_model, load_provenance
from rlmusic.models.generate import sample_tokens
from rlmusic.music.originality import batch_diversity, unshared_ngrams
from rlmusic.music.structure import structure_scores


def real_vs_prior(real: np.ndarray, steps: int, seed: int, draws: int = 20) -> dict:
    """Diversity of the held-out tunes and of as many prior samples (both measures depend
    on the batch size, so they are compared at the tunes' own count, averaged over draws)."""
    prior = sample_tokens(load_model(), len(real) * draws, steps, seed=seed).reshape(draws, len(real), steps)
    return {"real_diversity": batch_diversity(real), "real_unshared_ngrams": float(unshared_ngrams(real).mean()),
            "prior_diversity_same_n": float(np.mean([batch_diversity(p) for p in prior])),
            "prior_unshared_ngrams_same_n": float(np.mean([unshared_ngrams(p).mean() for p in prior]))}


def weights(run: Path) -> str:
    file = run / "tune_config.json"  # a run folder; a model directory has it in its provenance
    stored = json.loads(file.read_text())["config"] if file.is_file() else load_provenance(run).extra["tune_config"]
    memory = f" (memory {stored['diversity_memory']})" if stored.get("diversity_memory") else ""
    return (f"structure {stored['structure_weight']:g}, novelty {stored['novelty_weight']:g}, "
            f"diversity {stored['diversity_weight']:g}{memory}")


def short(label: str) -> str:
    """'structure 30, novelty 350, diversity 200 (memory 256)' -> 's30 n350 d200 m256'."""
    for word, letter in (("structure ", "s"), ("novelty ", "n"), ("diversity ", "d"), ("(memory ", "m")):
        label = label.replace(word, letter)
    return label.replace(",", "").replace(")", "")


def draw(rows: list[dict], real_structure: float, n: int, steps: int, out: str) -> None:
    """Structure against novelty, point size diversity, colour KL; the held-out tunes' structure as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    kl = np.array([r["kl_per_step"] for r in rows])
    points = ax.scatter([r["novelty"] for r in rows], [r["structure"] for r in rows], c=kl, cmap="viridis",
                        s=[40 + 600 * r["diversity"] for r in rows], vmin=0, vmax=max(0.5, kl.max()))
    for r in rows:
        ax.annotate(short(r["run"]), (r["novelty"], r["structure"]), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.axhline(real_structure, ls="--", c="grey", label=f"held-out tunes' structure ({real_structure:.3f})")
    ax.axvline(rows[0]["novelty"], ls=":", c="grey", label=f"prior's novelty ({rows[0]['novelty']:.3f})")
    fig.colorbar(points, label="KL to the prior, nats per step")
    ax.set(xlabel="novelty (vs the prior's training corpus)", ylabel="structure",
           title=f"{n} melodies of {steps} steps each (point size: diversity)")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="tuning run folders or model directories (each a tuned model)")
    ap.add_argument("--redraw", default=None, help="draw --out from a --json written before (no evaluation)")
    ap.add_argument("-n", type=int, default=10_000, help="melodies per model and seed")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds per run: {seed} = 0..K-1")
    ap.add_argument("--steps", type=int, default=128, help="steps per melody")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--out", default=None, help="PNG to draw")
    ap.add_argument("--json", default=None, help="write the rows as JSON")
    args = ap.parse_args()
    if args.redraw:
        saved = json.loads(Path(args.redraw).read_text())
        draw(saved["rows"], saved["real_structure"], args.n, args.steps, args.out or "tradeoff.png")
        return
    if not args.runs:
        ap.error("name at least one run (or --redraw a JSON)")
    corpus = load_corpus("irish", progress=False)
    real = np.stack([s[: args.steps] for s in corpus.split("test") if len(s) >= args.steps])
    real_structure = float(structure_scores(real).mean())
    try:
        groups = [("shipped prior", None, [None])] + [
            (weights(Path(expand_seeds(r, args.seeds)[0])), r, expand_seeds(r, args.seeds)) for r in args.runs]
    except ValueError as exc:
        ap.error(str(exc))
    keys = ("structure", "novelty", "copied_notes", "diversity", "unshared_ngrams", "kl_per_step", "kl_per_note",
            "rl_tuner/notes_not_in_key", "structure_repetition", "structure_variety")
    rows = []
    for name, model, dirs in groups:
        stats = spreads([evaluate_model(d, n=args.n, steps=args.steps, seed=args.seed, device="cpu") for d in dirs],
                        keys)
        rows.append({"run": name, "model": model, "seeds": len(dirs), **{k: v.mean for k, v in stats.items()},
                     "spread": {k: [v.low, v.high] for k, v in stats.items()},
                     "values": {k: list(v.values) for k, v in stats.items()}})
    same_n = real_vs_prior(real, args.steps, args.seed)
    print(f"held-out tunes (test split, {len(real)} of >= {args.steps} steps): structure {real_structure:.3f}, "
          f"diversity {same_n['real_diversity']:.3f} (prior at the same count {same_n['prior_diversity_same_n']:.3f}), "
          f"unshared n-grams {same_n['real_unshared_ngrams']:.3f} (prior {same_n['prior_unshared_ngrams_same_n']:.3f})")
    print(f"{'run':45s} {'struct':>7s} {'novelty':>7s} {'copied':>7s} {'divers':>7s} {'unshar':>7s} {'KL/step':>7s}")
    for r in rows:
        print(f"{r['run']:45s} {r['structure']:7.3f} {r['novelty']:7.3f} {r['copied_notes']:7.2f} "
              f"{r['diversity']:7.3f} {r['unshared_ngrams']:7.3f} {r['kl_per_step']:7.3f}")
        if r["seeds"] > 1:
            print(f"{'  [min, max] over ' + str(r['seeds']) + ' seeds':45s} " + " ".join(
                f"{lo:.3f}-{hi:.3f}".rjust(7) for lo, hi in (r["spread"][k] for k in (
                    "structure", "novelty", "copied_notes", "diversity", "unshared_ngrams", "kl_per_step"))))
    if args.json:
        Path(args.json).write_text(json.dumps({"real_structure": real_structure, **same_n, "rows": rows}, indent=1)
                                   + "\n")
    if args.out:
        draw(rows, real_structure, args.n, args.steps, args.out)

if __name__ == "__main__":
    main()
