"""``rlmusic reward fit|prioritise|score``: fit a reward model on every stored rating and
comparison (read from the database here and handed to ``rlmusic.feedback.fit`` as plain
rows), queue the clips its ensemble disagrees on first, or print scores of a manifest.

``reward fit`` leaves out the comparisons of studies' gold checks (they test attention, not
taste); with ``--exclude-gold-failures`` also every judgement of raters who failed more
than ``--max-gold-fail`` of their gold checks. It prints the raters' own agreement on the
comparisons it fits (``rlmusic.feedback.agreement``) next to the model's held-out pairwise
accuracy, and saves it in the model's ``config.json`` (``rater_agreement``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np

from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.feedback.agreement import pairwise_agreement
from rlmusic.feedback.fit import (
    MODELS,
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
    fit.add_argument("--model", choices=MODELS,
                     help="frozen: heads on the frozen prior's features; finetuned: the prior's LSTM fine-tuned with "
                          "a scalar head; auto: fit both, keep the better held-out accuracy (default)")
    fit.add_argument("--config", help="RewardModelConfig keys as TOML or JSON (flags override it)")
    fit.add_argument("--rater", help="fit this rater's own model: their judgements, shrunk toward the population's "
                                     "model (the shrink chosen by held-out accuracy on their own judgements)")
    fit.add_argument("--population", help="with --rater: the population reward model to start from (default: fit one "
                                          "of frozen-feature heads on every judgement first)")
    fit.add_argument("--exclude-gold-failures", action="store_true",
                     help="leave out every judgement of raters who failed more than --max-gold-fail of the "
                          "gold checks of the studies (rlmusic study create --gold K)")
    fit.add_argument("--max-gold-fail", type=float, default=None,
                     help="with --exclude-gold-failures: the share of failed gold checks a rater may have "
                          "(default 0.25)")
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
    for key in ("min_ratings", "ensemble", "seed", "split", "ties", "model"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    return RewardModelConfig.from_dict(data)


def rows_from_db(engine, exclude_gold_failures: bool = False, max_gold_fail: float | None = None
                 ) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """(star rows, pair rows, what was left out): every rating and comparison but those
    of gold checks and, with ``exclude_gold_failures``, those of raters who failed more
    than ``max_gold_fail`` of their gold checks."""
    import db

    limit = db.MAX_GOLD_FAIL if max_gold_fail is None else max_gold_fail
    if not 0 <= limit <= 1:
        raise ValueError(f"--max-gold-fail must be a share in 0..1, got {limit}")
    gold_ids = db.gold_comparison_ids(engine)
    excluded = sorted(name for name, r in db.gold_record(engine).items()
                      if exclude_gold_failures and r["failed"] / r["checks"] > limit)
    stars = [r for r in db.star_rows(engine) if r["rater"] not in excluded]
    pairs = [r for r in db.pair_rows(engine) if r["comparison_id"] not in gold_ids]
    n_gold = len(gold_ids)
    kept = [r for r in pairs if r["rater"] not in excluded]
    left_out = {"gold_comparisons": n_gold, "raters_excluded": excluded, "max_gold_fail": limit,
                "comparisons_of_excluded": len(pairs) - len(kept)}
    return stars, kept, left_out


def fit_personal_from_db(out: str | Path, rater: str, population: str | Path | None = None, prior=None,
                         config: RewardModelConfig | None = None, device: str = "auto", engine=None) -> RewardModel:
    """``reward fit --rater``: the rater's personal model (``rlmusic.feedback.personal``)."""
    import db
    from rlmusic.feedback.personal import fit_personal, rater_rows

    engine = engine or db.get_engine()
    db.check_schema(engine)
    stars, pairs, _ = rows_from_db(engine)
    mine = rater_rows(stars, pairs, rater)
    if not mine[0] and not mine[1]:
        names = sorted({str(r["rater"]) for r in [*stars, *pairs]})
        raise ValueError(f"no judgements by rater {rater!r} in the database; raters with judgements: "
                         f"{', '.join(names) or 'none'}")
    if population is not None:
        base = load_reward_model(population)
    else:
        from dataclasses import replace

        base = fit_reward_model(stars, pairs, prior, replace(config or RewardModelConfig(), model="frozen"),
                                device=resolve_device(device))
    model = fit_personal(base, stars, pairs, rater, config)
    model.meta["personal"]["population"] = str(Path(population).resolve()) if population else "fitted on every judgement"
    model.save(out)
    return model


