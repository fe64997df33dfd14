"""Melody environments: one episode is one melody of ``steps`` tokens.

- action: the next token (``Discrete(vocab.size)``);
- observation: the previous token (``Discrete(vocab.input_size)``, ``BOS`` after reset).
  The recurrent policy carries the rest of the history in its LSTM state.
- reward at step t: ``theory_weight * theory_t + beta * log p_prior(a_t | a_<t)``, the
  growth of each progress term (``progress_reward``: a score of the melody so far, paid
  as it grows, so a melody earns its final score in total but each step gets the credit
  it caused: potential-based shaping), and at the last step the end-of-melody terms
  (originality, diversity) and ``human_weight * reward_model.score(melody)``. Each term
  is reported separately in ``info["reward_terms"]`` (their sum is the reward).

``MelodyBatch`` holds B melodies stepped in lockstep with the frozen prior: ONE prior
forward per step for all of them, and the theory reward batched too. ``MelodyEnv`` (a
Gymnasium env, B=1) and ``BatchedMelodyVecEnv`` (an SB3 ``VecEnv``, B=n_envs) are thin
shells around it. ``beta`` lives in the batch, so the env's ``log_prior`` term and the
KL callback of ``rlmusic.tune`` (which subtracts ``beta * log pi(a_t)``) use one value.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from envs.rewards import FinalReward, ProgressReward, RewardModel, TheoryReward, no_final, no_theory
from rlmusic.models.checkpoint import load_model
from rlmusic.models.lstm import MelodyLSTM

TERMS = ("theory", "log_prior")  # always present; final terms and "human" join at the end


def _as_prior(prior: MelodyLSTM | str | Path | None, device: str | torch.device) -> MelodyLSTM:
    model = prior if isinstance(prior, MelodyLSTM) else load_model(prior, device=device)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class MelodyBatch:
    """B melodies of ``steps`` tokens, stepped together with the frozen prior."""

    def __init__(
        self,
        prior: MelodyLSTM | str | Path | None,
        n: int = 1,
        steps: int = 32,
        theory_reward: TheoryReward | None = None,
        final_reward: FinalReward | None = None,
        reward_model: RewardModel | None = None,
        theory_weight: float = 1.0,
        human_weight: float = 1.0,
        beta: float = 0.1,
        device: str | torch.device = "cpu",
        progress_reward: ProgressReward | None = None,
    ):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        self.prior = _as_prior(prior, device)
        self.vocab = self.prior.vocab
        self.n, self.steps = n, steps
        self.theory_reward = theory_reward or no_theory
        self.final_reward = final_reward or no_final
        self.progress_reward = progress_reward
        self.reward_model = reward_model
        self.theory_weight, self.human_weight = float(theory_weight), float(human_weight)
        self.beta = float(beta)
        self.device = self.prior.device
        with torch.inference_mode():  # the prior after BOS: the same for every melody
            bos = torch.full((n,), self.vocab.BOS, dtype=torch.long, device=self.device)
            logits, state = self.prior.step(bos)
        self._bos_log_probs = torch.log_softmax(logits.float(), dim=-1)  # (n, V)
        self._bos_state = state
        self.tokens = np.zeros((n, steps), dtype=np.int64)  # (n, T) melodies so far
        self.last_terms: dict[str, np.ndarray] = {}
        self.last_log_prior = np.zeros(n)  # raw log p_prior(a_t) of the last step
        self.reset()

    def reset(self) -> np.ndarray:
        """Start n new melodies -> observations (n,) all BOS."""
        self.t = 0
        self.tokens[:] = self.vocab.REST
        self._log_probs = self._bos_log_probs
        self._state = self._bos_state
        self._returns = np.zeros(self.n)
        self._potentials: dict[str, np.ndarray] = {}  # progress terms of the melodies so far
        return np.full(self.n, self.vocab.BOS, dtype=np.int64)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
        """actions (n,) -> observations (n,) (the actions), rewards (n,), done.

        After ``done`` the caller reads ``tokens`` and calls ``reset``.
        """
        actions = np.asarray(actions, dtype=np.int64).reshape(self.n)
        if actions.min() < 0 or actions.max() >= self.vocab.size:
            raise ValueError(f"actions must be tokens in 0..{self.vocab.size - 1}, got {actions}")
        if self.t >= self.steps:
            raise RuntimeError("step() after the melody ended; call reset()")
        t = self.t
        a = torch.as_tensor(actions, device=self.device)
        log_prior = self._log_probs.gather(1, a[:, None])[:, 0].cpu().numpy().astype(np.float64)
        theory = np.asarray(self.theory_reward(self.tokens[:, :t], actions), dtype=np.float64)
        self.tokens[:, t] = actions
        self.t = t + 1
        done = self.t == self.steps
        if not done:  # one forward of the frozen prior for all n melodies
            with torch.inference_mode():
                logits, self._state = self.prior.step(a, self._state)
            self._log_probs = torch.log_softmax(logits.float(), dim=-1)
        terms = {"theory": self.theory_weight * theory, "log_prior": self.beta * log_prior}
        if self.progress_reward is not None:  # pay each progress term as it grows
            for name, value in self.progress_reward(self.tokens[:, : self.t]).items():
                value = np.asarray(value, dtype=np.float64).reshape(self.n)
                terms[name] = value - self._potentials.get(name, 0.0)
                self._potentials[name] = value
        if done:
            melodies = self.tokens.copy()
            for name, value in self.final_reward(melodies).items():
                terms[name] = np.asarray(value, dtype=np.float64).reshape(self.n)
            if self.reward_model is not None:
                human = np.asarray(self.reward_model.score(melodies), dtype=np.float64).reshape(self.n)
                terms["human"] = self.human_weight * human
        rewards = np.sum(list(terms.values()), axis=0)
        self._returns += rewards
        self.last_terms, self.last_log_prior = terms, log_prior
        return actions.copy(), rewards.astype(np.float32), done


class MelodyEnv(gym.Env):
    """One melody per episode (Gymnasium API). Registered as ``rlmusic/Melody-v0``.

    Keyword arguments are those of ``MelodyBatch`` (``prior`` None = the shipped prior).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 8}

    def __init__(self, prior: MelodyLSTM | str | Path | None = None, render_mode: str | None = None, **kwargs: Any):
        self.batch = MelodyBatch(prior, n=1, **kwargs)
        vocab = self.batch.vocab
        self.action_space = spaces.Discrete(vocab.size)
        self.observation_space = spaces.Discrete(vocab.input_size)
        self.render_mode = render_mode

    @property
    def beta(self) -> float:
        return self.batch.beta

    @beta.setter
    def beta(self, value: float) -> None:
        self.batch.beta = float(value)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs = self.batch.reset()
        return np.int64(obs[0]), {}

    def step(self, action):
        obs, rewards, done = self.batch.step(np.asarray([action]))
        info: dict[str, Any] = {
            "reward_terms": {k: float(v[0]) for k, v in self.batch.last_terms.items()},
            "log_prior": float(self.batch.last_log_prior[0]),
        }
        if done:
            info["melody"] = self.batch.tokens[0].copy()
        return np.int64(obs[0]), float(rewards[0]), done, False, info

    def render(self):
        if self.render_mode == "ansi":
            vocab = self.batch.vocab
            return " ".join(vocab.name(int(x)) for x in self.batch.tokens[0, : self.batch.t])
        return None


