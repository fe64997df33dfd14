"""A dpg run (``rlmusic tune --method dpg``): ``DPGRun`` plans the targets, runs the
distributional policy gradient of ``rlmusic.tuning.dpg`` and writes the run folder as a PPO
run does (``rlmusic.tuning.run``).

In order: the plan (``targets_plan_n`` prior melodies, seeded by the config's ``seed``, fitted
and printed as ``rlmusic targets plan`` prints it; its samples start the window Z and the
refits of lambda rest on) -> the loop (``timesteps`` env steps = melodies sampled x steps, in
gradient steps of ``dpg_batch`` melodies; a proposal check every ``dpg_proposal_every`` steps)
-> per step the curves (``metrics.csv``, TensorBoard, ``rlmusic.tuning.curves``): ``target/<KEY>``
and ``kl_per_step`` (the policy's, importance-weighted from the proposal's batch; exact KL per
step along each melody), ``lambda/<KEY>``, ``kl_floor_per_step`` (of the current fit),
``rollout/diversity`` (of the proposal's batch), ``dpg/ess``, ``dpg/kl_p_pi``, ``dpg/kl_p_q``,
``dpg/proposal_updates``, ``dpg/refits``, ``dpg/lambda_ess``, ``dpg/log_z``, ``losses/loss``
-> evaluations (``eval.jsonl``: at the start, every ``eval_every`` env steps and at the end, on
``eval_melodies`` of the policy's own samples, with the exact KL to the prior beside the floor)
-> checkpoints (``checkpoints/step_N.pt``: policy, proposal, optimizer, lambda, the window,
the sampler's state; ``resume=True`` goes on from the last) -> the tuned model (``config.json``
+ ``model.safetensors``; provenance ``extra.targets``: ``method = "dpg"``, the plan, lambda).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.logger import Logger

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
from rlmusic.runtime import command_line, git_commit, now_iso, resolve_device, seed_everything
from rlmusic.tuning.callbacks import stop_on_ctrl_c
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
from rlmusic.tuning.curves import CurvesWriter, read_csv
from rlmusic.tuning.dpg import DPG
from rlmusic.tuning.rewards import novelty_corpus
from rlmusic.tuning.target_training import feature_corpus, music_key, plan_keys, sample_plan
from rlmusic.tuning.targets import format_plan

SUFFIX = ".pt"  # a dpg checkpoint: torch.save of DPG.state_dict()


class _Saved:
    """What ``save_checkpoint`` writes: ``torch.save`` of a state."""

    def __init__(self, state: dict[str, Any]):
        self.state = state

    def save(self, file) -> None:
        torch.save(self.state, file)


class _Stop:
    """Set by Ctrl-C (``stop_on_ctrl_c``) or a monitor: the loop stops with a checkpoint."""

    stop_requested = False


class DPGRun:
    """One dpg run writing into ``out``; ``train()`` runs (or resumes) it. The arguments mean
    what they mean for ``rlmusic.tuning.run.TuneRun`` (no reward model, no init model: the
    policy starts as the prior and trains to the projection of the config's ``[targets]``)."""

    def __init__(self, config: TuneConfig, out: str | Path, prior_dir: str | Path | None = None, *,
                 device: str = "auto", resume: bool = False, force: bool = False, monitor: Any = None,
                 progress: bool = True):
        if config.method != "dpg":
            raise ValueError(f"DPGRun trains with method dpg, and the config says method = {config.method!r}")
        self.out, self.monitor, self.resume = Path(out), monitor, resume
        self.prior_dir = Path(prior_dir) if prior_dir is not None else default_prior_dir()
        self.device = resolve_device(device)
        stored = check_run_folder(self.out, config, resume, force)
        if stored is not None:
            self.prior_dir = Path(stored["prior"])
        config.validate()  # a dpg config without targets, or with weighted rewards, raises here
        self.config = c = config
        found = latest_checkpoint(self.out, SUFFIX) if resume else None
        done = found[1]["num_timesteps"] if found else 0
        if done >= c.total_timesteps:
            raise ValueError(f"the run in {self.out} already finished at {done} env steps; "
                             f"pass --timesteps above {done} to extend it")
        read_model_meta(self.prior_dir)  # a clear error when it is not a model directory
        self.prior = load_model(self.prior_dir, device=self.device, vocab=c.vocab)
        if c.steps > self.prior.config.max_steps and not force:
            raise ValueError(f"steps={c.steps} exceeds the prior's max_steps={self.prior.config.max_steps} "
                             "(it never saw melodies that long); pass --force to tune anyway")
        self.corpus = novelty_corpus(c, self.prior_dir)  # the evaluation's novelty
        print(f"tune: planning the targets on {c.targets_plan_n:,} melodies of {c.steps} steps sampled from the "
              f"prior (seed {c.seed})", flush=True)
        self.plan, self.plan_parts, _ = sample_plan(c, self.prior, self.prior_dir, c.targets_plan_n, seed=c.seed,
                                                    min_ess=c.targets_min_ess, progress=progress)
        print(format_plan(self.plan), flush=True)
        self.interrupted = False
        self.last_eval: dict[str, Any] = {}
        self.last: dict[str, float] = {}

    # -- building blocks
    def evaluate(self, timesteps: int) -> dict[str, Any]:
        """The policy's own ``eval_melodies`` (seeded), the evaluation table with the exact KL to
        the prior, and the current fit's floor beside it; into ``eval.jsonl`` and the curves."""
        c, model = self.config, self.dpg.tuned_model()
        tokens = model.sample(c.eval_melodies, c.steps, generator=torch.Generator().manual_seed(c.seed + 12345))
        result = evaluate_tokens(tokens.numpy(), model.vocab, prior=self.prior, model=model, key=music_key(c),
                                 corpus=self.corpus)
        result = {"timesteps": timesteps, **result, "kl_floor_per_step": self.dpg.plan.kl_floor_per_step}
        append_eval(self.out, result)
        for k, v in result.items():
            if isinstance(v, (int, float)) and math.isfinite(v) and k not in ("timesteps", "n", "steps"):
                self.logger.record(f"eval/{k}", v)
        self.last_eval = result
        return result

    def checkpoint(self, timesteps: int) -> Path:
        meta = {"num_timesteps": int(timesteps), "total_timesteps": self.config.total_timesteps, "method": "dpg",
                "lambda": self.dpg.lam.tolist()}
        return save_checkpoint(self.out, _Saved(self.dpg.state_dict()), meta, suffix=SUFFIX)

    def status(self, timesteps: int) -> dict[str, Any]:
        """Where the run stands, for a ``monitor`` (a job's recorder): the last step's numbers
        and the last evaluation's (``eval/<key>``)."""
        metrics = dict(self.last)
        metrics.update({f"eval/{k}": float(v) for k, v in self.last_eval.items()
                        if isinstance(v, (int, float)) and math.isfinite(v) and k not in ("n", "steps", "timesteps")})
        return {"timesteps": int(timesteps), "total": int(self.config.total_timesteps), "metrics": metrics}

    # -- the job
    def train(self, progress: bool = True, stop_after_checkpoints: int | None = None) -> Path | None:
        """Run to ``total_timesteps``; returns the model directory, or None when stopped early
        (Ctrl-C, a monitor, ``stop_after_checkpoints``), with a checkpoint to resume from."""
        from tqdm.auto import tqdm

        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        clean_run_folder(self.out)
        keep_previous_model(self.out)
        seed_everything(c.seed)
        self.dpg = DPG(self.prior, self.plan, self.plan_parts, c, key=music_key(c),
                       corpus=feature_corpus(plan_keys(self.plan), c, self.prior_dir, self.prior.vocab),
                       generator=torch.Generator().manual_seed(c.seed))
        found = latest_checkpoint(self.out, SUFFIX) if self.resume else None
        done, rows = 0, []
        if found is None:
            for name in ("eval.jsonl", "metrics.csv"):
                (self.out / name).unlink(missing_ok=True)
        else:
            path, meta = found
            self.dpg.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))  # our own file
            done = int(meta["num_timesteps"])
            rows = [r for r in read_csv(self.out / "metrics.csv") if r.get("timesteps", 0) <= done]
            truncate_evals(self.out, done)
        write_run_config(self.out, {"config": asdict(c), "prior": str(self.prior_dir), "reward_model": None,
                                    "init_model": None, "targets_plan": self.plan.to_dict()})
        self.logger = Logger(str(self.out), [CurvesWriter(self.out, rows)])
        per, total = c.dpg_batch * c.steps, c.total_timesteps
        next_eval = self._next(done, c.eval_every)
        next_ckpt = self._next(done, c.checkpoint_every)
        saved, stop, start = 0, _Stop(), time.monotonic()
        if done == 0:  # the prior itself: the curves' first point
            self.evaluate(0)
            self.logger.dump(0)
        with stop_on_ctrl_c(stop), tqdm(total=total, initial=done, unit="step", desc="tune dpg",
                                        disable=not progress, dynamic_ncols=True) as bar:
            while done < total:
                if stop.stop_requested:
                    self.interrupted = True
                    self.checkpoint(done)
                    return None
                numbers = self.dpg.step()
                done += per
                if self.dpg.steps_done % c.dpg_proposal_every == 0:
                    numbers.update(self.dpg.check())
                numbers["time/minutes"] = (time.monotonic() - start) / 60
                self.last = {k: v for k, v in numbers.items() if not k.startswith("train/")}
                for k, v in numbers.items():
                    self.logger.record(k, v)
                if done >= next_eval or done >= total:
                    self.evaluate(done)
                    next_eval = self._next(done, c.eval_every)
                self.logger.dump(done)
                bar.update(per)
                bar.set_postfix(kl=f"{numbers['kl_per_step']:.3f}", ess=f"{numbers['dpg/ess']:.0f}", refresh=False)
                if done >= next_ckpt and done < total:
                    self.checkpoint(done)
                    saved += 1
                    next_ckpt = self._next(done, c.checkpoint_every)
                    if stop_after_checkpoints is not None and saved >= stop_after_checkpoints:
                        return None
                if self.monitor is not None and done < total and self.monitor(self.status(done)):
                    stop.stop_requested = True
        self.checkpoint(total)  # the finished state: --resume with more timesteps extends from here
        return self.save(self.last_eval, total)

    @staticmethod
    def _next(done: int, every: int) -> float:
        return math.inf if not every else (done // every + 1) * every

    def save(self, final_eval: dict[str, Any], timesteps: int) -> Path:
        """The tuned model with its provenance: the config, the plan it started from, lambda at
        the end and the fit it rests on (a refit's, else the plan's), the proposal updates."""
        d = self.dpg
        extra: dict[str, Any] = {"tune_config": asdict(self.config), "timesteps": int(timesteps)}
        extra["targets"] = {"method": "dpg", "plan": self.plan.to_dict(),
                            "lambda": dict(zip(plan_keys(self.plan), d.lam.tolist(), strict=True)),
                            "fit": d.plan.to_dict(), "refits": d.refits, "proposal_updates": d.proposal_updates,
                            "gradient_steps": d.steps_done}
        provenance = Provenance(
            kind="tuned", corpus=self.corpus, parent_model=model_ref(self.prior_dir), git_commit=git_commit(),
            environment=environment(), created=now_iso(), command=command_line(), extra=extra,
            metrics={k: float(v) for k, v in final_eval.items() if isinstance(v, (int, float))},
        )
        return save_model(d.tuned_model().cpu(), self.out, provenance)
