"""PPO fine-tuning of a melody prior: ``TuneRun`` and ``tune``.

Reads in the order a run goes: rewards (theory, end-of-melody terms; the reward model is
handed in ready to score) -> batched env (``envs.BatchedMelodyVecEnv``: one frozen-prior
forward per step) -> the policy built exactly from the prior
(``rlmusic.tuning.policy.PriorPolicy``) -> RecurrentPPO (``rlmusic.tuning.ppo.MelodyPPO``:
minibatches of whole melodies) with the KL callback ->
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
last one, and extends a finished run when ``timesteps`` grew, keeping the finished model
in ``previous/``), ``critic.pt`` (the style critic). Every file is written crash-safe
(``rlmusic.tuning.checkpoints``).

A config with ``[targets]`` trains to their projection instead (``rlmusic.tuning.target_training``):
beta fixed at 1, ``lambda . phi(x)`` paid at the end of each melody, lambda refitted after each
rollout; the plan goes into ``tune_config.json`` and the provenance, lambda into checkpoints.
``method = "dpg"`` trains to it by distributional policy gradient instead
(``rlmusic.tuning.dpg_run.DPGRun``; ``tune`` dispatches).
"""

from __future__ import annotations

import math
import warnings
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import LinearSchedule

from envs.melody import BatchedMelodyVecEnv
from envs.rewards import theory_config
from rlmusic.environment import environment
from rlmusic.evaluation.table import evaluate_tokens
from rlmusic.models.checkpoint import (
    Provenance,
    default_prior_dir,
    load_model,
    model_ref,
    read_model_meta,
    save_model,
)
from rlmusic.models.lstm import MelodyLSTM
from rlmusic.runtime import command_line, git_commit, now_iso, resolve_device, seed_everything
from rlmusic.tuning.callbacks import KLControl, KLController, RunBookkeeping, stop_on_ctrl_c
from rlmusic.tuning.checkpoints import (
    append_eval,
    check_run_folder,
    clean_run_folder,
    keep_previous_model,
    latest_checkpoint,
    save_checkpoint,
    truncate_evals,
    write_run_config,
)
from rlmusic.tuning.config import TuneConfig
from rlmusic.tuning.critic import CriticRefresh, style_critic
from rlmusic.tuning.curves import CurvesWriter, read_csv
from rlmusic.tuning.policy import PriorPolicy
from rlmusic.tuning.ppo import MelodyPPO
from rlmusic.tuning.rewards import build_rewards, novelty_corpus
from rlmusic.tuning.target_training import (
    TargetControl,
    TargetReward,
    start_targets,
    with_targets,
)
from rlmusic.tuning.targets import TargetPlan

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
    reward_model: Any = None,
) -> dict[str, Any]:
    """Sample ``n`` melodies and score them: the evaluation table (``evaluate_tokens``, with
    the exact KL to the prior per step and per note), the mean theory reward per step, and
    with a reward model its mean score (in its training melodies' standard deviations) and
    how far the melodies lie from the rated ones (median ``ood``)."""
    tokens, log_probs = model.sample(n, steps, generator=torch.Generator().manual_seed(seed), return_log_probs=True)
    tokens = tokens.numpy()  # (n, T)
    result = evaluate_tokens(tokens, model.vocab, prior=prior, model=model, key=key, corpus=corpus,
                             model_log_probs=log_probs)
    if reward_model is not None and hasattr(reward_model, "score"):
        result["reward_model_score"] = float(np.mean(reward_model.score(tokens)))
        if hasattr(reward_model, "ood"):
            result["reward_model_ood"] = float(np.nanmedian(reward_model.ood(tokens)))
    if theory_reward is not None:
        per_step = [theory_reward(tokens[:, :t], tokens[:, t]) for t in range(steps)]
        result["theory_reward_per_step"] = float(np.mean(per_step))
    return result


