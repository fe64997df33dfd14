"""The PPO policy, built exactly from the prior (and the tuned model, extracted back).

sb3-contrib's ``RecurrentActorCriticPolicy`` computes
``features_extractor(obs) -> lstm_actor -> mlp_extractor.pi -> action_net``, and the
prior computes ``embedding(token) -> lstm -> head``. They are the same function when:

- the features extractor is the embedding. SB3 one-hot encodes a ``Discrete``
  observation, and ``onehot(x) @ E == E[x]``, so a bias-free
  ``Linear(input_size -> embed_dim)`` with weight ``embedding.weight.T`` reproduces the
  embedding exactly (and gets the same gradient);
- ``lstm_actor`` holds the prior's LSTM weights (``batch_first`` does not change the
  parameters; dropout 0: tuning samples and scores with one deterministic network);
- the policy MLP is empty (``net_arch=dict(pi=[], vf=[])`` -> identity) and
  ``action_net`` is the prior's head;
- nothing is re-initialised afterwards (``ortho_init=False``).

So before any update the policy's action probabilities equal the prior's
(``tests/test_tune.py`` checks it to 1e-5): PPO starts from the prior, the KL to the
prior starts at 0 and measures exactly how far tuning moved. The critic has its own
copy of the embedding and LSTM (``share_features_extractor=False``,
``enable_critic_lstm=True, shared_lstm=False``) and a fresh value head, so value-loss
gradients never move the policy.

``fast_process_sequence`` replaces the stock ``_process_sequence``: when a minibatch
holds an episode start, the stock code steps the LSTM one time step at a time in
Python. sb3-contrib's recurrent buffer cuts sequences at every episode start, so the
starts fall only at the head of each padded sequence; zeroing those sequences'
initial states and making one LSTM call does the same arithmetic in one kernel.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rlmusic.models.lstm import MelodyLSTM, ModelConfig


class PriorEmbedding(BaseFeaturesExtractor):
    """One-hot token (B, input_size) -> embedding (B, embed_dim) via a bias-free Linear."""

    def __init__(self, observation_space: spaces.Discrete, embed_dim: int):
        super().__init__(observation_space, features_dim=embed_dim)
        self.linear = nn.Linear(int(observation_space.n), embed_dim, bias=False)  # weight (E, input_size)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(observations)


def fast_process_sequence(
    features: th.Tensor,
    lstm_states: tuple[th.Tensor, th.Tensor],
    episode_starts: th.Tensor,
    lstm: nn.LSTM,
) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
    """``RecurrentActorCriticPolicy._process_sequence`` in one LSTM call when episode
    starts fall only at the head of each sequence (else the stock step-by-step loop)."""
    n_seq = lstm_states[0].shape[1]
    features_sequence = features.reshape((n_seq, -1, lstm.input_size)).swapaxes(0, 1)  # (L, n_seq, F)
    starts = episode_starts.reshape((n_seq, -1)).swapaxes(0, 1)  # (L, n_seq)
    if starts.shape[0] > 1 and bool(th.any(starts[1:] != 0.0)):
        return RecurrentActorCriticPolicy._process_sequence(features, lstm_states, episode_starts, lstm)
    keep = (1.0 - starts[0]).view(1, n_seq, 1)  # zero the state of sequences that start an episode
    out, states = lstm(features_sequence, (keep * lstm_states[0], keep * lstm_states[1]))  # (L, n_seq, H)
    return th.flatten(out.transpose(0, 1), start_dim=0, end_dim=1), states  # (n_seq * L, H)


class FastRecurrentActorCriticPolicy(RecurrentActorCriticPolicy):
    """The stock recurrent policy with the one-call LSTM path (used by the benchmark)."""

    _process_sequence = staticmethod(fast_process_sequence)


class PriorPolicy(FastRecurrentActorCriticPolicy):
    """Recurrent actor-critic whose actor is the prior (see the module docstring).

    ``prior_config``: the prior's ``ModelConfig`` as a dict (saved with the SB3 model so
    a checkpoint rebuilds the same shapes). Call ``load_prior`` once to copy the weights.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule,
        prior_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if prior_config is None:
            raise ValueError("PriorPolicy needs prior_config (the prior's ModelConfig as a dict)")
        config = ModelConfig.from_dict(prior_config)
        vocab = config.vocab
        if not (isinstance(observation_space, spaces.Discrete) and observation_space.n == vocab.input_size):
            raise ValueError(f"observation space must be Discrete({vocab.input_size}), got {observation_space}")
        if not (isinstance(action_space, spaces.Discrete) and action_space.n == vocab.size):
            raise ValueError(f"action space must be Discrete({vocab.size}), got {action_space}")
        self.prior_config = config
        fixed = dict(
            net_arch=dict(pi=[], vf=[]),
            ortho_init=False,
            features_extractor_class=PriorEmbedding,
            features_extractor_kwargs={"embed_dim": config.embed_dim},
            share_features_extractor=False,
            lstm_hidden_size=config.hidden_size,
            n_lstm_layers=config.num_layers,
            lstm_kwargs={"dropout": 0.0},
            enable_critic_lstm=True,
            shared_lstm=False,
        )
        clash = sorted(k for k in kwargs if k in fixed)
        if clash:
            raise ValueError(f"PriorPolicy fixes {clash}; do not pass them")
        super().__init__(observation_space, action_space, lr_schedule, **fixed, **kwargs)

    @th.no_grad()
    def load_prior(self, prior: MelodyLSTM) -> None:
        """Copy the prior into actor and critic (the value head stays fresh)."""
        if asdict(prior.config) | {"dropout": 0} != asdict(self.prior_config) | {"dropout": 0}:
            raise ValueError(f"prior config {prior.config} differs from the policy's {self.prior_config}")
        emb = prior.embedding.weight.T  # (E, input_size)
        for extractor in (self.pi_features_extractor, self.vf_features_extractor):
            extractor.linear.weight.copy_(emb)
        self.lstm_actor.load_state_dict(prior.lstm.state_dict())
        self.lstm_critic.load_state_dict(prior.lstm.state_dict())
        self.action_net.load_state_dict(prior.head.state_dict())

    def to_melody_lstm(self) -> MelodyLSTM:
        """The actor as a ``MelodyLSTM`` (CPU, eval mode), in the prior's config."""
        model = MelodyLSTM(self.prior_config)
        with th.no_grad():
            model.embedding.weight.copy_(self.pi_features_extractor.linear.weight.T)
            model.lstm.load_state_dict({k: v.cpu() for k, v in self.lstm_actor.state_dict().items()})
            model.head.load_state_dict({k: v.cpu() for k, v in self.action_net.state_dict().items()})
        return model.eval()


def policy_log_probs(policy: RecurrentActorCriticPolicy, tokens: th.Tensor) -> th.Tensor:
    """Feed melodies (B, T) step by step through ``policy`` as the rollout does
    (BOS first, ``episode_starts`` at step 0) -> log pi(. | history) (B, T, V)."""
    n, steps = tokens.shape
    bos = int(policy.observation_space.n) - 1
    lstm = policy.lstm_actor
    shape = (lstm.num_layers, n, lstm.hidden_size)
    states = (th.zeros(shape, device=policy.device), th.zeros(shape, device=policy.device))
    obs = th.full((n,), bos, dtype=th.long, device=policy.device)
    out = []
    with th.no_grad():
        for t in range(steps):
            starts = th.full((n,), 1.0 if t == 0 else 0.0, device=policy.device)
            dist, states = policy.get_distribution(obs, states, starts)
            out.append(th.log_softmax(dist.distribution.logits, dim=-1))
            obs = tokens[:, t].to(policy.device)
    return th.stack(out, dim=1)
