"""One round of the feedback loop: ``rlmusic round``.

A round: fit a reward model on every rating so far (``rlmusic.reward_model``) -> tune
the current model against it (``rlmusic.tune``, the KL still to the *original* prior)
with the human term normalised by running statistics and the over-optimisation guard
-> generate a batch from the tuned model and put it in the rating queue (optionally
prioritised by ensemble disagreement: active selection) -> ``db.record_round`` records
which ratings and which reward model made which model.

Output folder ``OUT``: ``reward_model/`` (with ``metrics.json``), ``model/`` (the tuned
model, its curves, ``eval.jsonl`` and ``guard.json``), ``clips/`` (MIDI + manifest) and
``round.json`` (ids, reward model metrics, evaluation before/after, guard report).

``rlmusic.tune`` wraps the reward model in ``GuardedRewardModel`` (its ``[guard]``
table) and adds its ``RewardGuard`` callback; ``FeedbackTuneRun`` (a ``TuneRun``) adds
what tune does not: the policy can start from another model than the KL reference, and
the rating and comparison ids and the guard's verdict go into the tuned model's
provenance. (It still wraps and adds the guard itself if tune does not.)
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from rlmusic.model import load_model, read_model_meta
from rlmusic.reward_model import (
    GuardConfig,
    GuardedRewardModel,
    RewardConfig,
    fit_reward_model,
    format_metrics,
    prioritise,
)
from rlmusic.tune import CONFIG_NAME, TuneConfig, TuneRun

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROUND_FILE = "round.json"


# --------------------------------------------------------------------------- tuning with the guard


class FeedbackTuneRun(TuneRun):
    """A ``TuneRun`` with the reward model guarded, an optional start model and the
    ratings in the provenance.

    Args:
        init_model: model directory the policy starts from (default: ``prior_dir``); the
            KL penalty and the reward model's features stay on ``prior_dir``.
        guard: running normalisation and over-optimisation guard of the human term.
        rating_ids, comparison_ids: the judgements the reward model was fitted on
            (default: read from its config.json).
    """

    def __init__(self, config: TuneConfig, out, prior_dir=None, reward_model_dir=None, *,
                 init_model=None, guard: GuardConfig | None = None, device: str = "auto", force: bool = False):
        if guard is not None:  # tune.py reads the guard from its config's [guard] table
            config = replace(config, guard={**config.guard, **asdict(guard)})
        super().__init__(config, out, prior_dir, reward_model_dir, device, resume=False, force=force)
        self.init_model_dir = Path(init_model) if init_model is not None else None
        self.guard_callback = None
        if self.reward_model is not None and not isinstance(self.reward_model, GuardedRewardModel):
            self.reward_model = GuardedRewardModel(self.reward_model, guard or GuardConfig())

    def make_model(self, env):
        model = super().make_model(env)
        if self.init_model_dir is not None:
            model.policy.load_prior(load_model(self.init_model_dir, device=self.device, vocab=self.config.vocab))
        learn = model.learn

        def learn_with_guard(total_timesteps, callback=None, **kwargs):
            callbacks = list(callback or []) if isinstance(callback, (list, tuple, type(None))) else [callback]
            guards = [c for c in callbacks if getattr(c, "is_reward_guard", False)]
            if isinstance(self.reward_model, GuardedRewardModel) and not guards:
                guards = self.reward_model.tune_callbacks(self)  # tune.py does not add it (yet)
                callbacks += guards
            self.guard_callback = guards[0] if guards else None
            return learn(total_timesteps, callback=callbacks, **kwargs)

        model.learn = learn_with_guard
        return model

    def save(self, final_eval: dict[str, Any]):
        out = super().save(final_eval)
        path = Path(out) / "config.json"
        meta = json.loads(path.read_text())
        prov = meta["provenance"]
        if self.init_model_dir is not None:
            prov["parent_model"] = str(self.init_model_dir)
            prov["extra"]["kl_reference"] = str(self.prior_dir)
        if isinstance(self.reward_model, GuardedRewardModel):  # ratings: TuneRun.save records them
            if self.guard_callback is not None:
                report = self.guard_callback.report()
                prov["extra"]["guard"] = {k: report[k] for k in ("triggered", "stopped", "events")}
        path.write_text(json.dumps(meta, indent=2) + "\n")
        return out


# --------------------------------------------------------------------------- a round


def _enqueue(engine, rows: list[dict], clips_dir: Path, model_id: int) -> None:
    """Put generated clips in the queue without rendering audio (the app renders on demand)."""
    import db

    ids = db.enqueue_clips(engine, model_id, [
        {"tokens": r["tokens"], "steps": r["steps"], "seed": r["seed"],
         "midi_path": str((clips_dir / r["midi"]).resolve())} for r in rows])
    for row, clip_id in zip(rows, ids):
        row["clip_id"] = clip_id
    with (clips_dir / "manifest.jsonl").open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def run_round(
    out: str | Path,
    *,
    prior: str | Path | None = None,
    from_model: str | Path | None = None,
    tune_config: TuneConfig | None = None,
    reward_config: RewardConfig | None = None,
    guard: GuardConfig | None = None,
    n_clips: int = 64,
    active: bool = False,
    audio: bool = True,
    device: str = "auto",
    progress: bool = False,
    engine=None,
) -> dict[str, Any]:
    """Run one round into ``out`` (see the module docstring); returns the ``round.json`` dict.

    Args:
        prior: the KL reference and the reward model's feature extractor (default: shipped prior).
        from_model: the model to tune from (default: ``prior``): the previous round's model.
        n_clips: clips generated from the tuned model and enqueued (0: none).
        active: set the new clips' queue priority to the ensemble's disagreement.
        audio: render the clips' audio when enqueuing (False: the app renders on demand).
    """
    import db
    from rlmusic.generate import generate, sample_tokens, write_clips
    from rlmusic.model import default_prior_dir
    from rlmusic.runtime import resolve_device

    if n_clips < 0:
        raise ValueError(f"n_clips must be >= 0, got {n_clips}")
    out = Path(out)
    prior_dir = Path(prior) if prior is not None else default_prior_dir()
    start_dir = Path(from_model) if from_model is not None else prior_dir
    tune_config = tune_config or TuneConfig()
    tune_config.validate()
    engine = engine or db.get_engine()
    db.check_schema(engine)
    # 1. reward model on every judgement so far
    stars, pairs = db.star_rows(engine), db.pair_rows(engine)
    reward = fit_reward_model(stars, pairs, prior_dir, reward_config, device=resolve_device(device))
    reward_dir = reward.save(out / "reward_model")
    print(f"round: reward model on {len(stars)} star ratings + {len(pairs)} comparisons; "
          + format_metrics(reward.metrics), flush=True)
    start_kind = read_model_meta(start_dir).get("provenance", {}).get("kind", "prior")
    parent_id = db.register_model(engine, name=start_dir.name if start_dir.name != "prior" else "shipped-prior",
                                  directory=start_dir, kind=start_kind if start_kind in db.MODEL_KINDS else "prior")
    round_id = db.record_round(engine, reward_model_dir=str(reward_dir.resolve()), rating_ids=reward.rating_ids,
                               comparison_ids=reward.comparison_ids, parent_model_id=parent_id,
                               notes=f"rlmusic round --out {out}")
    # 2. tune the current model against it
    run = FeedbackTuneRun(tune_config, out / "model", prior_dir, reward_dir, init_model=from_model, guard=guard,
                          device=device)
    tuned_dir = run.train(progress=progress)
    evals = [json.loads(line) for line in (out / "model" / "eval.jsonl").read_text().splitlines() if line]
    guard_report = run.guard_callback.report() if run.guard_callback is not None else None
    # 3. generate and enqueue a batch from the tuned model
    tuned_id = db.register_model(engine, name=out.name or "round", directory=tuned_dir, kind="tuned",
                                 parent_id=parent_id, provenance=read_model_meta(tuned_dir)["provenance"])
    db.set_round_tuned_model(engine, round_id, tuned_id)
    rows: list[dict] = []
    if n_clips:
        clips_dir = out / "clips"
        seed = tune_config.seed + 1000 * round_id
        if audio:
            rows = generate(tuned_dir, n_clips, clips_dir, steps=tune_config.steps, seed=seed, do_enqueue=True,
                            device=device)
        else:
            model = load_model(tuned_dir)
            tokens = sample_tokens(model, n_clips, tune_config.steps, seed=seed)
            rows = write_clips(tokens, clips_dir, model.vocab, str(tuned_dir), seed)
            _enqueue(engine, rows, clips_dir, tuned_id)
        if active:
            db.set_clip_priority(engine, prioritise(reward, rows))
    summary = {
        "round_id": round_id,
        "reward_model": str(reward_dir),
        "tuned_model": str(tuned_dir),
        "tuned_model_id": tuned_id,
        "parent_model": str(start_dir),
        "parent_model_id": parent_id,
        "prior": str(prior_dir),
        "n_ratings": len(stars),
        "n_comparisons": len(pairs),
        "reward_metrics": reward.metrics,
        "before": evals[0] if evals else None,
        "after": evals[-1] if evals else None,
        "guard": guard_report,
        "clip_ids": [r["clip_id"] for r in rows],
        "active": active,
        "tune_config": asdict(tune_config),
    }
    from rlmusic.reward_model import _json_safe

    (out / ROUND_FILE).write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    return summary


# --------------------------------------------------------------------------- CLI


def configs_from_file(path: str | Path | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(tune keys, ``[reward]`` table, ``[guard]`` table) of a round's TOML (or JSON) file."""
    if path is None:
        return {}, {}, {}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"round config {path} not found")
    text = path.read_text()
    data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    reward, guard = data.pop("reward", {}), data.pop("guard", {})
    for name, table in (("reward", reward), ("guard", guard)):
        if not isinstance(table, dict):
            raise ValueError(f"round config key {name!r} must be a table, got {table!r}")
    return data, reward, guard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="round folder: reward_model/, model/, clips/, round.json")
    parser.add_argument("--prior", help="KL reference and reward-model features (default: the shipped prior)")
    parser.add_argument("--from-model", help="model to tune from (default: --prior): the last round's model/")
    parser.add_argument("--config", help="TOML: TuneConfig keys at the top, RewardConfig keys under [reward], "
                                         "GuardConfig keys under [guard]")
    parser.add_argument("--timesteps", type=int, help="PPO env steps (overrides the config)")
    parser.add_argument("--steps", type=int, help="steps per melody (overrides the config)")
    parser.add_argument("--n-clips", type=int, default=64, help="clips generated and enqueued after tuning")
    parser.add_argument("--active", action="store_true",
                        help="active selection: queue priority = ensemble disagreement of each new clip")
    parser.add_argument("--no-audio", action="store_true", help="enqueue without rendering audio")
    parser.add_argument("--seed", type=int, help="seed of tuning and generation (overrides the config)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is fastest on a busy machine)")
    parser.add_argument("--progress", action="store_true", help="show the tuning progress bar")


