"""sb3-contrib's RecurrentPPO with minibatches of whole melodies: ``MelodyPPO``.

sb3-contrib's ``RecurrentRolloutBuffer.get`` cuts a rollout into minibatches of
``batch_size`` consecutive env steps after one random split of the flattened buffer, and
pads every sequence of a minibatch to its longest. With melodies of T steps and a split
that rarely falls on a melody's start, a minibatch of 512 steps holds parts of
512/T + 1 melodies, each padded to T: at T = 128, 5 sequences of 128 (640 LSTM steps for
512 trained), at T = 256, 3 of 256 (768). The LSTM's forward and backward run over the
padding too, so the update's cost per env step grows with T.

``EpisodeRolloutBuffer`` (``minibatches = "episodes"``, the default) shuffles the
rollout's sequences (each melody, or the part of it this rollout holds) and then cuts
the shuffled stream into minibatches of ``batch_size`` steps, as sb3-contrib cuts its
rolled one. When ``batch_size`` is a multiple of T every minibatch is ``batch_size / T``
whole melodies and nothing is padded; otherwise a melody cut by a minibatch's edge
starts its second part from the LSTM state stored at that step, exactly as sb3-contrib
does at its split. The PPO loss, the advantages and the optimiser are sb3-contrib's;
only which steps share a minibatch differs (and the shuffle is finer: every epoch sees
the melodies in a new order). ``minibatches = "contiguous"`` keeps sb3-contrib's own
buffer (the runs measured before 2026-12-07 used it).
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.type_aliases import RecurrentRolloutBufferSamples

from rlmusic.tuning.config import MINIBATCHES


class EpisodeRolloutBuffer(RecurrentRolloutBuffer):
    """A recurrent rollout buffer whose minibatches are shuffled whole sequences."""

    def get(self, batch_size: int | None = None) -> Generator[RecurrentRolloutBufferSamples, None, None]:
        assert self.full, "Rollout buffer must be full before sampling from it"
        if not self.generator_ready:  # sb3-contrib's preparation: env-major, flattened
            for tensor in ["hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf"]:
                self.__dict__[tensor] = self.__dict__[tensor].swapaxes(1, 2)
            for tensor in ["observations", "actions", "values", "log_probs", "advantages", "returns",
                           "hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf",
                           "episode_starts"]:
                self.__dict__[tensor] = self.swap_and_flatten(self.__dict__[tensor])
            self.generator_ready = True
        total = self.buffer_size * self.n_envs
        batch_size = batch_size or total
        env_change = np.zeros((self.buffer_size, self.n_envs))
        env_change[0, :] = 1.0  # each env's first step starts a sequence
        env_change = self.swap_and_flatten(env_change)
        order = self.shuffled(env_change)
        for start in range(0, total, batch_size):
            yield self._get_samples(order[start:start + batch_size], env_change)

    def shuffled(self, env_change: np.ndarray) -> np.ndarray:
        """The buffer's indices with its sequences (runs between episode starts and env
        changes) in a random order (``np.random``, seeded by SB3), each kept in its order."""
        starts = np.flatnonzero(np.logical_or(self.episode_starts.reshape(-1) > 0, env_change.reshape(-1) > 0))
        bounds = np.append(starts, len(env_change))  # starts[0] == 0: env 0's first step
        return np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in np.random.permutation(len(starts))])


class MelodyPPO(RecurrentPPO):
    """RecurrentPPO whose rollout buffer is ``EpisodeRolloutBuffer`` when ``minibatches``
    is ``"episodes"`` (sb3-contrib's own with ``"contiguous"``). Saved and loaded as SB3
    models are; ``minibatches`` is saved with it."""

    def __init__(self, *args, minibatches: str = "episodes", **kwargs):
        if minibatches not in MINIBATCHES:
            raise ValueError(f"minibatches must be one of {list(MINIBATCHES)}, got {minibatches!r}")
        self.minibatches = minibatches
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        super()._setup_model()
        if getattr(self, "minibatches", "episodes") == "episodes":
            b = self.rollout_buffer
            self.rollout_buffer = EpisodeRolloutBuffer(
                b.buffer_size, b.observation_space, b.action_space, b.hidden_state_shape, b.device,
                gae_lambda=b.gae_lambda, gamma=b.gamma, n_envs=b.n_envs)
