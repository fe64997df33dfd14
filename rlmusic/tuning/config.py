"""The options of a tuning run: ``TuneConfig`` (presets, TOML/JSON loading, checks before
anything trains, a printable description of every key).

Presets are TOML files shipped in ``rlmusic/tuning/presets/`` (``PRESETS`` lists them);
``TuneConfig.preset(name, **overrides)`` reads one. ``CONFIG_NAME`` is the file a run
stores its config in (``OUT/tune_config.json``).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rlmusic.music.representation import Vocabulary
from rlmusic.runtime import field_docs, read_table
from rlmusic.tuning.targets import parse_targets

CONFIG_NAME = "tune_config.json"
WEIGHT_FIELDS = ("theory_weight", "structure_weight", "novelty_weight", "diversity_weight", "human_weight")
PRESET_DIR = Path(__file__).resolve().parent / "presets"
TABLES = ("theory", "guard", "rl_tuner", "critic", "targets")  # keys whose value is a TOML table
THEORY_RULES = ("rlmusic", "rl_tuner")  # the theory rewards theory_rules can name
METHODS = ("ppo", "dpg", "dpo")  # how a run trains: PPO, or to a [targets] projection by dpg, or on preference pairs by dpo
DPO_LOSSES = ("dpo", "ipo")
MINIBATCHES = ("episodes", "contiguous")  # how PPO cuts a rollout into minibatches (rlmusic.tuning.ppo)


def preset_names() -> list[str]:
    """The presets shipped in the package (``rlmusic/tuning/presets/NAME.toml``)."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


