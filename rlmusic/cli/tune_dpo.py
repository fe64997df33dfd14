"""``rlmusic tune --method dpo``: the run built from the database's judgements (offline)
or from a reward model (online, ``dpo_online_pairs``); ``rlmusic.tuning.dpo_run`` trains."""

from __future__ import annotations

import argparse

from rlmusic.tuning.config import TuneConfig


def judgement_pairs(config: TuneConfig):
    """(winners, losers, counts) and the ids behind them from ``RLMUSIC_DATABASE_URL``:
    every rater's comparisons but the gold checks' (or ``dpo_rater``'s alone) and star
    pairs within each rater; what was left out is printed, counted by reason."""
    import db
    from rlmusic.cli.reward import rows_from_db
    from rlmusic.tuning.dpo import preference_pairs

    engine = db.get_engine(db.database_url())
    db.check_schema(engine)
    stars, pairs, left_out = rows_from_db(engine)
    if config.dpo_rater is not None and not any(r["rater"] == config.dpo_rater for r in stars + pairs):
        raise ValueError(f"rater {config.dpo_rater!r} has no judgement of a melody in the database")
    winners, losers, counts = preference_pairs(stars, pairs, config.steps, config.dpo_rater, seed=config.seed)
    who = f"rater {config.dpo_rater}" if config.dpo_rater else "every rater"
    print(f"tune dpo: {len(winners)} preference pairs of {config.steps}-step melodies from {who}: "
          f"{counts.get('comparisons', 0)} comparisons, {counts.get('star_pairs', 0)} star pairs; left out: "
          f"{counts.get('ties', 0)} ties, {counts.get('equal_stars', 0)} pairs of equal stars, "
          f"{counts.get('other_length', 0)} judgements of other lengths, {left_out['gold_comparisons']} gold checks, "
          f"{counts.get('star_pairs_not_sampled', 0)} star pairs beyond a sample of 20,000",
          flush=True)
    mine = config.dpo_rater
    ids = {"rating_ids": sorted(r["rating_id"] for r in stars if mine is None or r["rater"] == mine),
           "comparison_ids": sorted(r["comparison_id"] for r in pairs if mine is None or r["rater"] == mine)}
    return (winners, losers, counts), ids


def prepare_dpo(args: argparse.Namespace, config: TuneConfig, reward_model, reward_dir):
    from rlmusic.tuning.dpo_run import DPORun

    if args.resume:
        raise ValueError("--method dpo starts again rather than resuming (an offline run takes minutes); "
                         "drop --resume (and pass --force to replace the run in --out)")
    if config.dpo_online_pairs:
        return DPORun(config, args.out, args.prior, reward_model=reward_model, reward_model_dir=reward_dir,
                      device=args.device, force=args.force, progress=not args.no_progress)
    if reward_dir:
        raise ValueError("offline dpo trains on the raters' own judgements, not on a reward model: drop "
                         "--reward-model, or set dpo_online_pairs for pairs the reward model judges")
    pairs, ids = judgement_pairs(config)
    return DPORun(config, args.out, args.prior, pairs=pairs, device=args.device, force=args.force,
                  progress=not args.no_progress, judgements=ids)