class BatchedMelodyVecEnv(VecEnv):
    """``n_envs`` melodies in lockstep (SB3 ``VecEnv``): one prior forward per step.

    All episodes have length ``steps``; at the last step every env ends together and
    auto-resets (``infos[i]["terminal_observation"]``, ``infos[i]["episode"]`` with
    the return for SB3's ``rollout/ep_rew_mean``, ``infos[i]["melody"]``).
    """

    def __init__(self, prior: MelodyLSTM | str | Path | None = None, n_envs: int = 16, **kwargs: Any):
        self.batch = MelodyBatch(prior, n=n_envs, **kwargs)
        vocab = self.batch.vocab
        self.render_mode = None
        super().__init__(n_envs, spaces.Discrete(vocab.input_size), spaces.Discrete(vocab.size))
        self._actions: np.ndarray | None = None
        self._t_start = time.time()

    @property
    def beta(self) -> float:
        return self.batch.beta

    @beta.setter
    def beta(self, value: float) -> None:
        if value < 0:
            raise ValueError(f"beta must be >= 0, got {value}")
        self.batch.beta = float(value)

    @property
    def steps(self) -> int:
        return self.batch.steps

    def reset(self):
        self._reset_seeds()
        self._reset_options()
        return self.batch.reset()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        assert self._actions is not None, "step_wait() without step_async()"
        obs, rewards, done = self.batch.step(self._actions)
        self._actions = None
        terms = self.batch.last_terms
        infos: list[dict[str, Any]] = [
            {"reward_terms": {k: float(v[i]) for k, v in terms.items()}, "log_prior": float(self.batch.last_log_prior[i])}
            for i in range(self.num_envs)
        ]
        dones = np.full(self.num_envs, done)
        if done:
            returns = self.batch._returns.copy()
            melodies = self.batch.tokens.copy()
            elapsed = round(time.time() - self._t_start, 6)
            for i, info in enumerate(infos):
                info["terminal_observation"] = obs[i]
                info["melody"] = melodies[i]
                info["episode"] = {"r": float(returns[i]), "l": self.steps, "t": elapsed}
            obs = self.batch.reset()
        return obs, rewards, dones, infos

    def close(self) -> None:
        pass

    # -- the VecEnv attribute protocol: one shared object stands for every env index
    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        value = getattr(self, attr_name) if hasattr(self, attr_name) else getattr(self.batch, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        if list(self._get_indices(indices)) != list(range(self.num_envs)):
            raise ValueError("BatchedMelodyVecEnv shares its attributes between envs: set them for all")
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        result = getattr(self.batch, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        return [None for _ in range(self.num_envs)]  # the env itself draws nothing
