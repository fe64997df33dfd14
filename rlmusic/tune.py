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

Where things live: ``rlmusic.tune_config`` holds ``TuneConfig`` (loading, checks);
``rlmusic.tune_callbacks`` holds ``KLController``, the SB3 callbacks (KL control,
progress/evaluation/checkpoints), the ``metrics.csv``/TensorBoard writer and
``plot_curves``. This module keeps the rewards, evaluation, ``TuneRun``, ``tune()`` and
the CLI, and re-exports the other two modules' names (``from rlmusic.tune import ...``).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict
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
from rlmusic.tune_callbacks import (
    KLController,
    _curves_writer,
    _CurvesWriter,
    _make_callbacks,
    plot_curves,
    read_csv,
    write_csv,
)
from rlmusic.tune_config import CONFIG_NAME, WEIGHT_FIELDS, TuneConfig

__all__ = [
    # re-exported from rlmusic.tune_config
    "CONFIG_NAME", "WEIGHT_FIELDS", "TuneConfig",
    # re-exported from rlmusic.tune_callbacks
    "KLController", "_make_callbacks", "_curves_writer", "_CurvesWriter", "write_csv", "read_csv", "plot_curves",
    # defined here
    "CHECKPOINTS", "build_rewards", "load_reward_model", "kl_per_note", "evaluate_model", "TuneRun", "tune",
    "add_arguments", "config_from_args", "main",
]

CHECKPOINTS = "checkpoints"


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

