"""One round of the feedback loop.

A round: fit a reward model on every judgement so far (``rlmusic.feedback.fit``) -> tune
the current model against it (``rlmusic.tuning``; the KL stays on the *original* prior)
with the human term normalised by running statistics and the over-optimisation guard
-> generate a batch from the tuned model and put it in the rating queue (optionally
prioritised by ensemble disagreement: active selection) -> record which judgements and
which reward model made which model.

The judgements come from, and the round is recorded in, a ``RoundStore``: an object
with the methods below. ``rlmusic round`` (``rlmusic.cli.round``) hands over one backed
by the ratings database; this module never imports it.

Output folder ``OUT``: ``reward_model/`` (with ``metrics.json``), ``model/`` (the tuned
model, its curves, ``eval.jsonl`` and ``guard.json``), ``clips/`` (MIDI + manifest) and
``round.json`` (ids, reward model metrics, evaluation before/after, guard report).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from rlmusic.feedback.fit import RewardModelConfig, fit_reward_model, format_metrics, prioritise
from rlmusic.feedback.guard import GuardConfig, GuardedRewardModel
from rlmusic.fileio import read_jsonl, write_json
from rlmusic.models.checkpoint import default_prior_dir
from rlmusic.models.generate import MANIFEST, generate_clips
from rlmusic.runtime import json_safe, resolve_device
from rlmusic.tuning.config import CONFIG_NAME, TuneConfig
from rlmusic.tuning.run import TuneRun

ROUND_FILE = "round.json"


class RoundStore(Protocol):
    """Where a round reads judgements and records itself (``rlmusic.cli.round.DbStore``)."""

    def star_rows(self) -> list[dict[str, Any]]: ...
    def pair_rows(self) -> list[dict[str, Any]]: ...
    def start_round(self, out: Path, config: dict[str, Any]) -> Any: ...
    def record_round(self, handle: Any, reward_model_dir: Path, rating_ids: list[int],
                     comparison_ids: list[int], parent_model: Path) -> int: ...
    def record_tuned(self, round_id: int, tuned_dir: Path, parent_model: Path) -> int: ...
    def enqueue(self, rows: list[dict], clips_dir: Path, model_dir: Path, audio: bool) -> None: ...
    def prioritise(self, scores: dict[int, float]) -> None: ...
    def finish_round(self, handle: Any, error: str | None, summary: dict[str, Any] | None) -> None: ...
    # Optional: ``tune_monitor(status) -> bool``, handed to the round's ``TuneRun`` as its
    # monitor (progress after every update; True stops the tuning cleanly).


def prepare_folder(out: Path, force: bool) -> None:
    """Refuse a folder that holds a round unless ``force``; with it, empty the folder
    (a failed round's leftovers must not mix with the new one)."""
    used = (out / "model" / CONFIG_NAME).is_file() or (out / ROUND_FILE).is_file() or (out / "reward_model").is_dir()
    if used and not force:
        raise ValueError(f"{out} already holds a round; choose another --out, or --force to reuse it")
    manifest = out / "clips" / MANIFEST
    queued = [r for r in read_jsonl(manifest) if r.get("clip_id") is not None] if manifest.is_file() else []
    if queued:  # their ids must keep their files and their model: never reuse this folder
        raise ValueError(f"{out} holds a round whose {len(queued)} clips are in the rating queue; "
                         "choose another --out")
    if used:
        for name in ("reward_model", "model", "clips", ROUND_FILE):
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)


def run_round(
    out: str | Path,
    store: RoundStore,
    *,
    prior: str | Path | None = None,
    from_model: str | Path | None = None,
    tune_config: TuneConfig | None = None,
    reward_config: RewardModelConfig | None = None,
    guard: GuardConfig | None = None,
    n_clips: int = 64,
    active: bool = False,
    audio: bool = True,
    device: str = "auto",
    progress: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Run one round into ``out`` (see the module docstring); returns the ``round.json`` dict.

    Args:
        prior: the KL reference and the reward model's feature extractor (default: shipped prior).
        from_model: the model to tune from (default: ``prior``): the previous round's model.
        n_clips: clips generated from the tuned model and enqueued (0: none).
        active: set the new clips' queue priority to the ensemble's disagreement.
        audio: render the clips' audio when enqueuing (False: the app renders on demand).
        force: reuse ``out`` when it holds an earlier (say, failed) round.

    A round that fails is recorded as failed in the store (with its error) before the
    error propagates.
    """
    if n_clips < 0:
        raise ValueError(f"n_clips must be >= 0, got {n_clips}")
    out = Path(out)
    prior_dir = Path(prior) if prior is not None else default_prior_dir()
    start_dir = Path(from_model) if from_model is not None else prior_dir
    tune_config = tune_config or TuneConfig()
    tune_config.validate()
    guard = guard or GuardConfig.from_dict(tune_config.guard)
    prepare_folder(out, force)
    handle = store.start_round(out, {"tune": asdict(tune_config), "guard": asdict(guard),
                                     "reward": asdict(reward_config or RewardModelConfig()),
                                     "prior": str(prior_dir), "from_model": str(start_dir), "n_clips": n_clips})
    try:
        summary = _round(out, store, handle, prior_dir, start_dir, from_model, tune_config, reward_config,
                         guard, n_clips, active, audio, device, progress)
    except BaseException as exc:
        store.finish_round(handle, f"{type(exc).__name__}: {exc}", None)
        raise
    store.finish_round(handle, None, summary)
    return summary


def _round(out, store, handle, prior_dir, start_dir, from_model, tune_config, reward_config, guard,
           n_clips, active, audio, device, progress) -> dict[str, Any]:
    # 1. reward model on every judgement so far
    stars, pairs = store.star_rows(), store.pair_rows()
    reward = fit_reward_model(stars, pairs, prior_dir, reward_config, device=resolve_device(device))
    reward_dir = reward.save(out / "reward_model")
    print(f"round: reward model on {len(stars)} star ratings + {len(pairs)} comparisons; "
          + format_metrics(reward.metrics), flush=True)
    round_id = store.record_round(handle, reward_dir, reward.rating_ids, reward.comparison_ids, start_dir)
    # 2. tune the current model against it
    guarded = GuardedRewardModel(reward, guard)
    run = TuneRun(tune_config, out / "model", prior_dir, reward_model=guarded, reward_model_dir=reward_dir,
                  init_model=from_model, device=device, monitor=getattr(store, "tune_monitor", None))
    tuned_dir = run.train(progress=progress)
    if tuned_dir is None:
        raise KeyboardInterrupt("tuning stopped before the end")
    evals = read_jsonl(out / "model" / "eval.jsonl")
    guards = [cb for cb in run.extra_callbacks if hasattr(cb, "report")]
    guard_report = guards[0].report() if guards else None
    # 3. generate and enqueue a batch from the tuned model
    tuned_id = store.record_tuned(round_id, tuned_dir, start_dir)
    rows: list[dict] = []
    if n_clips:
        clips_dir = out / "clips"
        seed = tune_config.seed + 1000 * round_id
        rows, _ = generate_clips(tuned_dir, n_clips, clips_dir, steps=tune_config.steps, seed=seed,
                                 device=device)
        store.enqueue(rows, clips_dir, tuned_dir, audio)
        if active:
            store.prioritise(prioritise(reward, rows))
    summary = {
        "round_id": round_id,
        "reward_model": str(reward_dir),
        "tuned_model": str(tuned_dir),
        "tuned_model_id": tuned_id,
        "parent_model": str(start_dir),
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
    write_json(out / ROUND_FILE, json_safe(summary))
    return summary
