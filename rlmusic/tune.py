"""PPO fine-tuning of a melody prior: ``rlmusic tune``.

Reads in the order a run goes: config (``TuneConfig``, TOML-loadable, checked before
anything trains) -> rewards (theory, end-of-melody terms, reward model) -> batched env
(``envs.BatchedMelodyVecEnv``: one frozen-prior forward per step) -> policy built
exactly from the prior (``rlmusic.policy.PriorPolicy``) -> RecurrentPPO with the KL
callback -> checkpoints / evaluation / logs -> the tuned model extracted back into a
``MelodyLSTM`` and saved in the prior's directory format.

KL control (RLHF's per-token KL, as in Sequence Tutor / Ziegler et al. / TRL): the env
pays ``beta * log p_prior(a_t)``; ``KLControl`` subtracts ``beta * log pi(a_t)`` from
the rewards in SB3's ``collect_rollouts`` after ``env.step`` and before
``rollout_buffer.add`` (``on_step`` sees ``self.locals["rewards"]`` — the very array
the buffer stores — and ``self.locals["log_probs"]``). The reward per token is then
``theory_t - beta * (log pi(a_t) - log p_prior(a_t))``, whose expectation penalises
``beta * KL(pi || prior)`` per note. With ``target_kl_per_note`` set, beta follows the
adaptive controller ``beta *= 1 + clip(KL/target - 1, -0.2, 0.2) * episodes/kl_horizon``.
``beta`` lives in the shared VecEnv, so env and callback always use the same value.

Output folder ``OUT``: the tuned model (``config.json`` + ``model.safetensors``, usable
wherever a prior is), ``tune_config.json`` (the run's config), ``metrics.csv`` (curves),
``eval.jsonl`` (periodic evaluation), ``tb/`` (TensorBoard), ``checkpoints/``
(SB3 ``.zip`` + ``.json`` with beta; ``--resume`` continues from the last one).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.rewards import theory_config
from rlmusic.model import (
    MelodyLSTM,
    Provenance,
    default_prior_dir,
    load_model,
    read_model_meta,
    save_model,
)
from rlmusic.representation import Vocabulary

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_NAME = "tune_config.json"
CHECKPOINTS = "checkpoints"
WEIGHT_FIELDS = ("theory_weight", "structure_weight", "novelty_weight", "diversity_weight", "human_weight")


# --------------------------------------------------------------------------- config


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


# --------------------------------------------------------------------------- rewards


def build_rewards(config: TuneConfig, vocab: Vocabulary):
    """(theory reward, final reward) callables of ``envs.rewards`` for this config."""
    from envs.rewards import final_reward_from_weights, no_theory, theory_reward_from_config

    theory_config(config.theory)  # unknown rule names or negative weights raise here
    theory = theory_reward_from_config(vocab, config.theory, config.steps) if config.theory_weight else no_theory
    final = final_reward_from_weights(
        vocab,
        {"structure": config.structure_weight, "novelty": config.novelty_weight, "diversity": config.diversity_weight},
        config.theory, config.steps,
    )
    return theory, final


def load_reward_model(directory: str | Path, device, guard: dict[str, Any] | None = None):
    """The reward model of ``rlmusic reward fit`` behind its guard (running normalisation of
    the score, over-optimisation guard): an object with ``score(tokens (B, T)) -> (B,)``
    and ``tune_callbacks(run)``."""
    from rlmusic import reward_model

    model = reward_model.load_reward_model(directory, device=device)
    return reward_model.GuardedRewardModel(model, reward_model.GuardConfig.from_dict(guard))


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


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def kl_per_note(model: MelodyLSTM, prior: MelodyLSTM, tokens: torch.Tensor) -> tuple[float, float]:
    """(exact KL(model || prior) per note along ``tokens``, mean log p_prior per note)."""
    inputs = model.with_bos(tokens)
    logp = torch.log_softmax(model(inputs)[0].float(), -1)  # (B, T, V)
    logq = torch.log_softmax(prior(inputs.to(prior.device))[0].float(), -1).to(logp.device)
    kl = (logp.exp() * (logp - logq)).sum(-1).mean()
    lp = logq.gather(-1, tokens[..., None]).mean()
    return float(kl), float(lp)


def evaluate_model(
    model: MelodyLSTM,
    prior: MelodyLSTM,
    steps: int,
    n: int,
    seed: int,
    theory_reward=None,
    key: str = "C major",
    corpus: str | None = "irish",
) -> dict[str, Any]:
    """Sample ``n`` melodies and score them: the theory table (``metrics.evaluate_tokens``),
    the exact KL(model || prior) per note along the samples and the mean theory reward."""
    from rlmusic import metrics

    tokens = model.sample(n, steps, generator=torch.Generator().manual_seed(seed))  # (n, T) CPU
    result: dict[str, Any] = metrics.evaluate_tokens(tokens.numpy(), model.vocab, prior=prior, key=key,
                                                     corpus=corpus or None)
    kl, lp = kl_per_note(model, prior, tokens.to(model.device))
    result["kl_per_note"], result["log_p_prior_per_note"] = kl, lp
    if theory_reward is not None:
        arr = tokens.numpy()
        per_step = [theory_reward(arr[:, :t], arr[:, t]) for t in range(steps)]
        result["theory_reward_per_note"] = float(np.mean(per_step))
    return result


# --------------------------------------------------------------------------- the run


class TuneRun:
    """One tuning job writing into ``out``; ``train()`` runs (or resumes) it."""

    def __init__(
        self,
        config: TuneConfig,
        out: str | Path,
        prior_dir: str | Path | None = None,
        reward_model_dir: str | Path | None = None,
        device: str = "auto",
        resume: bool = False,
        force: bool = False,
    ):
        from rlmusic.runtime import resolve_device

        self.out = Path(out)
        self.prior_dir = Path(prior_dir) if prior_dir is not None else default_prior_dir()
        self.reward_model_dir = reward_model_dir
        self.resume = resume
        self.device = resolve_device(device)
        saved = self.out / CONFIG_NAME
        if resume and saved.is_file():
            stored = json.loads(saved.read_text())
            previous = TuneConfig.from_dict(stored["config"])
            if asdict(previous) != asdict(config) and config != TuneConfig():
                diff = sorted(k for k in asdict(config) if asdict(config)[k] != asdict(previous)[k])
                raise ValueError(f"--resume: config differs from the run in {self.out} in {diff}")
            config = previous
            self.prior_dir = Path(stored["prior"])
            self.reward_model_dir = stored.get("reward_model")
        elif not resume and not force and (saved.is_file() or (self.out / CHECKPOINTS).is_dir()):
            raise ValueError(f"{self.out} already holds a tuning run; use --resume to continue it or --force to restart")
        config.validate()
        self.config = config
        # -- the prior: vocabulary and length checked before anything trains
        read_model_meta(self.prior_dir)  # clear error when it is not a model directory
        self.prior = load_model(self.prior_dir, device=self.device, vocab=config.vocab)
        if config.steps > self.prior.config.max_steps and not force:
            raise ValueError(
                f"steps={config.steps} exceeds the prior's max_steps={self.prior.config.max_steps} "
                f"(it never saw melodies that long); pass --force to tune anyway"
            )
        if config.guard:
            from rlmusic.reward_model import GuardConfig

            GuardConfig.from_dict(config.guard)  # unknown keys raise here, with or without a reward model
        self.reward_model = (
            load_reward_model(self.reward_model_dir, self.device, config.guard)
            if self.reward_model_dir is not None else None
        )
        self.theory_reward, self.final_reward = build_rewards(config, self.prior.vocab)

    # -- building blocks
    def make_env(self):
        from envs.melody import BatchedMelodyVecEnv

        c = self.config
        return BatchedMelodyVecEnv(
            self.prior, n_envs=c.n_envs, steps=c.steps, theory_reward=self.theory_reward,
            final_reward=self.final_reward, reward_model=self.reward_model, theory_weight=c.theory_weight,
            human_weight=c.human_weight, beta=c.beta, device=self.device,
        )

    def make_model(self, env):
        from sb3_contrib import RecurrentPPO

        from rlmusic.policy import PriorPolicy

        c = self.config
        model = RecurrentPPO(
            PriorPolicy, env, learning_rate=c.learning_rate, n_steps=c.rollout_steps, batch_size=c.batch_size,
            n_epochs=c.n_epochs, gamma=c.gamma, gae_lambda=c.gae_lambda, clip_range=c.clip_range,
            ent_coef=c.ent_coef, vf_coef=c.vf_coef, max_grad_norm=c.max_grad_norm,
            policy_kwargs={"prior_config": asdict(self.prior.config)}, seed=c.seed, device=self.device, verbose=0,
        )
        model.policy.load_prior(self.prior)
        return model

    def latest_checkpoint(self) -> tuple[Path, dict[str, Any]] | None:
        folder = self.out / CHECKPOINTS
        for meta in sorted(folder.glob("step_*.json"), reverse=True) if folder.is_dir() else []:
            zip_path = meta.with_suffix(".zip")
            if zip_path.is_file():
                return zip_path, json.loads(meta.read_text())
        return None

    def checkpoint(self) -> Path:
        """SB3 .zip (policy, optimizer, counters) + .json (beta, controller); keeps the last 2."""
        folder = self.out / CHECKPOINTS
        folder.mkdir(parents=True, exist_ok=True)
        n = self.model.num_timesteps
        stem = folder / f"step_{n:010d}"
        self.model.save(str(stem) + ".tmp.zip")
        Path(str(stem) + ".tmp.zip").replace(stem.with_suffix(".zip"))
        meta = {"num_timesteps": n, "beta": self.env.beta, "total_timesteps": self.config.total_timesteps}
        stem.with_suffix(".json").write_text(json.dumps(meta) + "\n")  # written last: marks it complete
        for old in sorted(folder.glob("step_*.json"))[:-2]:
            old.unlink()
            old.with_suffix(".zip").unlink(missing_ok=True)
        return stem.with_suffix(".zip")

    def evaluate(self, timesteps: int) -> dict[str, Any]:
        model = self.model.policy.to_melody_lstm().to(self.device)
        c = self.config
        key = theory_config(c.theory).key
        result = evaluate_model(model, self.prior, c.steps, c.eval_melodies, c.seed + 12345, self.theory_reward,
                                key=key, corpus=c.eval_corpus)
        result = {"timesteps": timesteps, "beta": self.env.beta, **result}
        with (self.out / "eval.jsonl").open("a") as f:
            f.write(json.dumps(_jsonable(result)) + "\n")
        for k, v in result.items():
            if isinstance(v, (int, float)) and math.isfinite(v) and k not in ("timesteps", "n", "steps"):
                self.model.logger.record(f"eval/{k}", v)
        self.last_eval = result
        return result

    # -- the job
    def train(self, progress: bool = True, stop_after_checkpoints: int | None = None) -> Path | None:
        """Run to ``total_timesteps``; returns the model directory (None if stopped early)."""
        from rlmusic.runtime import seed_everything

        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        seed_everything(c.seed)
        self.env = self.make_env()
        found = self.latest_checkpoint() if self.resume else None
        rows: list[dict[str, Any]] = []
        if found is None:
            if not self.resume:
                for name in ("eval.jsonl", "metrics.csv"):
                    (self.out / name).unlink(missing_ok=True)
            self.model = self.make_model(self.env)
        else:
            from sb3_contrib import RecurrentPPO

            zip_path, meta = found
            self.model = RecurrentPPO.load(str(zip_path), env=self.env, device=self.device)
            self.env.beta = meta["beta"]
            self.model._last_obs = self.env.reset()  # checkpoints fall between whole melodies
            self.model._last_episode_starts = np.ones(c.n_envs, dtype=bool)
            done = self.model.num_timesteps
            rows = [r for r in read_csv(self.out / "metrics.csv") if r.get("timesteps", 0) <= done]
            _truncate_jsonl(self.out / "eval.jsonl", done)
        (self.out / CONFIG_NAME).write_text(json.dumps({
            "config": asdict(c), "prior": str(self.prior_dir),
            "reward_model": None if self.reward_model_dir is None else str(self.reward_model_dir),
        }, indent=2) + "\n")
        from stable_baselines3.common.logger import Logger

        self.model.set_logger(Logger(str(self.out), [_curves_writer(self.out, rows)]))
        KLControl, RunBookkeeping = _make_callbacks()
        self.kl_callback = KLControl(self.env, KLController(c.target_kl_per_note, c.kl_horizon))
        book = RunBookkeeping(self, c.total_timesteps, progress, stop_after_checkpoints)
        callbacks = [self.kl_callback, book]
        if hasattr(self.reward_model, "tune_callbacks"):  # the reward model's over-optimisation guard
            callbacks += self.reward_model.tune_callbacks(self)
        remaining = c.total_timesteps - self.model.num_timesteps
        if remaining > 0:
            self.model.learn(remaining, callback=callbacks, reset_num_timesteps=found is None)
        if book.stopped:
            return None
        final = self.evaluate(self.model.num_timesteps)
        self.model.logger.dump(self.model.num_timesteps)  # with the last update's losses
        return self.save(final)

    def save(self, final_eval: dict[str, Any]) -> Path:
        tuned = self.model.policy.to_melody_lstm()
        from rlmusic.runtime import command_line, git_commit, now_iso

        fitted = getattr(self.reward_model, "model", self.reward_model)  # unwrap the guard
        extra = {"tune_config": asdict(self.config), "timesteps": int(self.model.num_timesteps),
                 "final_beta": float(self.env.beta)}
        if fitted is not None and hasattr(fitted, "comparison_ids"):
            extra["comparisons"] = list(fitted.comparison_ids)
        provenance = Provenance(
            kind="tuned",
            parent_model=str(self.prior_dir),
            reward_model=None if self.reward_model_dir is None else str(self.reward_model_dir),
            ratings=list(fitted.rating_ids) if hasattr(fitted, "rating_ids") else None,
            git_commit=git_commit(),
            created=now_iso(),
            metrics={k: float(v) for k, v in final_eval.items() if isinstance(v, (int, float))},
            command=command_line(),
            extra=extra,
        )
        return save_model(tuned, self.out, provenance)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        out[k] = v
    return out


def _truncate_jsonl(path: Path, timesteps: int) -> None:
    if path.is_file():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["timesteps"] <= timesteps]
        path.write_text("".join(line + "\n" for line in keep))


def tune(
    config: TuneConfig,
    out: str | Path,
    prior_dir: str | Path | None = None,
    reward_model_dir: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    stop_after_checkpoints: int | None = None,
) -> Path | None:
    """Tune ``prior_dir`` (default: the shipped prior) into ``out``; see ``TuneRun``."""
    run = TuneRun(config, out, prior_dir, reward_model_dir, device, resume, force)
    return run.train(progress=progress, stop_after_checkpoints=stop_after_checkpoints)


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder: tuned model, logs, checkpoints")
    parser.add_argument("--prior", help="model directory to start from (default: the shipped prior)")
    parser.add_argument("--config", help="TuneConfig as TOML (or JSON); keys as in rlmusic.tune.TuneConfig")
    parser.add_argument("--timesteps", type=int, help="total env steps (overrides the config)")
    parser.add_argument("--steps", type=int, help="steps per melody T (overrides the config)")
    parser.add_argument("--n-envs", type=int, help="melodies in parallel (overrides the config)")
    parser.add_argument("--seed", type=int, help="random seed (overrides the config)")
    parser.add_argument("--reward-model", help="reward model directory (rlmusic reward fit)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    parser.add_argument("--force", action="store_true",
                        help="allow steps beyond the prior's max_steps; restart over an existing run in --out")
    parser.add_argument("--threads", type=int,
                        help="torch CPU threads (1 is much faster for small batches on a busy machine)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--stop-after-checkpoints", type=int, help=argparse.SUPPRESS)  # tests: simulate a kill


def config_from_args(args: argparse.Namespace) -> TuneConfig:
    data: dict[str, Any] = {}
    if args.config:
        data = asdict(TuneConfig.from_file(args.config))
    for key, value in (("timesteps", args.timesteps), ("steps", args.steps), ("n_envs", args.n_envs),
                       ("seed", args.seed)):
        if value is not None:
            data[key] = value
    return TuneConfig.from_dict(data)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    out = tune(config, args.out, args.prior, args.reward_model, args.device, args.resume, args.force,
               progress=not args.no_progress, stop_after_checkpoints=args.stop_after_checkpoints)
    if out is None:
        print(f"tune: stopped after a checkpoint in {args.out}; continue with --resume")
        return 0
    result = json.loads((Path(out) / "eval.jsonl").read_text().splitlines()[-1])
    print(f"tune: wrote the tuned model to {out} (KL {result['kl_per_note']:.3f} nats/note)")
    return 0


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
