"""Human feedback that moves a taste: one experiment on the shipped prior, end to end
through the product's own commands (docs/results.md, "Human feedback").

1. 300 clips of 64 steps from the shipped prior go in the rating queue of a fresh SQLite
   database under OUT/home (no audio: simulated raters do not listen);
2. 6 simulated raters of TASTE give 100 star ratings each (600), through the ratings CSV
   import (`rlmusic simulate-raters`);
3. `rlmusic reward fit --model frozen` (default features, clip-disjoint held-out metrics;
   ``--reward-model-kind finetuned|auto`` for the other kinds);
4. `rlmusic tune --reward-model ... --steps 64` with no preset: the `human` preset (with
   ``--method dpo``: `rlmusic tune --method dpo` on the stored judgements instead);
5. ``-n`` (10,000) fresh melodies of the prior and of the tuned model (seed 12345): the taste's change
   in standard deviations of the prior's melodies with its 95% interval, the reward model's
   score and out-of-distribution ratio of both, KL per step and per note, notes out of key
   (RL Tuner's count), and the same change for every other taste. Written to OUT/result.json.

``--seeds K``: the experiment once per seed 0..K-1 (clips, raters, reward model and tuning
all take the seed), in OUT/seed0 .. OUT/seedK-1, then the taste's change, the KL and the
reward model's held-out accuracy as the mean and [min, max] over seeds (OUT/summary.json).
A result is read from several seeds, never one (docs/results.md).

``--control``: the same, but the stars are shuffled among the rated clips after the import
(same raters, same star counts, no taste left in them): what tuning against a reward model
moves by itself, the baseline each taste's change is read against.

    .venv/bin/python scripts/human_feedback_experiment.py TASTE OUT [--seeds 3 | --seed 0] [--timesteps 196608]
        [--control] [--config F.toml] [-n 10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def run(env: dict, *args) -> None:
    print("+ rlmusic", " ".join(map(str, args)), flush=True)
    subprocess.run([sys.executable, "-m", "rlmusic", *map(str, args)], check=True, env=env)


def queue_prior_clips(out: Path, n: int, steps: int, seed: int) -> None:
    import db
    from rlmusic.cli.generate import enqueue_rows
    from rlmusic.models.checkpoint import default_prior_dir, load_model
    from rlmusic.models.generate import sample_tokens, write_clips

    prior = load_model()
    rows = write_clips(sample_tokens(prior, n, steps, seed=seed), out / "clips", prior.vocab, "shipped-prior", seed)
    enqueue_rows(db.get_engine(), rows, out / "clips", default_prior_dir(), prior.vocab, audio=False)


def shuffle_stars(seed: int) -> int:
    """Permute the stored stars among the ratings (the control); returns how many."""
    from sqlalchemy import select, update

    import db
    from db.models import Rating

    engine = db.get_engine()
    with engine.begin() as c:
        rows = c.execute(select(Rating.id, Rating.stars).order_by(Rating.id)).all()
        stars = np.random.default_rng(seed).permutation([r.stars for r in rows])
        for (rating_id, _), new in zip(rows, stars, strict=True):
            c.execute(update(Rating).where(Rating.id == rating_id).values(stars=int(new)))
    return len(rows)


def effect(ta: np.ndarray, tb: np.ndarray) -> dict:
    """The change of a taste in standard deviations of the prior's melodies, with its 95% interval."""
    sd, diff = ta.std(ddof=1), tb.mean() - ta.mean()
    half = 1.96 * math.sqrt(ta.var(ddof=1) / len(ta) + tb.var(ddof=1) / len(tb))
    return {"effect_sd": float(diff / sd), "ci_low_sd": float((diff - half) / sd), "ci_high_sd": float((diff + half) / sd)}


def measure(out: Path, taste: str, steps: int, n: int = 10_000, seed: int = 12345) -> dict:
    from rlmusic.evaluation.table import evaluate_tokens
    from rlmusic.feedback.reward_model import load_reward_model
    from rlmusic.feedback.simulate import TASTES, taste_score
    from rlmusic.models.checkpoint import load_model
    from rlmusic.models.generate import sample_tokens

    prior, tuned = load_model(), load_model(out / "tuned")
    rm = load_reward_model(out / "rm")
    a, b = sample_tokens(prior, n, steps, seed=seed), sample_tokens(tuned, n, steps, seed=seed)
    ta, tb = taste_score(a, taste), taste_score(b, taste)
    ea = evaluate_tokens(a, prior.vocab, prior=prior, corpus="irish")
    eb = evaluate_tokens(b, prior.vocab, prior=prior, model=tuned, corpus="irish")
    metrics = json.loads((out / "rm" / "metrics.json").read_text())
    return {
        "taste": taste, "n": n, "seed": seed, "prior_taste": float(ta.mean()), "tuned_taste": float(tb.mean()),
        "prior_sd": float(ta.std(ddof=1)), **effect(ta, tb),
        "reward_model_score_prior": float(rm.score(a).mean()), "reward_model_score_tuned": float(rm.score(b).mean()),
        "ood_prior": float(np.median(rm.ood(a))), "ood_tuned": float(np.median(rm.ood(b))),
        "kl_per_step": eb["kl_per_step"], "kl_per_note": eb["kl_per_note"],
        "notes_not_in_key_prior": ea["rl_tuner/notes_not_in_key"],
        "notes_not_in_key_tuned": eb["rl_tuner/notes_not_in_key"],
        "reward_model_heldout": {k: metrics.get(k) for k in ("split", "star_pair_accuracy", "spearman",
                                                             "n_test_star_pairs", "n_train_ratings")},
        "every_taste": {t: effect(taste_score(a, t), taste_score(b, t)) for t in TASTES},
    }