@dataclass
class TuneConfig:
    """Every option of a tuning run (TOML: top-level keys, rule weights under ``[theory]``)."""

    # -- melodies
    steps: int = 32  # T: 16th-note steps per melody = one episode (32 = 2 bars, RL Tuner's setting)
    min_pitch: int = 48  # lowest pitch of the vocabulary the run expects; a prior with another raises
    max_pitch: int = 84  # highest pitch of that vocabulary (inclusive)
    # -- PPO (sb3-contrib RecurrentPPO)
    timesteps: int = 100_000  # total env steps (tokens), rounded up to whole rollouts
    n_envs: int = 16  # melodies generated in parallel (one batched prior forward per step)
    n_steps: int | None = None  # steps per env per rollout, a multiple of steps (None: whole melodies >= 128)
    batch_size: int = 512  # minibatch size (tokens) of the PPO update
    n_epochs: int = 4  # passes over each rollout
    minibatches: str = "episodes"  # how a rollout is cut into minibatches: "episodes" (its melodies shuffled, batch_size steps each: whole melodies, no padding, when batch_size is a multiple of steps) or "contiguous" (sb3-contrib's own: one random split, sequences padded to the longest; runs before 2026-12-07)
    learning_rate: float = 3e-5  # Adam step size (small: we start from a trained model)
    lr_decay: bool = False  # the learning rate falls linearly to 0 over the run (the policy settles, so the saved model is not one noisy update's)
    gamma: float = 1.0  # discount; episodes are short and end, so 1.0 (undiscounted) works
    gae_lambda: float = 0.95  # GAE trade-off between bias (0) and variance (1)
    clip_range: float = 0.2  # PPO ratio clip
    ent_coef: float = 0.0  # entropy bonus (the KL to the prior already keeps entropy up)
    vf_coef: float = 0.5  # value loss weight
    max_grad_norm: float = 0.5  # gradient clipping
    # -- KL control
    beta: float | None = None  # weight of the per-step KL to the prior (initial value when adaptive); unset: 0.1, and a targets run fixes it at 1
    target_kl_per_step: float | None = None  # nats per 16th step the controller aims at (None: fixed beta)
    kl_horizon: int = 500  # controller horizon in melodies (Ziegler et al. use 10,000; our runs are short)
    # -- rewards (weights >= 0)
    theory_weight: float | None = None  # per-step music-theory reward (rule weights in the [theory] table); unset: 1, or 0 in a targets run
    theory_rules: str = "rlmusic"  # "rlmusic": our rules ([theory] weights); "rl_tuner": Magenta's reward_music_theory
    rl_tuner: dict[str, Any] = field(default_factory=dict)  # [rl_tuner]: multipliers of RL Tuner's reward amounts by rule
    theory: dict[str, Any] = field(default_factory=dict)  # [theory]: rlmusic.music.reward.TheoryConfig keys
    structure_weight: float = 0.0  # structure (form) score of the melody
    structure_shaping: bool = True  # pay the structure score as it grows, step by step (same total per melody)
    novelty_weight: float = 0.0  # end-of-melody originality vs the prior's corpus (novelty x copy penalty)
    diversity_weight: float = 0.0  # end-of-melody diversity: share of the melody's 4-grams no other melody has
    diversity_memory: int = 0  # melodies before the batch whose 4-grams also count as shared (0: the batch only)
    human_weight: float = 1.0  # end-of-melody reward model score (only with a reward model)
    guard: dict[str, Any] = field(default_factory=dict)  # [guard]: rlmusic.feedback.guard.GuardConfig keys
    style_weight: float = 0.0  # end-of-melody style critic log-odds of "real corpus melody" (rlmusic.tuning.critic)
    critic: dict[str, Any] = field(default_factory=dict)  # [critic]: rlmusic.tuning.critic.CriticConfig keys
    # -- targets
    targets: dict[str, str] = field(default_factory=dict)  # [targets]: "KEY" = ">= X" (<=, ==), KEY an evaluation key; a run with targets trains to their projection (reward lambda . phi at the end of each melody, beta 1; the weighted rewards only where the config sets them)
    targets_plan_n: int = 20_000  # prior melodies sampled for the plan that starts a targets run (lambda, the KL floor), as `rlmusic targets plan -n`
    targets_min_ess: float = 100.0  # the plan refuses a projection whose effective sample size is below this
    targets_lr: float = 0.05  # dual ascent of lambda after each rollout, in Newton steps: lambda_i += lr (bar_i - mean_i) / var_i (var_i: the prior's); 0 keeps the plan's lambda
    targets_lr_decay: bool = False  # ppo: lambda's step falls linearly from targets_lr to 0 over the run (lambda settles at the end, and the saved model with it)
    targets_kp: float = 0.0  # ppo: proportional gain of a PID Lagrangian, in Newton steps: lambda paid is the dual ascent's plus kp (aim_i - mean_i) / var_i of the last rollout (0: dual ascent alone)
    targets_kd: float = 0.0  # ppo: derivative gain of a PID Lagrangian: plus kd times the growth of that error since the last rollout, where a target moves away from met (0: none)
    targets_margin: float = 0.0  # ppo: lambda's refit aims each inequality this many prior standard deviations of its feature past its bar (the moments settle at the aims, so a model evaluated on fresh melodies clears the bars rather than straddling them); the plan and its floor are the bars' own
    targets_shaping: bool = True  # ppo: pay lambda . phi as each melody grows (the growth of lambda . phi of the melody so far at each step: potential-based, the same return per melody with gamma 1); false: all at its last step
    method: str = "ppo"  # how a targets run trains to the projection: "ppo" (RecurrentPPO, reward lambda . phi, beta 1) or "dpg" (distributional policy gradient, rlmusic.tuning.dpg; needs [targets])
    dpg_batch: int = 256  # dpg: melodies sampled from the proposal per gradient step (a step is dpg_batch * steps env steps of timesteps)
    dpg_learning_rate: float = 1e-4  # dpg: Adam step size of the policy (gradients clipped at max_grad_norm)
    dpg_proposal_every: int = 8  # dpg: gradient steps between proposal checks (the proposal becomes the policy when its estimated KL(P || pi) is lower; lambda refitted then)
    dpg_refit_lambda: bool = True  # dpg: at each proposal check refit lambda on the last targets_plan_n sampled melodies (importance-weighted), kept when its effective sample size beats the current fit's
    dpo_loss: str = "dpo"  # dpo: "dpo" (-log sigmoid(beta h)) or "ipo" ((h - 1/(2 beta))^2), h the winner's log-ratio to the prior minus the loser's (rlmusic.tuning.dpo)
    dpo_beta: float = 0.1  # dpo: beta of the loss (how far from the prior the preferences may pull)
    dpo_epochs: int = 4  # dpo: passes over the pairs (online: over each round's pairs)
    dpo_batch: int = 32  # dpo: pairs per gradient step
    dpo_learning_rate: float = 1e-4  # dpo: Adam step size of the policy (gradients clipped at max_grad_norm)
    dpo_rater: str | None = None  # dpo: only this rater's comparisons and star pairs (None: every rater's; star pairs always within one rater)
    dpo_online_pairs: int = 0  # dpo: 0 trains on the stored judgements (offline); K > 0: rounds of K pairs sampled from the policy and judged by the reward model (online, needs --reward-model) until timesteps melody steps were sampled
    # -- bookkeeping
    eval_every: int = 10_000  # env steps between evaluations (0: only at start and end)
    eval_melodies: int = 128  # melodies sampled per evaluation
    eval_corpus: str | None = None  # corpus of novelty in evaluations (None: the prior's; "none": skip)
    checkpoint_every: int = 20_000  # env steps between checkpoints (0: only at the end)
    seed: int = 0  # seeds torch, numpy and SB3

    # -- building
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TuneConfig:
        """A config from a mapping of its keys; unknown keys raise listing the valid ones."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown tune config keys {unknown}; valid: {sorted(known)}")
        for table in TABLES:
            if table in data and not isinstance(data[table], dict):
                raise ValueError(f"tune config key {table!r} must be a table, got {data[table]!r}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: str | Path) -> TuneConfig:
        """Read a TOML (or ``.json``) file of config keys."""
        return cls.from_dict(read_table(path))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TuneConfig:
        """The preset called ``name`` (see ``preset_names()``) with ``overrides`` on top;
        a table override (``theory=``, ``guard=``) is merged into the preset's table."""
        path = PRESET_DIR / f"{name}.toml"
        if not path.is_file():
            raise ValueError(f"unknown preset {name!r}; valid: {', '.join(preset_names())}")
        return cls.from_dict(merge(read_table(path), overrides))

    def replace(self, **overrides: Any) -> TuneConfig:
        """A copy with ``overrides`` (tables merged, as in ``preset``)."""
        return TuneConfig.from_dict(merge(asdict(self), overrides))

    # -- derived values
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
        """``timesteps`` rounded up to whole rollouts (SB3 always finishes a rollout; a dpg
        run: to whole gradient steps of ``dpg_batch`` melodies)."""
        per = self.dpg_batch * self.steps if self.method == "dpg" else self.rollout_steps * self.n_envs
        return per * max(1, math.ceil(self.timesteps / per))

    # -- checks
    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value (called before anything trains)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in TABLES:
                continue
            if f.name in ("eval_corpus", "theory_rules", "method", "minibatches", "dpo_loss", "dpo_rater"):
                if value is not None and not isinstance(value, str):
                    choices = {"theory_rules": THEORY_RULES, "method": METHODS, "minibatches": MINIBATCHES,
                               "dpo_loss": DPO_LOSSES}
                    what = ("a corpus name or 'none'" if f.name == "eval_corpus" else "a rater's name"
                            if f.name == "dpo_rater" else f"one of {list(choices[f.name])}")
                    raise ValueError(f"{f.name} must be {what}, got {value!r}")
                continue
            if value is None and f.default is None:
                continue
            if isinstance(f.default, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"{f.name} must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{f.name} must be finite, got {value!r}")
            if isinstance(f.default, int) and not isinstance(f.default, bool) and not float(value).is_integer():
                raise ValueError(f"{f.name} must be a whole number, got {value!r}")
        self.vocab  # noqa: B018 - raises on a bad pitch range
        positive = ("steps", "timesteps", "n_envs", "batch_size", "n_epochs", "eval_melodies", "kl_horizon",
                    "dpg_batch", "dpg_proposal_every", "dpo_epochs", "dpo_batch")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.diversity_memory < 0:
            raise ValueError(f"diversity_memory must be >= 0, got {self.diversity_memory}")
        for name in WEIGHT_FIELDS + ("beta", "ent_coef", "vf_coef", "eval_every", "checkpoint_every",
                                     "targets_min_ess", "targets_lr", "targets_margin", "targets_kp",
                                     "targets_kd"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_steps is not None and (self.n_steps < 1 or self.n_steps % self.steps):
            raise ValueError(
                f"n_steps must be a positive multiple of steps={self.steps} (whole melodies per rollout), "
                f"got {self.n_steps}"
            )
        if self.batch_size > self.rollout_steps * self.n_envs:
            raise ValueError(
                f"batch_size={self.batch_size} exceeds the rollout size "
                f"n_steps*n_envs={self.rollout_steps * self.n_envs}"
            )
        if self.dpo_online_pairs < 0:
            raise ValueError(f"dpo_online_pairs must be >= 0, got {self.dpo_online_pairs}")
        if self.dpo_loss not in DPO_LOSSES:
            raise ValueError(f"dpo_loss must be one of {list(DPO_LOSSES)}, got {self.dpo_loss!r}")
        for name in ("learning_rate", "clip_range", "max_grad_norm", "dpg_learning_rate", "dpo_learning_rate",
                     "dpo_beta"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got {self.gamma}, {self.gae_lambda}")
        if self.target_kl_per_step is not None and self.target_kl_per_step <= 0:
            raise ValueError(f"target_kl_per_step must be > 0 or unset, got {self.target_kl_per_step}")
        if self.target_kl_per_step is not None and self.effective_beta == 0:
            raise ValueError("an adaptive beta (target_kl_per_step) needs beta > 0 to start from")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        if self.minibatches not in MINIBATCHES:
            raise ValueError(f"minibatches must be one of {list(MINIBATCHES)}, got {self.minibatches!r}")
        if parse_targets(self.targets):  # unknown keys and bad bars raise, naming them
            self._check_targets_run()
            if self.method == "dpo":
                raise ValueError("method dpo trains on preference pairs, not to [targets]: drop the [targets] table "
                                 "or use --method ppo or dpg")
        elif self.method == "dpg":
            raise ValueError("method dpg trains to the projection of a [targets] table, and this config has none: "
                             "add one (e.g. --preset rl-tuner-targets) or use --method ppo")
        if self.theory_rules not in THEORY_RULES:
            raise ValueError(f"theory_rules must be one of {list(THEORY_RULES)}, got {self.theory_rules!r}")
        if self.gamma < 0.99:
            warnings.warn(f"gamma={self.gamma} discounts the end-of-melody rewards strongly", stacklevel=2)

    def _check_targets_run(self) -> None:
        """A run with targets: beta fixed at 1 (then the optimum of the KL-regularised reward
        lambda . phi is the projection itself); weighted rewards the config sets are legal
        but move the optimum away from it: a warning."""
        if self.target_kl_per_step is not None:
            raise ValueError(f"target_kl_per_step={self.target_kl_per_step}: a run with [targets] fixes beta at 1 "
                             "(its optimum is then the projection); unset target_kl_per_step")
        if self.beta is not None and self.beta != 1:
            raise ValueError(f"beta={self.beta}: a run with [targets] fixes beta at 1 (its optimum is then the "
                             "projection; lambda sets how far each target pulls); unset beta")
        if self.targets_plan_n < 2:
            raise ValueError(f"targets_plan_n must be >= 2 melodies, got {self.targets_plan_n}")
        if self.targets_shaping and self.method == "ppo" and self.gamma != 1:
            raise ValueError(f"gamma={self.gamma}: targets_shaping pays lambda . phi by its growth at each step, "
                             "which leaves a melody's return unchanged only undiscounted; set gamma = 1 or "
                             "targets_shaping = false")
        weighted = [name for name in WEIGHT_FIELDS + ("style_weight",)
                    if name != "human_weight" and getattr(self, name)]
        if weighted and self.method == "dpg":
            raise ValueError(f"method dpg trains to the projection alone; it pays no weighted rewards: unset "
                             f"{', '.join(weighted)} (or use --method ppo)")
        if weighted:
            warnings.warn(f"a run with [targets] pays lambda . phi and the KL; the weighted rewards the config sets "
                          f"({', '.join(weighted)}) are added on top, so its optimum is no longer the projection",
                          stacklevel=3)

    @property
    def effective_beta(self) -> float:
        """The beta a run starts from: ``beta``, else 1 in a targets run, else 0.1."""
        return float(self.beta) if self.beta is not None else 1.0 if self.targets else 0.1

    @property
    def effective_theory_weight(self) -> float:
        """The theory reward's weight: ``theory_weight``, else 0 in a targets run, else 1."""
        return float(self.theory_weight) if self.theory_weight is not None else 0.0 if self.targets else 1.0

    def resolved(self) -> dict[str, Any]:
        """The config's keys with ``beta`` and ``theory_weight`` at the values a run uses
        (so that a stored run and the same config compare equal however they were written)."""
        return {**asdict(self), "beta": self.effective_beta, "theory_weight": self.effective_theory_weight}

    # -- description
    def describe(self) -> str:
        """Every key with its value and its one-line documentation, as TOML that ``from_file``
        reads back to the same config (an unset key is a comment)."""
        docs = field_docs(TuneConfig)
        lines = []
        for f in fields(self):
            if f.name in TABLES:
                continue
            value = getattr(self, f.name)
            line = f"# {f.name} = (unset)" if value is None else f"{f.name} = {toml_value(value)}"
            lines.append(line.ljust(36) + f"  # {docs.get(f.name, '')}")
        for table in TABLES:
            lines += ["", f"[{table}]  # {docs.get(table, '')}"]
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in getattr(self, table).items()]
        return "\n".join(lines)


def toml_key(key: str) -> str:
    """A table key as TOML writes it: bare when it can be, else quoted (``"rl_tuner/x"``)."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` on top; tables (``theory``, ``guard``, ``targets``) merge key by key."""
    out = dict(base)
    for key, value in overrides.items():
        if key in TABLES and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
