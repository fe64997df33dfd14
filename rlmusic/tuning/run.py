"""PPO fine-tuning of a melody prior: ``TuneRun`` and ``tune``.

Reads in the order a run goes: rewards (theory, end-of-melody terms; the reward model is
handed in ready to score) -> batched env (``envs.BatchedMelodyVecEnv``: one frozen-prior
forward per step) -> the policy built exactly from the prior
(``rlmusic.tuning.policy.PriorPolicy``) -> RecurrentPPO with the KL callback ->
checkpoints, evaluation, logs -> the tuned model extracted back into a ``MelodyLSTM``
and saved in the prior's directory format.

KL control (RLHF's per-token KL, as in Sequence Tutor / Ziegler et al. / TRL): the env
pays ``beta * log p_prior(a_t)``; ``KLControl`` subtracts ``beta * log pi(a_t)`` from the
rewards before they enter the rollout buffer. The reward per step is then
``theory_t - beta * (log pi(a_t) - log p_prior(a_t))``, whose expectation penalises
``beta * KL(pi || prior)`` per 16th step. With ``target_kl_per_step`` set, beta follows
the adaptive controller. ``beta`` lives in the shared VecEnv, so env and callback always
use the same value.

Output folder ``OUT``: the tuned model (``config.json`` + ``model.safetensors``, usable
wherever a prior is), ``tune_config.json`` (the run's config and references),
``metrics.csv`` (curves), ``eval.jsonl`` (periodic evaluation), ``tb/`` (TensorBoard),
``checkpoints/`` (SB3 ``.zip`` + ``.json`` with beta; ``resume=True`` continues from the
last one, and extends a finished run when ``timesteps`` grew), ``critic.pt`` (the style critic).
"""

from __future__ import annotations

import json
import math
import signal
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.logger import Logger

from envs.melody import BatchedMelodyVecEnv
from envs.rewards import (
    final_reward_from_weights,
    no_theory,
    theory_config,
    theory_reward_from_config,
)
from rlmusic.corpus.index import corpus_index
from rlmusic.evaluation.table import evaluate_tokens
from rlmusic.models.checkpoint import (
    Provenance,
    default_prior_dir,
    load_model,
    model_ref,
    read_model_meta,
    save_model,
    training_corpus,
)
from rlmusic.models.lstm import MelodyLSTM
from rlmusic.music.representation import Vocabulary
from rlmusic.runtime import command_line, git_commit, now_iso, resolve_device, seed_everything
from rlmusic.tuning.callbacks import KLControl, KLController, RunBookkeeping
from rlmusic.tuning.config import CONFIG_NAME, TuneConfig
from rlmusic.tuning.critic import CriticRefresh, style_critic
from rlmusic.tuning.curves import CurvesWriter, read_csv
from rlmusic.tuning.policy import PriorPolicy

CHECKPOINTS = "checkpoints"
EXTENDABLE = ("timesteps",)  # config keys a resumed run may change (to extend it)


# --------------------------------------------------------------------------- rewards


def novelty_corpus(config: TuneConfig, prior_dir: Path) -> str | None:
    """The corpus novelty is measured against: ``eval_corpus`` when set, else the prior's
    training corpus; None for ``"none"`` or when the prior does not say."""
    if config.eval_corpus is not None:
        return None if config.eval_corpus.lower() in ("none", "") else config.eval_corpus
    return training_corpus(prior_dir)


def build_rewards(config: TuneConfig, vocab: Vocabulary, corpus: str | None):
    """(theory reward, final reward) callables of ``envs.rewards`` for this config; the
    novelty term measures against ``corpus`` (its train split)."""
    theory_config(config.theory)  # unknown rule names or negative weights raise here
    theory = theory_reward_from_config(vocab, config.theory, config.steps) if config.theory_weight else no_theory
    weights = {"structure": config.structure_weight, "novelty": config.novelty_weight,
               "diversity": config.diversity_weight}
    if config.novelty_weight and corpus is None:
        raise ValueError("novelty_weight > 0 needs a corpus: the prior's provenance names none; set eval_corpus")
    index = corpus_index(corpus, vocab=vocab) if corpus and config.novelty_weight else None
    return theory, final_reward_from_weights(vocab, weights, config.theory, config.steps, index)


# --------------------------------------------------------------------------- evaluation


