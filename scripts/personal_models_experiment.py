"""Each rater's own model against the population's: two groups of opposed tastes (issue 21,
item 4), end to end on the shipped prior.

1. 300 clips of 64 steps from the shipped prior;
2. three simulated raters who like TASTE and three who dislike it (the same raters with their
   sharpness negated), 100 star ratings each on their own random clips (noise 0.5 stars):
   300 judgements a group;
3. reward models: the population's (frozen-feature heads on all 600) and the personal models of
   one lover and one hater (`rlmusic.feedback.personal`, shrunk toward the population's), each
   with its control: the same rater's stars shuffled among their clips;
4. `rlmusic tune --reward-model RM --steps 64 --timesteps N` for each (the human preset);
5. ``-n`` fresh melodies of the prior and of each tuned model: the taste's change in standard
   deviations of the prior's melodies (a lover's taste is TASTE, a hater's its negative), notes
   per melody, KL per step. Written to OUT/result.json.

    .venv/bin/python scripts/personal_models_experiment.py TASTE OUT [--seed 0] [--timesteps 196608] [-n 10000]
        [--runs population lover lover-control hater hater-control]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

RUNS = ("population", "lover", "lover-control", "hater", "hater-control")


def rows_of(taste: str, seed: int, clips: np.ndarray) -> list[dict]:
    from rlmusic.feedback.simulate import make_raters, taste_score

    lovers = make_raters(3, taste, 0.5, seed)
    haters = [dataclasses.replace(r, name=f"sim-anti-{taste}-{i}", sharpness=-r.sharpness)
              for i, r in enumerate(make_raters(3, taste, 0.5, seed + 500))]
    rng = np.random.default_rng([seed, 3])
    values = taste_score(clips, taste)
    rows = []
    for rater in lovers + haters:
        idx = rng.choice(len(clips), 100, replace=False)
        for i, stars in zip(idx, rater.stars(values[idx], rng)):
            rows.append({"rating_id": len(rows) + 1, "clip_id": int(i), "rater": rater.name, "stars": int(stars),
                         "tokens": clips[i].tolist()})
    return rows


def shuffled(rows: list[dict], rater: str, seed: int) -> list[dict]:
    """``rows`` with ``rater``'s stars permuted among their clips (the control)."""
    mine = [i for i, r in enumerate(rows) if r["rater"] == rater]
    stars = np.random.default_rng([seed, 5]).permutation([rows[i]["stars"] for i in mine])
    out = [dict(r) for r in rows]
    for i, s in zip(mine, stars):
        out[i]["stars"] = int(s)
    return out


def fit_models(out: Path, taste: str, seed: int, clips: np.ndarray) -> dict[str, str]:
    from rlmusic.feedback.fit import RewardModelConfig, fit_reward_model
    from rlmusic.feedback.personal import fit_personal

    rows = rows_of(taste, seed, clips)
    lover, hater = f"sim-{taste}-0", f"sim-anti-{taste}-0"
    config = RewardModelConfig(model="frozen", seed=seed)
    population = fit_reward_model(rows, [], None, config)
    made = {"population": population}
    for name, rater in (("lover", lover), ("hater", hater)):
        made[name] = fit_personal(population, rows, [], rater)
        control_rows = shuffled(rows, rater, seed)
        made[f"{name}-control"] = fit_personal(fit_reward_model(control_rows, [], None, config), control_rows, [],
                                               rater)
    dirs = {}
    for name, model in made.items():
        model.save(out / f"rm-{name}")
        dirs[name] = str(out / f"rm-{name}")
        print(f"{name}: shrink {model.meta.get('personal', {}).get('shrink', '-')}, metrics "
              f"{ {k: model.metrics.get(k) for k in ('star_pair_accuracy', 'spearman')} }", flush=True)
    return dirs


def measure(out: Path, taste: str, runs: list[str], n: int) -> dict:
    from rlmusic.evaluation.table import evaluate_tokens
    from rlmusic.feedback.simulate import taste_score
    from rlmusic.models.checkpoint import load_model
    from rlmusic.models.generate import sample_tokens

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from human_feedback_experiment import effect

    prior = load_model()
    a = sample_tokens(prior, n, 64, seed=12345)
    ta = taste_score(a, taste)
    result = {"prior_notes": float((a >= 2).sum(1).mean())}
    for name in runs:
        tuned = load_model(out / f"tuned-{name}")
        b = sample_tokens(tuned, n, 64, seed=12345)
        ev = evaluate_tokens(b, prior.vocab, prior=prior, model=tuned, corpus="irish")
        result[name] = {"lovers_taste": effect(ta, taste_score(b, taste)),
                        "haters_taste": effect(-ta, -taste_score(b, taste)),
                        "notes_per_melody": float((b >= 2).sum(1).mean()), "kl_per_step": ev["kl_per_step"]}
        print(f"{name:14s} lovers' taste {result[name]['lovers_taste']['effect_sd']:+.2f} SD, "
              f"notes {result[name]['notes_per_melody']:.1f} (prior {result['prior_notes']:.1f}), "
              f"KL {ev['kl_per_step']:.3f}/step", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("taste")
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timesteps", type=int, default=196_608)
    ap.add_argument("-n", type=int, default=10_000)
    ap.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from rlmusic.models.checkpoint import load_model
    from rlmusic.models.generate import sample_tokens

    if not (out / "rm-population" / "config.json").is_file():
        fit_models(out, args.taste, args.seed, sample_tokens(load_model(), 300, 64, seed=args.seed))
    for name in args.runs:
        if (out / f"tuned-{name}" / "model.safetensors").is_file():
            continue
        resume = ["--resume"] if (out / f"tuned-{name}" / "tune_config.json").is_file() else []
        cmd = [sys.executable, "-m", "rlmusic", "tune", "--out", str(out / f"tuned-{name}"), "--reward-model",
               str(out / f"rm-{name}"), "--steps", "64", "--timesteps", str(args.timesteps), "--seed", str(args.seed),
               "--no-progress", "--threads", "1", *resume]
        print("+", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, check=True, env=os.environ)
    result = {"taste": args.taste, "seed": args.seed, "timesteps": args.timesteps, "n": args.n,
              **measure(out, args.taste, args.runs, args.n)}
    (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
