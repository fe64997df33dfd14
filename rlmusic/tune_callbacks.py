"""KL control and bookkeeping of a tuning run: ``KLController`` (fixed or adaptive beta),
the SB3 callbacks ``KLControl`` and ``RunBookkeeping`` (built by ``_make_callbacks``),
the curve writer behind ``metrics.csv``/TensorBoard, and ``plot_curves``.

``KLControl`` subtracts ``beta * log pi(a_t)`` from the rewards in SB3's
``collect_rollouts`` after ``env.step`` and before ``rollout_buffer.add`` (see
``rlmusic.tune`` for the reward it makes). SB3 classes are defined inside functions
(``_make_callbacks``, ``_curves_writer``) so importing this module does not import SB3.
``rlmusic.tune`` re-exports everything here.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlmusic.tune_config import CONFIG_NAME

if TYPE_CHECKING:
    from rlmusic.tune import TuneRun

__all__ = ["KLController", "_make_callbacks", "_curves_writer", "_CurvesWriter", "write_csv", "read_csv", "plot_curves"]


# --------------------------------------------------------------------------- KL control


class KLController:
    """Fixed or adaptive beta (Ziegler et al. 2019; TRL's AdaptiveKLController)."""

    def __init__(self, target: float | None, horizon: int):
        self.target, self.horizon = target, horizon

    def update(self, beta: float, kl: float, n_episodes: int) -> float:
        if self.target is None:
            return beta
        error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
        return beta * (1.0 + error * n_episodes / self.horizon)


def _make_callbacks():
    """Callback classes (defined lazily: SB3 imports take a second)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class KLControl(BaseCallback):
        """Subtracts ``beta * log pi(a_t)`` from the rewards before they enter the
        rollout buffer; logs the reward terms and the KL per note; updates beta."""

        def __init__(self, env, controller: KLController):
            super().__init__()
            self.env, self.controller = env, controller
            self.last: dict[str, float] = {}

        def _on_rollout_start(self) -> None:
            self._kl_sum, self._count, self._episodes = 0.0, 0, 0
            self._terms: dict[str, float] = {}
            self._penalty = 0.0

        def _on_step(self) -> bool:
            rewards = self.locals["rewards"]  # the array rollout_buffer.add() will store
            log_pi = self.locals["log_probs"].detach().cpu().numpy().reshape(rewards.shape)
            beta = self.env.beta
            rewards -= (beta * log_pi).astype(rewards.dtype)  # in place
            self._kl_sum += float(np.sum(log_pi - self.env.batch.last_log_prior))
            self._penalty += float(np.sum(-beta * log_pi))
            self._count += rewards.size
            for name, value in self.env.batch.last_terms.items():
                self._terms[name] = self._terms.get(name, 0.0) + float(np.sum(value))
            if np.all(self.locals["dones"]):
                self._episodes += rewards.size
            return True

        def _on_rollout_end(self) -> None:
            if not self._count:
                return
            melodies = max(1, self._count / self.env.steps)
            kl = self._kl_sum / self._count
            beta = self.env.beta
            rec = self.logger.record
            for name, total in sorted(self._terms.items()):  # per melody
                rec(f"reward/{'log_prior_term' if name == 'log_prior' else name}", total / melodies)
            total = sum(self._terms.values()) + self._penalty
            rec("reward/total", total / melodies)  # what PPO maximises, per melody
            rec("reward/kl", kl)  # nats per note, sampled estimate of KL(pi || prior)
            rec("reward/kl_penalty", -beta * kl * self.env.steps)  # per melody
            rec("kl/beta", beta)
            self.last = {"kl": kl, "beta": beta, **{k: v / melodies for k, v in self._terms.items()}}
            self.env.beta = self.controller.update(beta, kl, self._episodes)

    class RunBookkeeping(BaseCallback):
        """Progress bar, periodic evaluation and checkpoints (after each PPO update)."""

        def __init__(self, run: TuneRun, total: int, progress: bool, stop_after_checkpoints: int | None):
            super().__init__()
            self.run, self.total, self.progress = run, total, progress
            self.stop_after = stop_after_checkpoints
            self.saved = 0
            self.stopped = False

        def _on_training_start(self) -> None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.num_timesteps, unit="step", desc="tune",
                            disable=not self.progress, dynamic_ncols=True)
            self.next_eval = self._next(self.run.config.eval_every)
            self.next_ckpt = self._next(self.run.config.checkpoint_every)
            if self.num_timesteps == 0:  # the prior itself: the curves' first point
                self.run.evaluate(0)
                self.logger.dump(0)

        def _next(self, every: int) -> float:
            return math.inf if not every else (self.num_timesteps // every + 1) * every

        def _on_rollout_start(self) -> None:  # the previous rollout has been trained on
            n = self.num_timesteps
            if n >= self.next_eval:
                self.run.evaluate(n)
                self.next_eval = self._next(self.run.config.eval_every)
            if n >= self.next_ckpt and n < self.total:
                self.run.checkpoint()
                self.saved += 1
                self.next_ckpt = self._next(self.run.config.checkpoint_every)
                if self.stop_after is not None and self.saved >= self.stop_after:
                    self.stopped = True

        def _on_step(self) -> bool:
            self.bar.update(self.training_env.num_envs)
            if kl := self.run.kl_callback.last:
                self.bar.set_postfix(kl=f"{kl['kl']:.3f}", beta=f"{kl['beta']:.3g}", refresh=False)
            return not self.stopped

        def _on_training_end(self) -> None:
            self.bar.close()

    return KLControl, RunBookkeeping



# --------------------------------------------------------------------------- logging


def _curves_writer(out: Path, rows: list[dict[str, Any]]):
    """SB3 KVWriter: renames ``train/*`` to ``losses/*``, feeds TensorBoard and keeps
    the rows of ``metrics.csv``."""
    from stable_baselines3.common.logger import KVWriter

    class CurvesWriter(_CurvesWriter, KVWriter):
        pass

    return CurvesWriter(out, rows)


class _CurvesWriter:
    """Body of ``_curves_writer``'s class: renames ``train/*`` to ``losses/*``, feeds TensorBoard and keeps
    the rows of ``metrics.csv``."""

    RENAME = {"train/learning_rate": "charts/learning_rate", "train/clip_range": "charts/clip_range"}

    def __init__(self, out: Path, rows: list[dict[str, Any]]):
        from stable_baselines3.common.logger import TensorBoardOutputFormat

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
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


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
    KL per note (with the target), beta, and the evaluated theory figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = [r for r in read_csv(run_dir / "metrics.csv") if "reward/kl" in r]
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines() if line]
    config = json.loads((run_dir / CONFIG_NAME).read_text())["config"]
    x = [r["timesteps"] for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(18, 3.8))
    for key in sorted({k for r in rows for k in r if k.startswith("reward/")} - {"reward/kl", "reward/kl_penalty"}):
        axes[0].plot(x, [r.get(key, np.nan) for r in rows], label=key.split("/")[1])
    axes[0].set(title="reward per melody", xlabel="env steps")
    axes[0].legend(fontsize=7)
    axes[1].plot(x, [r["reward/kl"] for r in rows], label="rollouts (sampled)")
    axes[1].plot([e["timesteps"] for e in evals], [e["kl_per_note"] for e in evals], "o-", label="eval (exact)")
    if config.get("target_kl_per_note"):
        axes[1].axhline(config["target_kl_per_note"], ls="--", c="grey", label="target")
    axes[1].set(title="KL(pi || prior) per note [nats]", xlabel="env steps")
    axes[1].legend(fontsize=7)
    axes[2].plot(x, [r.get("kl/beta", np.nan) for r in rows])
    axes[2].set(title="beta", xlabel="env steps")
    for key in ("notes_not_in_key", "notes_excessively_repeated", "starts_with_tonic", "leaps_resolved",
                "notes_in_motif", "structure"):
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
