"""KL control and the bookkeeping of a tuning run, as Stable-Baselines3 callbacks.

``KLController`` (fixed or adaptive beta) -> ``KLControl`` (subtracts ``beta * log pi(a_t)``
from the rewards in SB3's ``collect_rollouts`` after ``env.step`` and before
``rollout_buffer.add``; see ``rlmusic.tuning.run`` for the reward it makes; logs every
reward term and the KL per step) -> ``RunBookkeeping`` (progress bar, periodic
evaluation, checkpoints, a clean stop on request; ``stop_on_ctrl_c`` asks it on Ctrl-C).
"""

from __future__ import annotations

import math
import signal
import threading
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback

from rlmusic.music.representation import Vocabulary


class KLController:
    """Fixed or adaptive beta (Ziegler et al. 2019; TRL's AdaptiveKLController)."""

    def __init__(self, target: float | None, horizon: int):
        self.target, self.horizon = target, horizon

    def update(self, beta: float, kl: float, n_episodes: int) -> float:
        if self.target is None:
            return beta
        error = float(np.clip(kl / self.target - 1.0, -0.2, 0.2))
        return beta * (1.0 + error * n_episodes / self.horizon)


class KLControl(BaseCallback):
    """Subtracts ``beta * log pi(a_t)`` from the rewards before they enter the rollout
    buffer; logs every reward term per melody and its share of the return, the sampled KL
    per 16th step and per note onset; updates beta."""

    def __init__(self, env, controller: KLController):
        super().__init__()
        self.env, self.controller = env, controller
        self.last: dict[str, float] = {}

    def _on_rollout_start(self) -> None:
        self._kl_sum, self._count, self._episodes, self._onsets = 0.0, 0, 0, 0
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
        self._onsets += int(np.sum(np.asarray(self.locals["actions"]) >= Vocabulary.FIRST_PITCH_TOKEN))
        for name, value in self.env.batch.last_terms.items():
            self._terms[name] = self._terms.get(name, 0.0) + float(np.sum(value))
        if np.all(self.locals["dones"]):
            self._episodes += rewards.size
        return True

    def _on_rollout_end(self) -> None:
        if not self._count:
            return
        melodies = max(1, self._count / self.env.steps)
        kl = self._kl_sum / self._count  # sampled estimate of KL(pi || prior) per 16th step
        beta = self.env.beta
        rec = self.logger.record
        terms = {("log_prior_term" if k == "log_prior" else k): v / melodies for k, v in self._terms.items()}
        terms["kl_penalty"] = self._penalty / melodies  # -beta * log pi, added by this callback
        scale = sum(abs(v) for v in terms.values()) or 1.0
        for name, value in sorted(terms.items()):
            rec(f"reward/{name}", value)  # per melody
            rec(f"reward_share/{name}", value / scale)  # signed share of all terms' magnitude
        rec("reward/total", sum(terms.values()))  # what PPO maximises, per melody
        rec("kl/per_step", kl)
        rec("kl/per_note", self._kl_sum / self._onsets if self._onsets else math.nan)
        rec("kl/beta", beta)
        self.last = {"kl": kl, "beta": beta, **terms}
        self.env.beta = self.controller.update(beta, kl, self._episodes)


class RunBookkeeping(BaseCallback):
    """Progress bar, periodic evaluation and checkpoints (after each PPO update), the run's
    ``monitor`` (if any) told where it stands after each update, and a clean stop: when
    ``stop_requested`` is set (Ctrl-C, or the monitor returned True) training ends at the
    next env step, and ``trained_timesteps`` says how many env steps the weights were
    trained on."""

    def __init__(self, run: Any, total: int, progress: bool, stop_after_checkpoints: int | None):
        super().__init__()
        self.run, self.total, self.progress = run, total, progress  # run: a TuneRun
        self.stop_after = stop_after_checkpoints
        self.saved = 0
        self.stopped = self.interrupted = self.stop_requested = False
        self.trained_timesteps = 0

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
        n = self.trained_timesteps = self.num_timesteps
        if n >= self.next_eval:
            self.run.evaluate(n)
            self.next_eval = self._next(self.run.config.eval_every)
        if n >= self.next_ckpt and n < self.total:
            self.run.checkpoint()
            self.saved += 1
            self.next_ckpt = self._next(self.run.config.checkpoint_every)
            if self.stop_after is not None and self.saved >= self.stop_after:
                self.stopped = True
        monitor = getattr(self.run, "monitor", None)
        if monitor is not None and n > 0 and monitor(self.status(n)):
            self.stop_requested = True

    def status(self, timesteps: int) -> dict[str, Any]:
        """Where the run stands: env steps trained, the total, and the last rollout's
        metrics (``kl/per_step``, ``kl/beta``, ``reward/<term>``; in a targets run also
        ``target/<KEY>``, ``lambda/<KEY>``, ``kl_floor_per_step``) with the last evaluation's
        numbers (``eval/<key>``)."""
        last = self.run.kl_callback.last
        metrics = {("kl/per_step" if k == "kl" else "kl/beta" if k == "beta" else f"reward/{k}"): float(v)
                   for k, v in last.items()}
        targets = getattr(self.run, "target_control", None)  # a targets run: target/<KEY>, lambda/<KEY>, floor
        metrics.update(targets.last if targets is not None else {})
        metrics.update({f"eval/{k}": float(v) for k, v in self.run.last_eval.items()
                        if isinstance(v, (int, float)) and math.isfinite(v) and k not in ("n", "steps", "timesteps")})
        return {"timesteps": int(timesteps), "total": int(self.total), "metrics": metrics}

    def _on_step(self) -> bool:
        if self.stop_requested and not self.stopped:
            self.stopped = self.interrupted = True
        self.bar.update(self.training_env.num_envs)
        if kl := self.run.kl_callback.last:
            self.bar.set_postfix(kl=f"{kl['kl']:.3f}", beta=f"{kl['beta']:.3g}", refresh=False)
        return not self.stopped

    def _on_training_end(self) -> None:
        self.bar.close()


class stop_on_ctrl_c:  # noqa: N801 - used as a context manager
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
