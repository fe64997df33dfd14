"""Tuning against a reward model: score normalisation and the over-optimisation guard.

Holds, in order: ``OverOptimisationWarning``, ``RunningMeanStd`` (running mean/variance of
a stream of batches), ``GuardConfig`` (the tune config's ``[guard]`` table),
``GuardedRewardModel`` (what the tuning env calls: running-normalised, clipped scores,
recording raw score and ensemble disagreement), ``load_guarded`` and ``RewardGuard`` (the
SB3 callback that warns, or stops training, when the policy games the reward model).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rlmusic.feedback.reward_model import RewardModel, load_reward_model
from rlmusic.music.representation import Vocabulary
from rlmusic.runtime import check_field_types, json_safe


class OverOptimisationWarning(UserWarning):
    """The policy is exploiting the reward model (KL or ensemble disagreement too high)."""


class RunningMeanStd:
    """Running mean and variance of a stream of batches (parallel-variance merge, as
    SB3's ``RunningMeanStd``), started from a known mean/var worth ``count`` samples."""

    def __init__(self, mean: float = 0.0, var: float = 1.0, count: float = 1e-4):
        self.mean, self.var, self.count = float(mean), float(var), float(count)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if not len(x):
            return
        b_mean, b_var, b_n = float(x.mean()), float(x.var()), len(x)
        delta, total = b_mean - self.mean, self.count + b_n
        m2 = self.var * self.count + b_var * b_n + delta**2 * self.count * b_n / total
        self.mean, self.var, self.count = self.mean + delta * b_n / total, m2 / total, total


@dataclass
class GuardConfig:
    """Reward normalisation and over-optimisation guard of a tuning run (TOML ``[guard]``)."""

    running_norm: bool = True  # normalise the score with running mean/std of the policy's melodies
    init_count: int = 256  # the running stats start at the training melodies' (mean 0, std 1), worth this many
    clip: float = 5.0  # clip the normalised score to +-clip (0 = no clip)
    max_kl_per_step: float = 1.0  # nats per step of KL(pi || prior) above which the guard fires (0 = off)
    max_disagreement: float = 3.0  # ensemble std on the policy's melodies / on the training melodies (0 = off)
    max_ood: float = 2.0  # median over a rollout's melodies of their distance to the rated ones / the rated ones' own (0 = off)
    patience: int = 2  # consecutive rollouts over a threshold before the guard fires
    action: str = "stop"  # "stop": stop and go back to the last rollout's weights the guard passed; "warn": go on

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GuardConfig:
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown guard config keys {unknown}; valid: {sorted(known)}")
        config = cls(**data)
        config.validate()
        return config

    def validate(self) -> None:
        check_field_types(self, "guard")  # NaN, "1.0" for 1.0, 1.5 for a count: one clear error
        if self.action not in ("warn", "stop"):
            raise ValueError(f"guard action must be 'warn' or 'stop', got {self.action!r}")
        for name in ("init_count", "clip", "max_kl_per_step", "max_disagreement", "max_ood"):
            if getattr(self, name) < 0:
                raise ValueError(f"guard {name} must be >= 0, got {getattr(self, name)}")
        if self.patience < 1:
            raise ValueError(f"guard patience must be >= 1, got {self.patience}")


class GuardedRewardModel:
    """What the tuning env calls: ``score(tokens) -> (B,)`` normalised with running
    statistics of the policy's own melodies (clipped), while it records the raw score and
    the ensemble disagreement of every batch for ``RewardGuard``.

    Drop-in for the env's ``RewardModel``; ``tune_callbacks(run)`` gives the SB3 callback."""

    def __init__(self, model: RewardModel, config: GuardConfig | None = None):
        self.model, self.config = model, config or GuardConfig()
        self.config.validate()
        self.stats = RunningMeanStd(0.0, 1.0, float(self.config.init_count) or 1e-4)
        self.pending: list[tuple[float, float, np.ndarray, int]] = []  # (score sum, disagreement sum, ood, n) per call

    @property
    def vocab(self) -> Vocabulary:
        return self.model.vocab

    def score_with_uncertainty(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.score_with_uncertainty(tokens)

    @property
    def rating_ids(self) -> list[int]:
        return self.model.rating_ids

    @property
    def comparison_ids(self) -> list[int]:
        return self.model.comparison_ids

    def score(self, tokens: np.ndarray) -> np.ndarray:
        mean, std = self.model.score_with_uncertainty(tokens)
        ood = self.model.ood(tokens) if self.config.max_ood else np.full(len(mean), np.nan)
        self.pending.append((float(mean.sum()), float(std.sum()), np.asarray(ood, dtype=float), len(mean)))
        if not self.config.running_norm:
            out = mean
        else:
            self.stats.update(mean)
            out = (mean - self.stats.mean) / math.sqrt(self.stats.var + 1e-8)
        return np.clip(out, -self.config.clip, self.config.clip) if self.config.clip else out

    def drain(self) -> tuple[float, float, float, int]:
        """(mean raw score, mean disagreement, median out-of-distribution ratio, melodies)
        since the last drain. The median, as evaluation reports it: the prior itself samples
        the odd melody far from every rated one (a tiny prior's rollouts of 32 melodies had mean
        ratios up to 4.1 over 20 draws, its melodies a median of 0.96), and the guard is there
        for the policy as a whole moving away."""
        s, d, n = (sum(p[i] for p in self.pending) for i in (0, 1, 3))
        ood = np.concatenate([p[2] for p in self.pending]) if self.pending else np.array([])
        self.pending.clear()
        if not n:
            return math.nan, math.nan, math.nan, 0
        return s / n, d / n, float(np.median(ood)) if not np.isnan(ood).all() else math.nan, n

    def tune_callbacks(self, run: Any) -> list[Any]:
        """The callbacks ``rlmusic.tuning.run.TuneRun.train`` adds: ``[RewardGuard]`` on
        ``run.env``, reporting into ``run.out / guard.json``."""
        return [RewardGuard(self, run.env, out=getattr(run, "out", None))]


def load_guarded(directory: str | Path, device: Any = "cpu", guard: Mapping[str, Any] | None = None
                 ) -> GuardedRewardModel:
    """The reward model saved in ``directory`` behind its guard (``guard``: the tune
    config's ``[guard]`` table); what ``rlmusic tune --reward-model DIR`` tunes against."""
    return GuardedRewardModel(load_reward_model(directory, device=device), GuardConfig.from_dict(guard))


class RewardGuard(BaseCallback):
    """An SB3 callback watching, each rollout, KL(pi || prior) per step, the ensemble
    disagreement and how far the policy's melodies lie outside the rated ones (``ood``:
    the reward model extrapolates there, and a policy that games it goes there first).
    After ``patience`` rollouts over a threshold it fires: ``action="stop"`` stops training
    and puts the policy back to its weights after the last rollout that passed (the last
    good state, which the run then evaluates and saves); ``"warn"`` warns and goes on."""

    def __init__(self, guarded: GuardedRewardModel, env: Any, out: str | Path | None = None):
        super().__init__()
        self.guarded, self.env, self.cfg = guarded, env, guarded.config
        self.out = None if out is None else Path(out)
        self.history: list[dict[str, float]] = []
        self.events: list[dict[str, Any]] = []
        self.over = 0
        self.stop = False
        self._kl, self._n = 0.0, 0
        self.good_state: dict[str, Any] | None = None  # policy weights after the last rollout that passed
        self.good_timesteps = 0
        self.restored_to: int | None = None

    def _on_step(self) -> bool:
        log_pi = self.locals["log_probs"].detach().cpu().numpy().reshape(-1)
        self._kl += float(np.sum(log_pi - np.asarray(self.env.batch.last_log_prior).reshape(-1)))
        self._n += log_pi.size
        return not self.stop

    def _on_rollout_end(self) -> None:
        kl = self._kl / self._n if self._n else math.nan
        self._kl, self._n = 0.0, 0
        score, disagreement, ood, _ = self.guarded.drain()
        ratio = disagreement / max(self.guarded.model.train_disagreement, 1e-8)
        row = {"timesteps": int(self.num_timesteps), "kl_per_step": kl, "human_score": score,
               "disagreement": disagreement, "disagreement_ratio": ratio, "ood": ood}
        self.history.append(row)
        reasons = []
        if self.cfg.max_kl_per_step and kl > self.cfg.max_kl_per_step:
            reasons.append(f"KL {kl:.3f} nats per step > max_kl_per_step={self.cfg.max_kl_per_step:g}")
        if self.cfg.max_disagreement and ratio > self.cfg.max_disagreement:
            reasons.append(f"ensemble disagreement {ratio:.2f}x its training level > "
                           f"max_disagreement={self.cfg.max_disagreement:g}")
        if self.cfg.max_ood and ood > self.cfg.max_ood:
            reasons.append(f"melodies {ood:.2f}x as far from the rated ones as those are from each other "
                           f"> max_ood={self.cfg.max_ood:g}")
        self.over = self.over + 1 if reasons else 0
        if not reasons and not self.stop:  # the weights trained on this rollout are still good
            self.good_state = {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()}
            self.good_timesteps = int(self.num_timesteps)
        fired = self.over >= self.cfg.patience and not self.stop
        rec = self.logger.record
        rec("guard/kl_per_step", kl)
        rec("guard/human_score", score)
        rec("guard/disagreement", disagreement)
        rec("guard/disagreement_ratio", ratio)
        rec("guard/ood", ood)
        rec("guard/triggered", float(bool(self.events) or fired))
        if fired:
            first = self.history[0]["human_score"]
            message = (f"over-optimisation guard at {self.num_timesteps} env steps: " + "; ".join(reasons)
                       + f" for {self.over} rollouts, while the reward model's score went from "
                       f"{first:.2f} to {score:.2f}"
                       + (f": stopping training; the policy goes back to its weights at {self.good_timesteps} env "
                          "steps, the last the guard passed" if self.cfg.action == "stop"
                          else " (action='warn': going on)"))
            self.events.append({**row, "reasons": reasons, "action": self.cfg.action, "message": message})
            warnings.warn(message, OverOptimisationWarning, stacklevel=2)
            if self.cfg.action == "stop":
                self.stop = True
        self.write()

    def _on_training_end(self) -> None:
        if self.stop and self.good_state is not None:  # back to the last good weights
            self.model.policy.load_state_dict(self.good_state)
            self.restored_to = self.good_timesteps
            self.write()

    def report(self) -> dict[str, Any]:
        return {"config": asdict(self.cfg), "triggered": bool(self.events), "stopped": self.stop,
                "restored_to_timesteps": self.restored_to, "events": self.events, "history": self.history}

    def provenance(self) -> dict[str, Any]:
        """What the tuned model's provenance keeps of the guard (``TuneRun.save`` asks)."""
        report = self.report()
        return {"guard": {k: report[k] for k in ("triggered", "stopped", "restored_to_timesteps", "events")}}

    def write(self) -> None:
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "guard.json").write_text(json.dumps(json_safe(self.report()), indent=2) + "\n")
