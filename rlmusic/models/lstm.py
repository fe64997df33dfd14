"""MelodyLSTM: the melody prior (and, after tuning, the tuned model).

Reads in the order of the architecture: config -> embedding -> stacked LSTM -> head,
then incremental stepping and batched sampling. ``rlmusic.models.checkpoint`` saves and
loads it as a model directory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from rlmusic.music.representation import Vocabulary

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (num_layers, B, hidden_size)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a MelodyLSTM; saved in every model directory."""

    min_pitch: int = 48  # vocabulary: lowest MIDI pitch
    max_pitch: int = 84  # vocabulary: highest MIDI pitch (inclusive)
    embed_dim: int = 64  # token embedding width
    hidden_size: int = 256  # LSTM units per layer
    num_layers: int = 2  # stacked LSTM layers
    dropout: float = 0.2  # between LSTM layers and before the head (training only)
    max_steps: int = 256  # longest sequence (16th-note steps) the model was trained on

    @property
    def vocab(self) -> Vocabulary:
        return Vocabulary(self.min_pitch, self.max_pitch)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys {unknown}; valid: {sorted(known)}")
        return cls(**data)


class MelodyLSTM(nn.Module):
    """Embedding -> LSTM (num_layers) -> linear head over the vocabulary."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.source_dir = None  # the model directory it was loaded from (set by load_model)
        vocab = config.vocab
        self.embedding = nn.Embedding(vocab.input_size, config.embed_dim)
        self.lstm = nn.LSTM(
            config.embed_dim,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, vocab.size)

    @property
    def vocab(self) -> Vocabulary:
        return self.config.vocab

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def initial_state(self, batch_size: int) -> State:
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        zeros = torch.zeros(shape, device=self.device)
        return zeros, zeros.clone()

    def forward(self, inputs: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """inputs (B, T) token ids (BOS allowed) -> logits (B, T, vocab.size), new state."""
        x = self.embedding(inputs)  # (B, T, E)
        out, state = self.lstm(x, state)  # (B, T, H)
        return self.head(self.drop(out)), state  # (B, T, V)

    def step(self, token: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One step: token (B,) -> logits (B, V), new state."""
        logits, state = self.forward(token[:, None], state)
        return logits[:, 0], state

    def with_bos(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) melody tokens -> (B, T) inputs: BOS then tokens[:, :-1] (teacher forcing)."""
        bos = torch.full_like(tokens[:, :1], self.vocab.BOS)
        return torch.cat([bos, tokens[:, :-1]], dim=1)

    def log_probs(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-step log p(tokens[:, t] | tokens[:, <t]) of whole melodies: (B, T) -> (B, T)."""
        logits, _ = self.forward(self.with_bos(tokens))
        return torch.log_softmax(logits, dim=-1).gather(-1, tokens[..., None])[..., 0]

    @torch.no_grad()
    def sample(
        self,
        n: int,
        steps: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        primer: list[int] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        return_log_probs: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Sample ``n`` melodies of ``steps`` tokens in one batch -> (n, steps) int64 on CPU.

        ``primer`` tokens are fed first and kept as the melody's opening; sampling uses
        ``generator`` (seeded by the caller) so the same seed gives the same melodies.
        ``return_log_probs``: also the model's log-probabilities at every step
        (n, steps, V), float32 on CPU, at ``temperature`` before any ``top_k`` cut: what a
        teacher-forced forward over the sampled melodies gives, without running it again.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if top_k is not None and not 1 <= top_k <= self.vocab.size:
            raise ValueError(f"top_k must be in 1..{self.vocab.size}, got {top_k}")
        primer_t = torch.as_tensor([] if primer is None else primer, dtype=torch.long)
        if len(primer_t) > steps:
            raise ValueError(f"primer has {len(primer_t)} steps, more than steps={steps}")
        if len(primer_t) and (primer_t.min() < 0 or primer_t.max() >= self.vocab.size):
            raise ValueError("primer contains tokens outside the vocabulary")
        was_training = self.training
        self.eval()
        out = torch.empty(n, steps, dtype=torch.long)
        out[:, : len(primer_t)] = primer_t
        token = torch.full((n,), self.vocab.BOS, dtype=torch.long, device=self.device)
        state = None
        log_probs = torch.empty(n, steps, self.vocab.size) if return_log_probs else None
        for t in range(steps):
            logits, state = self.step(token, state)  # (n, V)
            if log_probs is not None:
                log_probs[:, t] = F.log_softmax(logits.float() / temperature, dim=-1).cpu()
            if t < len(primer_t):
                token = primer_t[t].expand(n).to(self.device)
                continue
            logits = logits.float() / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
                logits = logits.masked_fill(logits < kth, -math.inf)
            probs = F.softmax(logits, dim=-1).cpu()
            token_cpu = torch.multinomial(probs, 1, generator=generator)[:, 0]
            out[:, t] = token_cpu
            token = token_cpu.to(self.device)
        self.train(was_training)
        return (out, log_probs) if log_probs is not None else out
