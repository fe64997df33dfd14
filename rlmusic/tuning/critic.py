"""The style critic: the adversarial reward (SeqGAN's discriminator, as a PPO reward term).

A small LSTM classifier of "real corpus melody vs policy sample". It is first trained on
windows of the prior's training corpus against samples of the model tuning starts from,
then refreshed after every rollout on that rollout's fresh policy samples (plus a replay
of recent ones), so it keeps chasing the policy. Its log-odds ``log D / (1 - D)`` of
"real", clipped and times ``style_weight``, is an end-of-melody reward term ``style``
passed through the env's final-reward callable; ``KLControl`` logs it as ``reward/style``
and ``CriticRefresh`` logs ``critic/accuracy`` (balanced, on the fresh samples *before*
the critic trains on them and on held-out real windows), ``critic/loss`` and the mean
log-odds of both sides. The critic's state is saved in ``OUT/critic.pt`` after every
refresh, so a resumed run continues with it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from stable_baselines3.common.callbacks import BaseCallback

from envs.rewards import FinalReward
from rlmusic.corpus.cache import load_corpus
from rlmusic.models.checkpoint import training_corpus
from rlmusic.models.windows import melody_windows
from rlmusic.music.representation import Vocabulary
from rlmusic.runtime import dataclass_from_dict

STATE_FILE = "critic.pt"


@dataclass
class CriticConfig:
    """Options of the style critic (the ``[critic]`` table of a tune config)."""

    corpus: str | None = None  # real melodies (train split; valid split held out): None = the prior's corpus
    embed_dim: int = 32  # token embedding width
    hidden: int = 64  # LSTM units
    lr: float = 1e-3  # Adam step size
    batch_size: int = 64  # melodies per side (real, generated) of one critic update
    init_samples: int = 512  # samples of the starting model the critic first learns to tell apart
    init_steps: int = 200  # critic updates before tuning starts
    refresh_steps: int = 8  # critic updates after each rollout
    replay: int = 2048  # most recent policy samples kept to train on
    clip: float = 10.0  # the log-odds are clipped to [-clip, clip] before weighting
    hop: int = 16  # steps between the starts of real windows (16: every bar)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CriticConfig:
        config = dataclass_from_dict(cls, data, "[critic]")
        for f in fields(cls):
            value = getattr(config, f.name)
            if f.name != "corpus" and (not isinstance(value, (int, float)) or value <= 0):
                raise ValueError(f"[critic] {f.name} must be a positive number, got {value!r}")
        return config


class CriticNet(nn.Module):
    """tokens (B, T) -> log-odds that each melody is real (B,)."""

    def __init__(self, vocab: Vocabulary, embed_dim: int, hidden: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab.size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.out = nn.Linear(2 * hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.embedding(tokens))  # (B, T, H)
        return self.out(torch.cat([h.mean(1), h[:, -1]], dim=-1))[:, 0]  # (B,)


class StyleCritic:
    """The classifier, its real windows, its replay of policy samples and its optimiser."""

    def __init__(self, config: CriticConfig, vocab: Vocabulary, steps: int, corpus: str, seed: int = 0):
        self.config, self.vocab, self.steps, self.corpus = config, vocab, steps, corpus
        loaded = load_corpus(corpus, vocab=vocab, progress=False)
        self.real = melody_windows(loaded.split("train"), steps, config.hop, min_notes=1)  # (N, T)
        self.heldout = melody_windows(loaded.split("valid"), steps, config.hop, min_notes=1)  # (M, T)
        torch.manual_seed(seed)
        self.net = CriticNet(vocab, config.embed_dim, config.hidden)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.rng = np.random.default_rng(seed)
        self.fakes = np.zeros((0, steps), dtype=np.int64)  # the replay, newest last
        self.updates = 0
        self.trained = False

    @torch.no_grad()
    def log_odds(self, tokens: np.ndarray) -> np.ndarray:
        """(B, T) melodies -> (B,) log-odds that each is a real corpus melody (unclipped)."""
        self.net.eval()
        return self.net(torch.as_tensor(np.asarray(tokens, dtype=np.int64))).double().numpy()

    def reward(self, tokens: np.ndarray) -> np.ndarray:
        """The clipped log-odds the policy is paid (before ``style_weight``)."""
        return np.clip(self.log_odds(tokens), -self.config.clip, self.config.clip)

    def with_style(self, final: FinalReward, weight: float) -> FinalReward:
        """``final``'s end-of-melody terms plus ``style`` = weight * clipped log-odds."""

        def combined(tokens: np.ndarray) -> dict[str, np.ndarray]:
            return {**final(tokens), "style": weight * self.reward(tokens)}

        return combined

    def remember(self, fakes: np.ndarray) -> None:
        self.fakes = np.concatenate([self.fakes, np.asarray(fakes, dtype=np.int64)])[-self.config.replay :]

    def update(self, n_steps: int) -> float:
        """``n_steps`` Adam steps of binary cross-entropy on balanced batches (real windows
        vs the replay) -> mean loss."""
        if not len(self.fakes):
            raise ValueError("the critic has no policy samples to train on")
        self.net.train()
        b, losses = self.config.batch_size, []
        for _ in range(n_steps):
            real = self.real[self.rng.integers(0, len(self.real), b)]
            fake = self.fakes[self.rng.integers(0, len(self.fakes), b)]
            x = torch.as_tensor(np.concatenate([real, fake]))  # (2b, T)
            y = torch.cat([torch.ones(b), torch.zeros(b)])
            loss = F.binary_cross_entropy_with_logits(self.net(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        self.updates += n_steps
        self.trained = True
        return float(np.mean(losses))

    def accuracy(self, fakes: np.ndarray, n_real: int = 512) -> dict[str, float]:
        """How well it tells ``fakes`` from held-out real windows: ``accuracy`` (balanced),
        ``accuracy_real``, ``accuracy_fake`` and the mean log-odds of each side."""
        real = self.heldout[: n_real]
        lr, lf = self.log_odds(real), self.log_odds(fakes)
        acc_r, acc_f = float((lr > 0).mean()), float((lf < 0).mean())
        return {"accuracy": (acc_r + acc_f) / 2, "accuracy_real": acc_r, "accuracy_fake": acc_f,
                "log_odds_real": float(lr.mean()), "log_odds_fake": float(lf.mean())}

    # -- persistence (resume)
    def save(self, path: Path) -> None:
        state = {"config": asdict(self.config), "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "fakes": self.fakes, "updates": self.updates, "rng": self.rng.bit_generator.state}
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        state = torch.load(path, weights_only=False)
        if state["config"] != asdict(self.config):
            raise ValueError(f"{path}: the critic was trained with other [critic] settings: {state['config']}")
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.fakes, self.updates, self.trained = state["fakes"], state["updates"], True
        self.rng.bit_generator.state = state["rng"]


def style_critic(config: Any, run: Any, final: FinalReward) -> tuple[StyleCritic | None, FinalReward]:
    """The critic of a tune config (a ``TuneConfig``) for a ``TuneRun`` and ``final`` with the
    ``style`` term added; (None, ``final``) when ``style_weight`` is 0. On resume the
    critic's state comes back from ``OUT/critic.pt``."""
    critic_config = CriticConfig.from_dict(dict(config.critic))  # bad keys raise even when unused
    weight = config.style_weight
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"style_weight must be a number >= 0, got {weight!r}")
    if not weight:
        return None, final
    corpus = critic_config.corpus or training_corpus(run.prior_dir)
    if not corpus:
        raise ValueError("style_weight > 0 needs real melodies: the prior's provenance names no corpus; "
                         "set corpus in the [critic] table")
    critic = StyleCritic(critic_config, run.prior.vocab, config.steps, corpus, seed=config.seed)
    if run.resume and (run.out / STATE_FILE).is_file():
        critic.load(run.out / STATE_FILE)
    return critic, critic.with_style(final, weight)


class CriticRefresh(BaseCallback):
    """Trains the critic before tuning (unless resumed) and after every rollout on that
    rollout's finished melodies; logs ``critic/*``; saves its state."""

    def __init__(self, run: Any):
        super().__init__()
        self.run, self.critic = run, run.critic  # run: a TuneRun
        self.last: dict[str, float] = {}

    def _on_training_start(self) -> None:
        if self.critic.trained:
            return
        c = self.critic.config
        start = self.run.model.policy.to_melody_lstm()
        gen = torch.Generator().manual_seed(self.run.config.seed + 777)
        samples = start.sample(c.init_samples, self.critic.steps, generator=gen).numpy()
        self.critic.remember(samples)
        loss = self.critic.update(c.init_steps)
        self.last = {**self.critic.accuracy(samples), "loss": loss}  # on what it trained: a fit check
        self.critic.save(self.run.out / STATE_FILE)

    def _on_rollout_start(self) -> None:
        self._melodies: list[np.ndarray] = []

    def _on_step(self) -> bool:
        if np.all(self.locals["dones"]):
            self._melodies.extend(info["melody"] for info in self.locals["infos"])
        return True

    def _on_rollout_end(self) -> None:
        if not self._melodies:
            return
        fresh = np.stack(self._melodies)  # (n, T): this rollout's policy samples
        stats = self.critic.accuracy(fresh)  # before it has seen them
        self.critic.remember(fresh)
        stats["loss"] = self.critic.update(self.critic.config.refresh_steps)
        for name, value in stats.items():
            self.logger.record(f"critic/{name}", value)
        self.last = stats
        self.critic.save(self.run.out / STATE_FILE)

    def provenance(self) -> dict[str, Any]:
        c = self.critic
        return {"style_critic": {"corpus": c.corpus, "config": asdict(c.config), "updates": c.updates,
                                 "real_windows": len(c.real), "last": self.last}}