def evaluate_policy_model(
    model: MelodyLSTM,
    prior: MelodyLSTM,
    steps: int,
    n: int,
    seed: int,
    theory_reward=None,
    key: str = "C major",
    corpus: str | None = None,
) -> dict[str, Any]:
    """Sample ``n`` melodies and score them: the evaluation table (``evaluate_tokens``, with
    the exact KL to the prior per step and per note) and the mean theory reward per step."""
    tokens = model.sample(n, steps, generator=torch.Generator().manual_seed(seed)).numpy()  # (n, T)
    result = evaluate_tokens(tokens, model.vocab, prior=prior, model=model, key=key, corpus=corpus)
    if theory_reward is not None:
        per_step = [theory_reward(tokens[:, :t], tokens[:, t]) for t in range(steps)]
        result["theory_reward_per_step"] = float(np.mean(per_step))
    return result


# --------------------------------------------------------------------------- the run


def stored_run(out: str | Path) -> dict[str, Any] | None:
    """What a run in ``out`` stored about itself (config, prior, reward model), or None."""
    path = Path(out) / CONFIG_NAME
    return json.loads(path.read_text()) if path.is_file() else None


class TuneRun:
    """One tuning job writing into ``out``; ``train()`` runs (or resumes) it.

    Args:
        prior_dir: the KL reference (default: the shipped prior).
        reward_model: an object with ``score(tokens (B, T)) -> (B,)`` (e.g. the guarded
            reward model of ``rlmusic.feedback``); its optional ``tune_callbacks(run)``
            adds SB3 callbacks, and its ``rating_ids`` / ``comparison_ids`` go into the
            tuned model's provenance.
        reward_model_dir: where that reward model was loaded from (provenance, resume).
        init_model: model directory the policy starts from (default: the prior).
        resume: continue the run in ``out`` from its last checkpoint (``config`` may
            change only ``timesteps``, which extends a finished run).
        force: restart over an existing run; allow steps beyond the prior's max_steps.
    """

    def __init__(
        self,
        config: TuneConfig,
        out: str | Path,
        prior_dir: str | Path | None = None,
        *,
        reward_model: Any = None,
        reward_model_dir: str | Path | None = None,
        init_model: str | Path | None = None,
        device: str = "auto",
        resume: bool = False,
        force: bool = False,
    ):
        self.out = Path(out)
        self.prior_dir = Path(prior_dir) if prior_dir is not None else default_prior_dir()
        self.reward_model, self.reward_model_dir = reward_model, reward_model_dir
        self.init_model_dir = Path(init_model) if init_model is not None else None
        self.resume, self.device = resume, resolve_device(device)
        stored = stored_run(self.out)
        if resume and stored is not None:
            previous = TuneConfig.from_dict(stored["config"])
            diff = sorted(k for k, v in asdict(config).items() if asdict(previous)[k] != v)
            if set(diff) - set(EXTENDABLE):
                raise ValueError(f"--resume: the config differs from the run in {self.out} in {diff}; "
                                 f"only {list(EXTENDABLE)} may change")
            self.prior_dir = Path(stored["prior"])
            self.reward_model_dir = stored.get("reward_model")
            self.init_model_dir = Path(stored["init_model"]) if stored.get("init_model") else None
            if self.reward_model_dir is not None and reward_model is None:
                raise ValueError(f"the run in {self.out} was tuned against the reward model "
                                 f"{self.reward_model_dir}; pass it to resume")
        elif resume:
            raise FileNotFoundError(f"--resume: no tuning run in {self.out} (no {CONFIG_NAME})")
        elif not force and (stored is not None or (self.out / CHECKPOINTS).is_dir()):
            raise ValueError(f"{self.out} already holds a tuning run; use --resume to continue it or --force to restart")
        if reward_model is not None and not hasattr(reward_model, "score"):
            raise ValueError(f"reward_model must have a score(tokens) method, got {type(reward_model).__name__}")
        config.validate()
        self.config = config
        read_model_meta(self.prior_dir)  # a clear error when it is not a model directory
        self.prior = load_model(self.prior_dir, device=self.device, vocab=config.vocab)
        if config.steps > self.prior.config.max_steps and not force:
            raise ValueError(
                f"steps={config.steps} exceeds the prior's max_steps={self.prior.config.max_steps} "
                f"(it never saw melodies that long); pass --force to tune anyway"
            )
        self.corpus = novelty_corpus(config, self.prior_dir)
        self.theory_reward, self.final_reward = build_rewards(config, self.prior.vocab, self.corpus)
        self.critic, self.final_reward = style_critic(config, self, self.final_reward)  # style_weight 0: None
        self.extra_callbacks: list[Any] = []
        self.interrupted = False
        self.last_eval: dict[str, Any] = {}

    # -- building blocks
    def make_env(self) -> BatchedMelodyVecEnv:
        c = self.config
        return BatchedMelodyVecEnv(
            self.prior, n_envs=c.n_envs, steps=c.steps, theory_reward=self.theory_reward,
            final_reward=self.final_reward, reward_model=self.reward_model, theory_weight=c.theory_weight,
            human_weight=c.human_weight, beta=c.beta, device=self.device,
        )

    def make_model(self, env: BatchedMelodyVecEnv) -> RecurrentPPO:
        c = self.config
        model = RecurrentPPO(
            PriorPolicy, env, learning_rate=c.learning_rate, n_steps=c.rollout_steps, batch_size=c.batch_size,
            n_epochs=c.n_epochs, gamma=c.gamma, gae_lambda=c.gae_lambda, clip_range=c.clip_range,
            ent_coef=c.ent_coef, vf_coef=c.vf_coef, max_grad_norm=c.max_grad_norm,
            policy_kwargs={"prior_config": asdict(self.prior.config)}, seed=c.seed, device=self.device, verbose=0,
        )
        start = self.prior if self.init_model_dir is None else load_model(
            self.init_model_dir, device=self.device, vocab=c.vocab)
        model.policy.load_prior(start)
        return model

    def latest_checkpoint(self) -> tuple[Path, dict[str, Any]] | None:
        folder = self.out / CHECKPOINTS
        for meta in sorted(folder.glob("step_*.json"), reverse=True) if folder.is_dir() else []:
            zip_path = meta.with_suffix(".zip")
            if zip_path.is_file():
                return zip_path, json.loads(meta.read_text())
        return None

    def checkpoint(self, timesteps: int | None = None) -> Path:
        """SB3 .zip (policy, optimizer) + .json (timesteps, beta); keeps the last 2.
        ``timesteps``: the env steps the saved weights were trained on (default: all so far)."""
        folder = self.out / CHECKPOINTS
        folder.mkdir(parents=True, exist_ok=True)
        n = int(self.model.num_timesteps if timesteps is None else timesteps)
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
        result = evaluate_policy_model(model, self.prior, c.steps, c.eval_melodies, c.seed + 12345,
                                       self.theory_reward, key=theory_config(c.theory).key, corpus=self.corpus)
        result = {"timesteps": timesteps, "beta": self.env.beta, **result}
        with (self.out / "eval.jsonl").open("a") as f:
            f.write(json.dumps(jsonable(result)) + "\n")
        for k, v in result.items():
            if isinstance(v, (int, float)) and math.isfinite(v) and k not in ("timesteps", "n", "steps"):
                self.model.logger.record(f"eval/{k}", v)
        self.last_eval = result
        return result

    # -- the job
    def train(self, progress: bool = True, stop_after_checkpoints: int | None = None) -> Path | None:
        """Run to ``total_timesteps``; returns the model directory, or None when stopped
        early (Ctrl-C, ``stop_after_checkpoints``), with a checkpoint to resume from."""
        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        seed_everything(c.seed)
        self.env = self.make_env()
        found = self.latest_checkpoint() if self.resume else None
        rows: list[dict[str, Any]] = []
        if found is None:
            for name in ("eval.jsonl", "metrics.csv"):
                (self.out / name).unlink(missing_ok=True)
            self.model = self.make_model(self.env)
        else:
            zip_path, meta = found
            done = int(meta["num_timesteps"])
            if done >= c.total_timesteps:
                raise ValueError(f"the run in {self.out} already finished at {done} env steps; "
                                 f"pass --timesteps above {done} to extend it")
            self.model = RecurrentPPO.load(str(zip_path), env=self.env, device=self.device)
            self.model.num_timesteps = done
            self.env.beta = meta["beta"]
            self.model._last_obs = self.env.reset()  # checkpoints fall between whole melodies
            self.model._last_episode_starts = np.ones(c.n_envs, dtype=bool)
            rows = [r for r in read_csv(self.out / "metrics.csv") if r.get("timesteps", 0) <= done]
            truncate_jsonl(self.out / "eval.jsonl", done)
        (self.out / CONFIG_NAME).write_text(json.dumps({
            "config": asdict(c), "prior": str(self.prior_dir),
            "reward_model": None if self.reward_model_dir is None else str(self.reward_model_dir),
            "init_model": None if self.init_model_dir is None else str(self.init_model_dir),
        }, indent=2) + "\n")
        self.model.set_logger(Logger(str(self.out), [CurvesWriter(self.out, rows)]))
        self.kl_callback = KLControl(self.env, KLController(c.target_kl_per_step, c.kl_horizon))
        self.book = RunBookkeeping(self, c.total_timesteps, progress, stop_after_checkpoints)
        self.extra_callbacks = list(self.reward_model.tune_callbacks(self)) \
            if hasattr(self.reward_model, "tune_callbacks") else []
        self.extra_callbacks += [CriticRefresh(self)] if self.critic is not None else []  # the style critic
        remaining = c.total_timesteps - self.model.num_timesteps
        with _stop_on_ctrl_c(self.book):
            self.model.learn(remaining, callback=[self.kl_callback, self.book, *self.extra_callbacks],
                             reset_num_timesteps=False)
        if self.book.stopped:
            self.interrupted = self.book.interrupted
            if self.interrupted:
                self.checkpoint(self.book.trained_timesteps)
            return None
        final = self.evaluate(self.model.num_timesteps)
        self.model.logger.dump(self.model.num_timesteps)  # with the last update's losses
        self.checkpoint()  # the finished state: --resume with more timesteps extends from here
        return self.save(final)

    def save(self, final_eval: dict[str, Any]) -> Path:
        tuned = self.model.policy.to_melody_lstm()
        fitted = getattr(self.reward_model, "model", self.reward_model)  # unwrap a guard
        extra: dict[str, Any] = {"tune_config": asdict(self.config), "timesteps": int(self.model.num_timesteps),
                                 "final_beta": float(self.env.beta)}
        if self.init_model_dir is not None:
            extra["kl_reference"] = model_ref(self.prior_dir)
        if fitted is not None and hasattr(fitted, "comparison_ids"):
            extra["comparisons"] = list(fitted.comparison_ids)
        for cb in self.extra_callbacks:  # e.g. the reward model's guard: what it saw
            if hasattr(cb, "provenance"):
                extra.update(cb.provenance())
        provenance = Provenance(
            kind="tuned",
            corpus=self.corpus,
            parent_model=model_ref(self.init_model_dir or self.prior_dir),
            reward_model=None if self.reward_model_dir is None else str(Path(self.reward_model_dir).resolve()),
            ratings=list(fitted.rating_ids) if hasattr(fitted, "rating_ids") else None,
            git_commit=git_commit(),
            created=now_iso(),
            metrics={k: float(v) for k, v in final_eval.items() if isinstance(v, (int, float))},
            command=command_line(),
            extra=extra,
        )
        return save_model(tuned, self.out, provenance)


