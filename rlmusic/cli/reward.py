"""``rlmusic reward fit|prioritise|score``: fit a reward model on every stored rating and
comparison (read from the database here and handed to ``rlmusic.feedback.fit`` as plain
rows), queue the clips its ensemble disagrees on first, or print scores of a manifest.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.feedback.fit import (
    SPLITS,
    TIES,
    RewardModelConfig,
    fit_reward_model,
    format_metrics,
    prioritise,
)
from rlmusic.feedback.reward_model import RewardModel, load_reward_model
from rlmusic.models.generate import read_manifest
from rlmusic.runtime import read_table, resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    fit = sub.add_parser("fit", help="fit a reward model on every stored rating and comparison")
    fit.add_argument("--out", required=True, help="reward model directory to write")
    fit.add_argument("--prior", help="model directory whose frozen LSTM gives the features (default: shipped prior)")
    fit.add_argument("--min-ratings", type=int, help="refuse to fit on fewer judgements (default 20)")
    fit.add_argument("--ensemble", type=int, help="K heads (bootstrap resamples) for the uncertainty (default 5)")
    fit.add_argument("--seed", type=int, help="seed of the split, bootstrap and heads (default 0)")
    fit.add_argument("--split", choices=SPLITS, help="held-out evaluation split (default rater)")
    fit.add_argument("--ties", choices=TIES, help="ties as half-wins (default) or skipped")
    fit.add_argument("--config", help="RewardModelConfig keys as TOML or JSON (flags override it)")
    add_device(fit)
    add_threads(fit)
    pri = sub.add_parser("prioritise", help="active selection: queue the clips the ensemble disagrees on first")
    pri.add_argument("--reward-model", required=True, help="reward model directory")
    pri.add_argument("--manifest", required=True, action="append",
                     help="manifest.jsonl (or its folder) of enqueued clips (rlmusic generate --enqueue); repeatable")
    score = sub.add_parser("score", help="print the score and uncertainty of the clips of a manifest")
    score.add_argument("--reward-model", required=True, help="reward model directory")
    score.add_argument("--manifest", required=True, help="manifest.jsonl or its folder")


def config_from_args(args: argparse.Namespace) -> RewardModelConfig:
    data: dict[str, Any] = read_table(args.config) if args.config else {}
    for key in ("min_ratings", "ensemble", "seed", "split", "ties"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    return RewardModelConfig.from_dict(data)


def fit_from_db(out: str | Path, prior: str | Path | None = None, config: RewardModelConfig | None = None,
                device: str = "auto", engine=None) -> RewardModel:
    """Read every rating and comparison from the database, fit, save into ``out``."""
    import db

    engine = engine or db.get_engine()
    db.check_schema(engine)
    model = fit_reward_model(db.star_rows(engine), db.pair_rows(engine), prior, config,
                             device=resolve_device(device))
    model.save(out)
    return model


def main(args: argparse.Namespace) -> int:
    if args.action == "fit":
        apply_threads(args)
        model = fit_from_db(args.out, args.prior, config_from_args(args), args.device)
        d = model.meta["data"]
        print(f"reward fit: {d['n_ratings']} star ratings + {d['n_comparisons']} comparisons "
              f"({d['n_ties']} ties, {d['ties']}) from {d['n_raters']} raters")
        print("reward fit: " + format_metrics(model.metrics))
        print(f"reward fit: wrote {args.out}")
        return 0
    model = load_reward_model(args.reward_model)
    if args.action == "prioritise":
        import db

        clips = [row for path in args.manifest for row in read_manifest(path)]
        scores = prioritise(model, clips)
        if not scores:
            raise ValueError("no enqueued clips (with clip_id) in the manifests")
        engine = db.get_engine()
        db.check_schema(engine)
        db.set_clip_priority(engine, scores)
        values = np.array(list(scores.values()))
        print(f"reward prioritise: set the priority of {len(scores)} clips to the ensemble std "
              f"(mean {values.mean():.3f}, max {values.max():.3f}); raters see the highest first "
              f"with next_clip(order='priority')")
        return 0
    rows = read_manifest(args.manifest)
    tokens = np.array([r["tokens"] for r in rows], dtype=np.int64)
    mean, std = model.score_with_uncertainty(tokens)
    for r, m, s in zip(rows, mean, std):
        print(f"{r.get('clip_id')}\t{r.get('midi')}\t{m:+.3f}\t{s:.3f}")
    return 0