def main(args: argparse.Namespace) -> int:
    import torch

    tune_keys, reward_keys, guard_keys = configs_from_file(args.config)
    for key, value in (("timesteps", args.timesteps), ("steps", args.steps), ("seed", args.seed)):
        if value is not None:
            tune_keys[key] = value
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if (Path(args.out) / "model" / CONFIG_NAME).is_file():
        raise ValueError(f"{args.out} already holds a round; choose another --out")
    summary = run_round(
        args.out, prior=args.prior, from_model=args.from_model, tune_config=TuneConfig.from_dict(tune_keys),
        reward_config=RewardConfig.from_dict(reward_keys), guard=GuardConfig.from_dict(guard_keys),
        n_clips=args.n_clips, active=args.active, audio=not args.no_audio, device=args.device,
        progress=args.progress,
    )
    before, after = summary["before"] or {}, summary["after"] or {}
    print(f"round {summary['round_id']}: tuned {summary['tuned_model']} (KL {after.get('kl_per_note', np.nan):.3f} "
          f"nats/note; theory reward/note {before.get('theory_reward_per_note', np.nan):.3f} -> "
          f"{after.get('theory_reward_per_note', np.nan):.3f}); enqueued {len(summary['clip_ids'])} clips")
    guard = summary["guard"]
    if guard and guard["triggered"]:
        print(f"round {summary['round_id']}: {guard['events'][-1]['message']}")
    return 0