# --------------------------------------------------------------------------- the run


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
        monitor: called after every PPO update with ``{"timesteps", "total", "metrics"}``
            (e.g. a job's recorder); returning True stops the run cleanly at the next env
            step, with a checkpoint, as Ctrl-C does.
        progress: a progress bar while a targets run samples its plan.

    A config with ``[targets]`` trains to their projection (``rlmusic.tuning.target_training``):
    the plan is fitted and printed here, before anything is written, and ``target_reward``
    pays ``lambda . phi`` at the end of each melody (``plan``: the plan; both None otherwise).
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
        monitor: Any = None,
        progress: bool = True,
    ):
        self.out, self.monitor = Path(out), monitor
        self.prior_dir = Path(prior_dir) if prior_dir is not None else default_prior_dir()
        self.reward_model, self.reward_model_dir = reward_model, reward_model_dir
        self.init_model_dir = Path(init_model) if init_model is not None else None
        self.resume, self.device = resume, resolve_device(device)
        if config.method != "ppo":
            raise ValueError(f"TuneRun trains with PPO, and the config says method = {config.method!r}: "
                             "rlmusic.tuning.dpg_run.DPGRun runs it (rlmusic tune --method dpg)")
        stored = check_run_folder(self.out, config, resume, force)
        if stored is not None:
            self.prior_dir = Path(stored["prior"])
            self.reward_model_dir = stored.get("reward_model")
            self.init_model_dir = Path(stored["init_model"]) if stored.get("init_model") else None
            if self.reward_model_dir is not None and reward_model is None:
                raise ValueError(f"the run in {self.out} was tuned against the reward model "
                                 f"{self.reward_model_dir}; pass it to resume")
        if reward_model is not None and not hasattr(reward_model, "score"):
            raise ValueError(f"reward_model must have a score(tokens) method, got {type(reward_model).__name__}")
        config.validate()
        self.config = config
        done = (latest_checkpoint(self.out) or (None, {"num_timesteps": 0}))[1]["num_timesteps"] if resume else 0
        if done >= config.total_timesteps:
            raise ValueError(f"the run in {self.out} already finished at {done} env steps; "
                             f"pass --timesteps above {done} to extend it")
        read_model_meta(self.prior_dir)  # a clear error when it is not a model directory
        self.prior = load_model(self.prior_dir, device=self.device, vocab=config.vocab)
        if config.steps > self.prior.config.max_steps and not force:
            raise ValueError(
                f"steps={config.steps} exceeds the prior's max_steps={self.prior.config.max_steps} "
                f"(it never saw melodies that long); pass --force to tune anyway"
            )
        self.corpus = novelty_corpus(config, self.prior_dir)
        self.rewards = build_rewards(config, self.prior.vocab, self.corpus)
        self.theory_reward = self.rewards.theory
        self.critic, self.rewards.final = style_critic(config, self, self.rewards.final)  # style_weight 0: None
        self.target_reward: TargetReward | None = None
        self.plan: TargetPlan | None = None
        if config.targets:  # plan, print, and pay lambda . phi at the end of each melody
            if reward_model is not None:
                warnings.warn("a run with [targets] pays lambda . phi and the KL; the reward model's score "
                              "(human_weight) is added on top, so its optimum is no longer the projection",
                              stacklevel=2)
            self.target_reward = start_targets(self, progress)
            self.plan = self.target_reward.plan
            if config.targets_shaping:  # the same return, paid at the step that earns it
                self.rewards.progress = with_targets(self.rewards.progress,
                                                     self.target_reward.progress(config.steps))
            else:
                self.rewards.final = with_targets(self.rewards.final, self.target_reward)
        self.extra_callbacks: list[Any] = []
        self.interrupted = False
        self.last_eval: dict[str, Any] = {}

    # -- building blocks
    def make_env(self) -> BatchedMelodyVecEnv:
        c = self.config
        return BatchedMelodyVecEnv(
            self.prior, n_envs=c.n_envs, steps=c.steps, theory_reward=self.rewards.theory,
            final_reward=self.rewards.final, progress_reward=self.rewards.progress, reward_model=self.reward_model,
            theory_weight=c.effective_theory_weight, human_weight=c.human_weight, beta=c.effective_beta,
            device=self.device,
        )

    def make_model(self, env: BatchedMelodyVecEnv) -> MelodyPPO:
        c = self.config
        model = MelodyPPO(
            PriorPolicy, env, learning_rate=LinearSchedule(c.learning_rate, 0.0, 1.0) if c.lr_decay else c.learning_rate,
            n_steps=c.rollout_steps, batch_size=c.batch_size,
            n_epochs=c.n_epochs, minibatches=c.minibatches, gamma=c.gamma, gae_lambda=c.gae_lambda, clip_range=c.clip_range,
            ent_coef=c.ent_coef, vf_coef=c.vf_coef, max_grad_norm=c.max_grad_norm,
            policy_kwargs={"prior_config": asdict(self.prior.config)}, seed=c.seed, device=self.device, verbose=0,
        )
        start = self.prior if self.init_model_dir is None else load_model(
            self.init_model_dir, device=self.device, vocab=c.vocab)
        model.policy.load_prior(start)
        return model

    def checkpoint(self, timesteps: int | None = None) -> Path:
        """SB3 .zip (policy, optimizer) + .json (timesteps, beta), crash-safe; keeps the last 2.
        ``timesteps``: the env steps the saved weights were trained on (default: all so far)."""
        n = int(self.model.num_timesteps if timesteps is None else timesteps)
        meta = {"num_timesteps": n, "beta": self.env.beta, "total_timesteps": self.config.total_timesteps}
        if self.target_reward is not None:  # lambda as refitted so far: a resumed run goes on from it
            meta["lambda"] = self.target_reward.lam.tolist()
            meta["lambda_integral"] = self.target_reward.integral.tolist()  # the PID's state (kp, kd)
            meta["lambda_history"] = [h.tolist() for h in self.target_reward.history]
        return save_checkpoint(self.out, self.model, meta)

    def evaluate(self, timesteps: int) -> dict[str, Any]:
        model = self.model.policy.to_melody_lstm().to(self.device)
        c = self.config
        fitted = getattr(self.reward_model, "model", self.reward_model)  # the raw model, not the guard's state
        result = evaluate_policy_model(model, self.prior, c.steps, c.eval_melodies, c.seed + 12345,
                                       self.theory_reward, key=theory_config(c.theory).key, corpus=self.corpus,
                                       reward_model=fitted)
        result = {"timesteps": timesteps, "beta": self.env.beta, **result}
        if self.plan is not None:  # the floor beside the model's exact KL
            result["kl_floor_per_step"] = self.plan.kl_floor_per_step
        append_eval(self.out, result)
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
        clean_run_folder(self.out)  # temporary files of a write a crash interrupted
        keep_previous_model(self.out)  # a finished model here is about to be replaced: keep it
        seed_everything(c.seed)
        self.env = self.make_env()
        found = latest_checkpoint(self.out) if self.resume else None
        rows: list[dict[str, Any]] = []
        if found is None:
            for name in ("eval.jsonl", "metrics.csv"):
                (self.out / name).unlink(missing_ok=True)
            self.model = self.make_model(self.env)
        else:
            zip_path, meta = found
            done = int(meta["num_timesteps"])
            self.model = load_checkpoint(zip_path, self.env, self.device)
            self.model.num_timesteps = done
            self.env.beta = meta["beta"]
            if self.target_reward is not None and meta.get("lambda") is not None:
                self.target_reward.lam = np.asarray(meta["lambda"], dtype=np.float64)
                self.target_reward.integral = np.asarray(meta.get("lambda_integral", meta["lambda"]), dtype=np.float64)
                self.target_reward.history = [np.asarray(h, dtype=np.float64) for h in meta.get("lambda_history", [])]
            self.model._last_obs = self.env.reset()  # checkpoints fall between whole melodies
            self.model._last_episode_starts = np.ones(c.n_envs, dtype=bool)
            rows = [r for r in read_csv(self.out / "metrics.csv") if r.get("timesteps", 0) <= done]
            truncate_evals(self.out, done)
        write_run_config(self.out, {
            "config": asdict(c), "prior": str(self.prior_dir),
            "reward_model": None if self.reward_model_dir is None else str(self.reward_model_dir),
            "init_model": None if self.init_model_dir is None else str(self.init_model_dir),
            **({"targets_plan": self.plan.to_dict()} if self.plan is not None else {}),
        })
        self.model.set_logger(Logger(str(self.out), [CurvesWriter(self.out, rows)]))
        self.kl_callback = KLControl(self.env, KLController(c.target_kl_per_step, c.kl_horizon))
        self.book = RunBookkeeping(self, c.total_timesteps, progress, stop_after_checkpoints)
        self.extra_callbacks = list(self.reward_model.tune_callbacks(self)) \
            if hasattr(self.reward_model, "tune_callbacks") else []
        self.extra_callbacks += [CriticRefresh(self)] if self.critic is not None else []  # the style critic
        self.target_control = None if self.target_reward is None else TargetControl(
            self.target_reward, self.kl_callback, total=c.total_timesteps if c.targets_lr_decay else None)
        remaining = c.total_timesteps - self.model.num_timesteps
        with stop_on_ctrl_c(self.book):
            callbacks = [self.kl_callback, *([self.target_control] if self.target_control else []), self.book,
                         *self.extra_callbacks]  # the targets' logs after the KL's: they read it
            self.model.learn(remaining, callback=callbacks, reset_num_timesteps=False)
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
        if self.target_reward is not None:  # what it trained to: the plan (lambda, the floor), lambda at the end
            extra["targets"] = {"method": "ppo", "plan": self.plan.to_dict(),
                                "lambda": dict(zip(self.target_reward.keys, self.target_reward.lam.tolist()))}
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
            environment=environment(),
            created=now_iso(),
            metrics={k: float(v) for k, v in final_eval.items() if isinstance(v, (int, float))},
            command=command_line(),
            extra=extra,
        )
        return save_model(tuned, self.out, provenance)


