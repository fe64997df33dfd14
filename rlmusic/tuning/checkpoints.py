"""The files of a tuning run folder, written so that a crash, a kill or a full disk
leaves a state ``--resume`` continues from.

``OUT/tune_config.json`` (the run's config and references), ``OUT/checkpoints/step_N.zip``
(SB3: policy and optimizer; a dpg run's ``step_N.pt``, ``rlmusic.tuning.dpg_run``) with
``step_N.json`` (timesteps, beta; written last, so it marks a complete checkpoint), ``OUT/eval.jsonl`` (one evaluation a line), and the finished model
(``config.json`` + ``model.safetensors``, ``rlmusic.models.checkpoint``). Every file is
written through ``rlmusic.fileio`` (temporary file, fsync, rename; lines appended whole),
so each is either its old or its whole new self; a torn last line of ``eval.jsonl`` is
skipped; temporary files a crash left are removed when a run (re)starts.

Before a finished run is extended (``--resume --timesteps N``), its model is copied to
``OUT/previous/step_N/`` so the model that clips may have been sampled from survives.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rlmusic.fileio import append_line, read_jsonl, remove_stale_temps, write_atomic, write_json
from rlmusic.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_model_meta
from rlmusic.tuning.config import CONFIG_NAME

CHECKPOINTS = "checkpoints"
EVAL_FILE = "eval.jsonl"
PREVIOUS = "previous"  # OUT/previous/step_N/: a finished model kept before an extension
KEEP_CHECKPOINTS = 2  # the newest complete checkpoints kept
EXTENDABLE = ("timesteps",)  # config keys a resumed run may change (to extend it)


def stored_run(out: str | Path) -> dict[str, Any] | None:
    """What a run in ``out`` stored about itself (config, prior, reward model), or None."""
    path = Path(out) / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is damaged (not valid JSON: {exc})") from None


def check_run_folder(out: Path, config: Any, resume: bool, force: bool) -> dict[str, Any] | None:
    """Whether a run of ``config`` (a ``TuneConfig``) may start in ``out``: on ``resume`` the
    stored run (returned) must have the same config but for ``EXTENDABLE``; else ``out`` must
    hold no run unless ``force``. ``ValueError`` / ``FileNotFoundError`` say what to do."""
    from rlmusic.tuning.config import TuneConfig

    stored = stored_run(out)
    if resume and stored is not None:
        previous = TuneConfig.from_dict(stored["config"])
        diff = sorted(k for k, v in config.resolved().items() if previous.resolved()[k] != v)
        if set(diff) - set(EXTENDABLE):
            raise ValueError(f"--resume: the config differs from the run in {out} in {diff}; "
                             f"only {list(EXTENDABLE)} may change")
        return stored
    if resume:
        raise FileNotFoundError(f"--resume: no tuning run in {out} (no {CONFIG_NAME})")
    if not force and (stored is not None or (out / CHECKPOINTS).is_dir()):
        raise ValueError(f"{out} already holds a tuning run; use --resume to continue it or --force to restart")
    return None


def write_run_config(out: Path, data: dict[str, Any]) -> None:
    write_json(out / CONFIG_NAME, data)


def clean_run_folder(out: Path) -> list[Path]:
    """Remove the temporary files an interrupted write left in ``out`` and its checkpoints."""
    return remove_stale_temps(out) + remove_stale_temps(out / CHECKPOINTS)


def save_checkpoint(out: Path, model: Any, meta: dict[str, Any], suffix: str = ".zip") -> Path:
    """``model.save(file)`` (SB3: a ``.zip``) then ``.json`` of ``meta`` (``num_timesteps``
    names it); keeps the newest ``KEEP_CHECKPOINTS``."""
    folder = out / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"step_{int(meta['num_timesteps']):010d}"
    write_atomic(stem.with_suffix(suffix), lambda f: model.save(f))
    write_json(stem.with_suffix(".json"), meta, indent=None)  # written last: marks it complete
    for old in sorted(folder.glob("step_*.json"))[:-KEEP_CHECKPOINTS]:
        old.unlink()
        old.with_suffix(suffix).unlink(missing_ok=True)
    return stem.with_suffix(suffix)


def latest_checkpoint(out: Path, suffix: str = ".zip") -> tuple[Path, dict[str, Any]] | None:
    """The newest complete checkpoint (its ``suffix`` file and the ``.json`` beside it), or None."""
    folder = out / CHECKPOINTS
    for meta_path in sorted(folder.glob("step_*.json"), reverse=True) if folder.is_dir() else []:
        zip_path = meta_path.with_suffix(suffix)
        try:
            meta = json.loads(meta_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # a damaged marker: that checkpoint is not complete
        if zip_path.is_file() and isinstance(meta, dict) and "num_timesteps" in meta:
            return zip_path, meta
    return None


def append_eval(out: Path, row: dict[str, Any]) -> None:
    append_line(out / EVAL_FILE, json.dumps(jsonable(row)))


def read_evals(out: Path) -> list[dict[str, Any]]:
    """The evaluations of a run, in order (a line torn by a crash is skipped)."""
    return read_jsonl(out / EVAL_FILE)


def truncate_evals(out: Path, timesteps: int) -> None:
    """Keep the evaluations up to ``timesteps`` (and drop a torn line), atomically."""
    path = out / EVAL_FILE
    if path.is_file():
        rows = [r for r in read_jsonl(path) if r.get("timesteps", 0) <= timesteps]
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def keep_previous_model(out: Path) -> Path | None:
    """Copy the finished model of ``out`` to ``out/previous/step_N/`` (N: the env steps it
    was trained for) before the run is extended; returns that folder (None: no model)."""
    if not (out / CONFIG_FILE).is_file():
        return None
    meta = read_model_meta(out)
    steps = int(((meta.get("provenance") or {}).get("extra") or {}).get("timesteps", 0))
    target = out / PREVIOUS / f"step_{steps:010d}"
    if not (target / CONFIG_FILE).is_file():
        target.mkdir(parents=True, exist_ok=True)
        write_atomic(target / WEIGHTS_FILE, (out / WEIGHTS_FILE).read_bytes())
        write_atomic(target / CONFIG_FILE, (out / CONFIG_FILE).read_bytes())  # last: marks it complete
    return target


def jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        out[k] = v
    return out
