"""The options of a tuning run: ``TuneConfig`` (TOML/JSON loading, checks before anything trains).

``rlmusic.tune`` re-exports everything here; ``CONFIG_NAME`` is the file a run stores its
config in (``OUT/tune_config.json``).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rlmusic.representation import Vocabulary

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["CONFIG_NAME", "WEIGHT_FIELDS", "TuneConfig"]

CONFIG_NAME = "tune_config.json"
WEIGHT_FIELDS = ("theory_weight", "structure_weight", "novelty_weight", "diversity_weight", "human_weight")


@dataclass
class TuneConfig:
    """Every option of a tuning run (TOML: top-level keys, rule weights under ``[theory]``)."""

    # -- melodies
    steps: int = 32  # T: 16th-note steps per melody = one episode (32 = 2 bars, RL Tuner's setting)
    min_pitch: int = 48  # vocabulary the run expects; a prior with another one raises
    max_pitch: int = 84
    # -- PPO (sb3-contrib RecurrentPPO)
    timesteps: int = 100_000  # total env steps (tokens), rounded up to whole rollouts
    n_envs: int = 16  # melodies generated in parallel (one batched prior forward per step)
    n_steps: int | None = None  # steps per env per rollout; a multiple of `steps`; None = whole melodies >= 128
    batch_size: int = 512  # minibatch size (tokens) of the PPO update
    n_epochs: int = 4  # passes over each rollout
    learning_rate: float = 3e-5  # Adam step size (small: we start from a trained model)
    gamma: float = 1.0  # discount; episodes are short and end, so 1.0 (undiscounted) works
    gae_lambda: float = 0.95  # GAE trade-off between bias (0) and variance (1)
    clip_range: float = 0.2  # PPO ratio clip
    ent_coef: float = 0.0  # entropy bonus (the KL to the prior already keeps entropy up)
    vf_coef: float = 0.5  # value loss weight
    max_grad_norm: float = 0.5  # gradient clipping
    # -- KL control
    beta: float = 0.1  # weight of the per-token KL to the prior (initial value when adaptive)
    target_kl_per_note: float | None = None  # nats/note the controller aims at; None = fixed beta
    kl_horizon: int = 500  # controller horizon in melodies (Ziegler et al. use 10,000; our runs are short)
    # -- rewards (weights >= 0)
    theory_weight: float = 1.0  # per-step music-theory reward (rule weights in `theory`)
    theory: dict[str, Any] = field(default_factory=dict)  # rlmusic.theory RewardConfig fields; {} = defaults
    structure_weight: float = 0.0  # end-of-melody structure score
    novelty_weight: float = 0.0  # end-of-melody originality vs the shipped corpus (novelty x copy penalty)
    diversity_weight: float = 0.0  # end-of-melody diversity within the batch
    human_weight: float = 1.0  # reward model score at the end (only with --reward-model)
    guard: dict[str, Any] = field(default_factory=dict)  # rlmusic.reward_model.GuardConfig: score normalisation, over-optimisation guard
    # -- bookkeeping
    eval_every: int = 10_000  # env steps between evaluations (0 = only at start and end)
    eval_melodies: int = 128  # melodies sampled per evaluation
    eval_corpus: str = "irish"  # corpus whose n-grams define novelty in evaluations ("" = skip novelty)
    checkpoint_every: int = 20_000  # env steps between checkpoints (0 = only at the end)
    seed: int = 0  # seeds torch, numpy and SB3

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown tune config keys {unknown}; valid: {sorted(known)}")
        for table in ("theory", "guard"):
            if table in data and not isinstance(data[table], dict):
                raise ValueError(f"tune config key {table!r} must be a table, got {data[table]!r}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> TuneConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tune config {path} not found")
        if path.suffix == ".json":
            return cls.from_dict(json.loads(path.read_text()))
        try:
            return cls.from_dict(tomllib.loads(path.read_text()))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from exc

    @property
    def vocab(self) -> Vocabulary:
        return Vocabulary(self.min_pitch, self.max_pitch)

    @property
    def rollout_steps(self) -> int:
        """Steps per env per rollout (whole melodies)."""
        if self.n_steps is not None:
            return self.n_steps
        return self.steps * max(1, math.ceil(128 / self.steps))

    @property
    def total_timesteps(self) -> int:
        """``timesteps`` rounded up to whole rollouts (SB3 always finishes a rollout)."""
        per = self.rollout_steps * self.n_envs
        return per * max(1, math.ceil(self.timesteps / per))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value (called before anything trains)."""
        self.vocab  # noqa: B018 - raises on a bad pitch range
        positive = ("steps", "timesteps", "n_envs", "batch_size", "n_epochs", "eval_melodies", "kl_horizon")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in WEIGHT_FIELDS + ("beta", "ent_coef", "vf_coef", "eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_steps is not None and (self.n_steps < 1 or self.n_steps % self.steps):
            raise ValueError(
                f"n_steps must be a positive multiple of steps={self.steps} (whole melodies per rollout), got {self.n_steps}"
            )
        if self.batch_size > self.rollout_steps * self.n_envs:
            raise ValueError(
                f"batch_size={self.batch_size} exceeds the rollout size n_steps*n_envs={self.rollout_steps * self.n_envs}"
            )
        if self.learning_rate <= 0 or self.clip_range <= 0 or self.max_grad_norm <= 0:
            raise ValueError("learning_rate, clip_range and max_grad_norm must be > 0")
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got {self.gamma}, {self.gae_lambda}")
        if self.target_kl_per_note is not None and self.target_kl_per_note <= 0:
            raise ValueError(f"target_kl_per_note must be > 0 or unset, got {self.target_kl_per_note}")
        if self.target_kl_per_note is not None and self.beta == 0:
            raise ValueError("an adaptive beta (target_kl_per_note) needs beta > 0 to start from")
        if self.gamma < 0.99:
            warnings.warn(f"gamma={self.gamma} discounts the end-of-melody rewards strongly", stacklevel=2)