class _stop_on_ctrl_c:  # noqa: N801 - used as a context manager
    """The first Ctrl-C asks ``book`` to stop at the next env step (the run then keeps a
    checkpoint of its last update); a second one interrupts at once."""

    def __init__(self, book: RunBookkeeping):
        self.book, self.previous = book, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.book.stop_requested:
            raise KeyboardInterrupt
        self.book.stop_requested = True

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def jsonable(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with numpy scalars and arrays made plain (NaN kept, unlike ``runtime.json_safe``)."""
    return {k: v.item() if isinstance(v, (np.floating, np.integer)) else v.tolist() if isinstance(v, np.ndarray)
            else v for k, v in d.items()}


def truncate_jsonl(path: Path, timesteps: int) -> None:
    """Keep the lines of ``path`` up to ``timesteps`` (a torn last line is dropped)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("timesteps", 0) <= timesteps:
            keep.append(line)
    path.write_text("".join(line + "\n" for line in keep))


def tune(
    config: TuneConfig,
    out: str | Path,
    prior_dir: str | Path | None = None,
    *,
    reward_model: Any = None,
    reward_model_dir: str | Path | None = None,
    init_model: str | Path | None = None,
    device: str = "auto",
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    stop_after_checkpoints: int | None = None,
) -> Path | None:
    """Tune ``prior_dir`` (default: the shipped prior) into ``out``; see ``TuneRun``."""
    run = TuneRun(config, out, prior_dir, reward_model=reward_model, reward_model_dir=reward_model_dir,
                  init_model=init_model, device=device, resume=resume, force=force)
    return run.train(progress=progress, stop_after_checkpoints=stop_after_checkpoints)