def experiment(args: argparse.Namespace, out: Path, seed: int) -> dict:
    """One experiment into ``out`` with ``seed`` (resumes what is already there)."""
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RLMUSIC_HOME": str(out / "home")}
    os.environ["RLMUSIC_HOME"] = env["RLMUSIC_HOME"]
    if not (out / "rm" / "config.json").is_file():
        run(env, "db", "upgrade")
        queue_prior_clips(out, args.clips, args.steps, seed)
        run(env, "simulate-raters", "--taste", args.taste, "--n-raters", args.raters,
            "--per-rater", args.ratings // args.raters, "--noise", args.noise, "--seed", seed,
            "--csv-dir", out / "csv")
        if args.control:
            print(f"control: shuffled the stars of {shuffle_stars(seed)} ratings among the clips", flush=True)
        run(env, "reward", "fit", "--out", out / "rm", "--seed", seed, "--model", args.reward_model_kind)
    if not (out / "tuned" / "model.safetensors").is_file() and args.method == "dpo":  # the judgements, no reward model
        run(env, "tune", "--out", out / "tuned", "--method", "dpo", "--steps", args.steps, "--seed", seed,
            "--no-progress", "--force", *(["--config", Path(args.config).resolve()] if args.config else []))
    if not (out / "tuned" / "model.safetensors").is_file():
        resume = ["--resume"] if (out / "tuned" / "tune_config.json").is_file() else []
        run(env, "tune", "--out", out / "tuned", "--reward-model", out / "rm", "--steps", args.steps,
            "--timesteps", args.timesteps, "--seed", seed, "--no-progress", *resume,
            *(["--preset", "human", "--config", Path(args.config).resolve()] if args.config else []))
    result = {**measure(out, args.taste, args.steps, n=args.n), "control": args.control, "config": args.config,
              "training_seed": seed, "method": args.method}
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def summarise(results: list[dict]) -> dict:
    """The figures over seeds: mean and [min, max] (rlmusic.evaluation.seeds)."""
    from rlmusic.evaluation.seeds import spreads

    flat = [{"effect_sd": r["effect_sd"], "kl_per_step": r["kl_per_step"], "kl_per_note": r["kl_per_note"],
             "notes_not_in_key_tuned": r["notes_not_in_key_tuned"],
             "star_pair_accuracy": r["reward_model_heldout"]["star_pair_accuracy"],
             **{f"every_taste/{t}": e["effect_sd"] for t, e in r["every_taste"].items()}} for r in results]
    stats = spreads(flat, flat[0])
    for key, spread in stats.items():
        print(f"{key:28s} {spread.format()}")
    return {key: {"mean": v.mean, "min": v.low, "max": v.high, "values": list(v.values)} for key, v in stats.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("taste", help="contour, rhythm, pitch or ending")
    ap.add_argument("out", help="experiment folder (resumes what is already there)")
    ap.add_argument("--clips", type=int, default=300, help="prior clips in the queue")
    ap.add_argument("--raters", type=int, default=6, help="simulated raters")
    ap.add_argument("--ratings", type=int, default=600, help="star ratings in all")
    ap.add_argument("--noise", type=float, default=0.5, help="std of each rating's noise, in stars")
    ap.add_argument("--steps", type=int, default=64, help="steps per melody")
    ap.add_argument("--timesteps", type=int, default=196_608, help="PPO env steps")
    ap.add_argument("--seed", type=int, default=0, help="seed of clips, raters, reward model and tuning (one run)")
    ap.add_argument("--seeds", type=int, default=None, help="run seeds 0..K-1 into OUT/seedS and summarise them")
    ap.add_argument("-n", type=int, default=10_000, help="fresh melodies of the prior and the tuned model")
    ap.add_argument("--control", action="store_true", help="shuffle the stars among the clips before the fit")
    ap.add_argument("--config", default=None, help="TOML of tune config keys on top of the human preset "
                    "(default: none, the product's own choice)")
    ap.add_argument("--reward-model-kind", choices=("frozen", "finetuned", "auto"), default="frozen",
                    help="reward fit --model (default frozen: the kind every figure of docs/results.md was measured "
                         "with, before the fine-tuned kind existed)")
    ap.add_argument("--method", choices=("ppo", "dpo"), default="ppo",
                    help="ppo: tune against the reward model (the human preset); dpo: `tune --method dpo` on the "
                         "judgements themselves (the reward model is fitted all the same, to score the result)")
    args = ap.parse_args()
    if args.seeds is not None and args.seeds < 1:
        ap.error(f"--seeds must be >= 1, got {args.seeds}")
    out = Path(args.out).resolve()
    if args.seeds is None:
        print(json.dumps(experiment(args, out, args.seed), indent=1))
        return
    results = [experiment(args, out / f"seed{s}", s) for s in range(args.seeds)]
    print(f"{args.taste}{' (control)' if args.control else ''}: {args.seeds} seeds, {args.n} melodies each; "
          "mean [min, max] over seeds")
    summary = {"taste": args.taste, "control": args.control, "seeds": args.seeds, "n": args.n,
               "figures": summarise(results)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    main()