def fit_from_db(out: str | Path, prior: str | Path | None = None, config: RewardModelConfig | None = None,
                device: str = "auto", engine=None, exclude_gold_failures: bool = False,
                max_gold_fail: float | None = None) -> RewardModel:
    """Read the ratings and comparisons from the database (``rows_from_db``), fit, and save
    into ``out`` with the raters' own agreement (``meta["rater_agreement"]``) and what was
    left out (``meta["left_out"]``)."""
    import db

    engine = engine or db.get_engine()
    db.check_schema(engine)
    stars, pairs, left_out = rows_from_db(engine, exclude_gold_failures, max_gold_fail)
    model = fit_reward_model(stars, pairs, prior, config, device=resolve_device(device))
    model.meta["rater_agreement"] = pairwise_agreement(pairs)
    model.meta["left_out"] = left_out
    model.save(out)
    return model


def agreement_line(model: RewardModel) -> str:
    """The raters' agreement next to the model's held-out pairwise accuracy."""
    a, m = model.meta["rater_agreement"], model.metrics
    if not a["n_rater_pairs"]:
        ceiling = "n/a (no two raters decided the same pair of clips)"
    else:
        ceiling = f"{a['pairwise_agreement']:.3f} over {a['n_rater_pairs']} pairs of raters on {a['n_shared_pairs']} pairs of clips"
    accuracy = m.get("pairwise_accuracy")
    shown = "n/a" if accuracy is None or not math.isfinite(accuracy) else f"{accuracy:.3f}"
    return (f"raters' own agreement {ceiling}; the model's held-out pairwise accuracy {shown} "
            "(agreement is the ceiling: no model predicts a rater better than another rater does)")


def model_line(model: RewardModel) -> str:
    """Which kind of model was fitted and, with ``--model auto``, why it was kept."""
    kind = model.meta["head"].get("kind", "frozen")
    what = {"frozen": "heads on the frozen prior's features",
            "finetuned": f"the prior's LSTM fine-tuned ({model.meta['head'].get('layers')} layers) with a scalar head"}
    auto = model.metrics.get("auto")
    if not auto:
        return f"model: {kind} ({what[kind]})"
    other = "finetuned" if kind == "frozen" else "frozen"

    def acc(k: str) -> str:
        a = auto[k]["heldout_accuracy"]
        return "n/a" if a is None or not math.isfinite(a) else f"{a:.3f}"

    return (f"model: {kind} ({what[kind]}), kept by --model auto: held-out accuracy {acc(kind)} against "
            f"{acc(other)} for {other}")


def main(args: argparse.Namespace) -> int:
    if args.action == "fit":
        apply_threads(args)
        if args.max_gold_fail is not None and not args.exclude_gold_failures:
            raise ValueError("--max-gold-fail goes with --exclude-gold-failures")
        if args.population and not args.rater:
            raise ValueError("--population goes with --rater")
        if args.rater:
            model = fit_personal_from_db(args.out, args.rater, args.population, args.prior, config_from_args(args),
                                         args.device)
            p = model.meta["personal"]
            shrink = "the population's model itself" if math.isinf(p["shrink"]) else f"shrink {p['shrink']:g}"
            tried = ", ".join(f"{k}: {v['heldout_accuracy']:.3f}" for k, v in p["held_out"].items())
            print(f"reward fit: {args.rater}'s own model from {p['n_ratings']} star ratings + {p['n_comparisons']} "
                  f"comparisons of theirs: {shrink}, chosen by held-out accuracy on their own judgements "
                  f"(shrink: accuracy {tried or 'none: too few to hold out'})")
            print(f"reward fit: wrote {args.out}")
            return 0
        model = fit_from_db(args.out, args.prior, config_from_args(args), args.device,
                            exclude_gold_failures=args.exclude_gold_failures, max_gold_fail=args.max_gold_fail)
        d, left = model.meta["data"], model.meta["left_out"]
        print(f"reward fit: left out {left['gold_comparisons']} gold-check comparisons"
              + (f"; {len(left['raters_excluded'])} raters who failed more than {left['max_gold_fail']:.0%} of their "
                 f"gold checks ({', '.join(left['raters_excluded']) or 'none'})" if args.exclude_gold_failures else ""))
        print(f"reward fit: {d['n_ratings']} star ratings + {d['n_comparisons']} comparisons "
              f"({d['n_ties']} ties, {d['ties']}) from {d['n_raters']} raters")
        print("reward fit: " + format_metrics(model.metrics))
        print("reward fit: " + model_line(model))
        print("reward fit: " + agreement_line(model))
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
