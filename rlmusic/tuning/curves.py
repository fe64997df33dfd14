"""The curves of a tuning run: the SB3 log writer behind ``metrics.csv`` and TensorBoard,
and ``plot_curves``."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.logger import KVWriter, TensorBoardOutputFormat

from rlmusic.fileio import write_atomic
from rlmusic.tuning.checkpoints import read_evals
from rlmusic.tuning.config import CONFIG_NAME


class CurvesWriter(KVWriter):
    """SB3 log writer: renames ``train/*`` to ``losses/*``, feeds TensorBoard and keeps
    the rows of ``metrics.csv`` (rewritten after every dump)."""

    RENAME = {"train/learning_rate": "charts/learning_rate", "train/clip_range": "charts/clip_range"}

    def __init__(self, out: Path, rows: list[dict[str, Any]]):
        self.tb = TensorBoardOutputFormat(str(out / "tb"))
        self.path = out / "metrics.csv"
        self.rows = rows

    def _name(self, key: str) -> str:
        if key in self.RENAME:
            return self.RENAME[key]
        return "losses/" + key[len("train/"):] if key.startswith("train/") else key

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        renamed = {self._name(k): v for k, v in key_values.items()}
        excluded = {self._name(k): v for k, v in key_excluded.items()}
        self.tb.write(renamed, excluded, step)
        row = {"timesteps": step}
        for k, v in renamed.items():
            if isinstance(v, (int, float, np.floating, np.integer)) and "csv" not in (excluded.get(k) or ()):
                row[k] = float(v)
        self.rows.append(row)
        write_csv(self.path, self.rows)

    def close(self) -> None:
        self.tb.close()


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = ["timesteps"] + sorted({k for r in rows for k in r} - {"timesteps"})
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue())


def read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with path.open() as f:
        rows = [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
    for r in rows:
        r["timesteps"] = int(r.get("timesteps", 0))
    return rows


# --------------------------------------------------------------------------- plots


def plot_curves(run_dir: str | Path, path: str | Path, title: str | None = None) -> Path:
    """PNG of a run's curves (``metrics.csv`` + ``eval.jsonl``): reward terms per melody,
    KL per step and per note (with the target), beta, and the evaluated figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = [r for r in read_csv(run_dir / "metrics.csv") if "kl/per_step" in r]
    evals = read_evals(run_dir)
    config = json.loads((run_dir / CONFIG_NAME).read_text())["config"]
    x = [r["timesteps"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for key in sorted({k for r in rows for k in r if k.startswith("reward/")}):
        axes[0].plot(x, [r.get(key, np.nan) for r in rows], label=key.split("/")[1])
    axes[0].set(title="reward per melody", xlabel="env steps")
    axes[0].legend(fontsize=7)
    axes[1].plot(x, [r["kl/per_step"] for r in rows], label="per step, rollouts (sampled)")
    axes[1].plot([e["timesteps"] for e in evals], [e["kl_per_step"] for e in evals], "o-", label="per step, eval (exact)")
    axes[1].plot([e["timesteps"] for e in evals], [e["kl_per_note"] for e in evals], "s--", label="per note, eval (exact)")
    if config.get("target_kl_per_step"):
        axes[1].axhline(config["target_kl_per_step"], ls="--", c="grey", label="target per step")
    axes[1].set(title="KL(pi || prior) [nats]", xlabel="env steps")
    axes[1].legend(fontsize=7)
    axes[2].plot(x, [r.get("kl/beta", np.nan) for r in rows])
    axes[2].set(title="beta", xlabel="env steps")
    for key in ("rl_tuner/notes_not_in_key", "rl_tuner/starts_with_tonic", "rl_tuner/leaps_resolved",
                "rl_tuner/notes_in_motif", "rl_tuner/unique_min_note", "structure", "novelty"):
        if evals and key in evals[0]:
            axes[3].plot([e["timesteps"] for e in evals], [e[key] for e in evals], "o-", ms=3, label=key)
    axes[3].set(title="evaluation", xlabel="env steps", ylim=(-0.02, 1.02))
    axes[3].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