def load_checkpoint(zip_path: Path, env: BatchedMelodyVecEnv, device) -> MelodyPPO:
    """The SB3 model of a checkpoint; a damaged file is one clear error naming it."""
    try:
        return MelodyPPO.load(str(zip_path), env=env, device=device)
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError) as exc:
        raise ValueError(f"checkpoint {zip_path} is damaged ({type(exc).__name__}: {exc}); "
                         "delete it and its .json to resume from the one before") from None


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
    monitor: Any = None,
) -> Path | None:
    """Tune ``prior_dir`` (default: the shipped prior) into ``out``; see ``TuneRun`` (a config
    with ``method = "dpg"``: ``rlmusic.tuning.dpg_run.DPGRun``)."""
    if config.method == "dpg":
        from rlmusic.tuning.dpg_run import DPGRun

        if reward_model is not None or init_model is not None:
            raise ValueError("method dpg trains the prior to the projection of the [targets] alone: no reward model, "
                             "no init model (use method ppo)")
        dpg = DPGRun(config, out, prior_dir, device=device, resume=resume, force=force, monitor=monitor,
                     progress=progress)
        return dpg.train(progress=progress, stop_after_checkpoints=stop_after_checkpoints)
    run = TuneRun(config, out, prior_dir, reward_model=reward_model, reward_model_dir=reward_model_dir,
                  init_model=init_model, device=device, resume=resume, force=force, monitor=monitor,
                  progress=progress)
    return run.train(progress=progress, stop_after_checkpoints=stop_after_checkpoints)
