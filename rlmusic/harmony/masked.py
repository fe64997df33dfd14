"""The masked infilling model (Coconet-style): a non-causal convolutional network over
the four-voice roll that predicts every masked cell from all the cells it can see.

Reads in the order of the architecture: config -> per-voice token embeddings (a ``MASK``
token marks the cells to fill), the pitch each voice sounds at each frame (carried
through its HOLDs; unknown after a masked cell) and the position in the bar -> a stack
of residual dilated 1-D convolutions along time (each frame sees +-``receptive_field``
frames) -> one head per voice. Coconet convolves over (time, pitch) with a one-hot pitch
axis, where a held note shows its pitch in every frame; here each voice's token is
embedded (REST and HOLD are tokens like the pitches, as in the melody representation),
so the sounding pitch is given beside it (without it a chord's pitches were invisible
wherever the voices held), and the network convolves along time only: a small model
that trains on one CPU thread in minutes. It is trained as an orderless NADE (any subset of
cells masked, ``rlmusic.harmony.gibbs.training_masks``) and sampled with blocked Gibbs
(``rlmusic.harmony.gibbs.gibbs_fill``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn as nn

from rlmusic.music.representation import Vocabulary

MAX_BAR_STEPS = 48  # positions in a bar the model tells apart (12/8 at 16ths); longer bars wrap


def config_from_dict(cls, data: dict[str, Any], tuples: tuple[str, ...] = ()):
    """A harmony model config from its saved keys (lists back to tuples); an unknown key
    raises with the valid ones."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid: {sorted(known)}")
    return cls(**{k: tuple(int(x) for x in v) if k in tuples else v for k, v in data.items()})


@dataclass
class MaskedConfig:
    """Everything needed to rebuild a MaskedHarmonizer; saved in its model directory."""

    min_pitch: int = 31  # vocabulary: lowest MIDI pitch (all four voices share it)
    max_pitch: int = 86  # vocabulary: highest MIDI pitch (inclusive)
    embed_dim: int = 32  # token embedding width per voice
    channels: int = 128  # width of the convolution stack
    dilations: tuple[int, ...] = (1, 2, 4, 8, 16, 1, 2, 4, 8, 16)  # one residual block per entry
    kernel_size: int = 3  # taps of each dilated convolution (odd)
    dropout: float = 0.1  # inside each block (training only)

    @property
    def vocab(self) -> Vocabulary:
        return Vocabulary(self.min_pitch, self.max_pitch)

    @property
    def receptive_field(self) -> int:
        """Frames each side that reach a frame's prediction."""
        return sum(d * (self.kernel_size // 2) for d in self.dilations)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskedConfig:
        return config_from_dict(cls, data, tuples=("dilations",))


def context_start(tokens, frame: int) -> int:
    """The first frame a prediction at ``frame`` or later needs from the left: ``frame``,
    moved back to the onset of every note still sounding there (the sounding pitch comes
    from the onset). tokens (4, T)."""
    start = frame
    for row in tokens:
        k = frame
        while k > 0 and int(row[k]) == Vocabulary.HOLD:
            k -= 1
        start = min(start, k)
    return start


class Block(nn.Module):
    """LayerNorm -> dilated conv -> GELU -> 1x1 conv -> dropout, added back (residual)."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.conv = nn.Conv1d(channels, channels, kernel_size, dilation=dilation,
                              padding=dilation * (kernel_size // 2))
        self.mix = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, T) -> (B, C, T)."""
        y = self.norm(x.transpose(1, 2)).transpose(1, 2)
        return x + self.drop(self.mix(torch.nn.functional.gelu(self.conv(y))))


class MaskedHarmonizer(nn.Module):
    """Four-voice roll with masked cells -> logits of every cell."""

    kind = "masked"

    def __init__(self, config: MaskedConfig):
        super().__init__()
        if config.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {config.kernel_size}")
        self.config = config
        v = config.vocab
        self.mask_token = v.size  # input-only: a cell to fill
        self.embed = nn.Embedding(4 * (v.size + 1), config.embed_dim)
        self.sound = nn.Embedding(4 * (v.size + 1), config.embed_dim)  # sounding pitch, REST, or unknown
        self.position = nn.Embedding(MAX_BAR_STEPS, 4 * config.embed_dim)
        self.inp = nn.Linear(4 * config.embed_dim, config.channels)
        self.blocks = nn.ModuleList(
            Block(config.channels, config.kernel_size, d, config.dropout) for d in config.dilations
        )
        self.norm = nn.LayerNorm(config.channels)
        self.head = nn.Linear(config.channels, 4 * v.size)

    @property
    def vocab(self) -> Vocabulary:
        return self.config.vocab

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    def forward(self, tokens: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """tokens (B, 4, T) with ``mask_token`` in masked cells, position (B, T) in-bar step
        -> logits (B, 4, T, V)."""
        b, _, t = tokens.shape
        offsets = torch.arange(4, device=tokens.device)[None, :, None] * (self.mask_token + 1)
        x = self.embed(tokens + offsets) + self.sound(self.sounding(tokens) + offsets)  # (B, 4, T, E)
        x = x.permute(0, 2, 1, 3).reshape(b, t, -1)  # (B, T, 4E)
        x = self.inp(x + self.position(position % MAX_BAR_STEPS))  # (B, T, C)
        x = x.transpose(1, 2)  # (B, C, T)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x.transpose(1, 2))  # (B, T, C)
        logits = self.head(x).reshape(b, t, 4, -1)  # (B, T, 4, V)
        return logits.permute(0, 2, 1, 3)  # (B, 4, T, V)

    def sounding(self, tokens: torch.Tensor) -> torch.Tensor:
        """What each voice sounds at each frame: (B, 4, T) -> (B, 4, T), the token of the
        note's onset carried through its HOLDs (REST for a rest, a HOLD with nothing to
        hold, and ``mask_token`` when the onset is masked)."""
        t = tokens.shape[-1]
        steps = torch.arange(t, device=tokens.device).expand_as(tokens)
        last = torch.where(tokens != Vocabulary.HOLD, steps, torch.zeros_like(steps)).cummax(dim=-1).values
        out = tokens.gather(-1, last)  # the last non-HOLD token at or before each frame
        return torch.where(out == Vocabulary.HOLD, torch.full_like(out, Vocabulary.REST), out)

    @torch.no_grad()
    def atb_log_probs(self, soprano: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """log p(alto, tenor, bass cell | soprano) with all three voices masked:
        soprano (T,), position (T,) -> (3, T, V)."""
        tokens = torch.full((1, 4, len(soprano)), self.mask_token, dtype=torch.long, device=self.device)
        tokens[0, 0] = soprano.to(self.device)
        logits = self.forward(tokens, position[None].to(self.device))[0, 1:]
        return torch.log_softmax(logits.float(), dim=-1).cpu()
