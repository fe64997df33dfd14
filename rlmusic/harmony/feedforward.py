"""The seed's feedforward counterpoint: a window of the soprano's one-hot piano roll in,
the alto, tenor and bass one-hot rolls of the same window out, through hidden layers.

As the article describes it: the soprano roll (``window`` steps x tokens) and the
position of each step in its bar are flattened into one input vector; fully connected
hidden layers; one output unit per (voice, step, token), read as a softmax per voice
and step; harmonise by argmax or by sampling each cell on its own. A melody longer
than a window is covered by windows half a window apart whose probabilities are
averaged where they overlap (``atb_log_probs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from rlmusic.harmony.masked import MAX_BAR_STEPS, config_from_dict
from rlmusic.music.representation import Vocabulary


@dataclass
class FeedforwardConfig:
    """Everything needed to rebuild a FeedforwardHarmonizer; saved in its model directory."""

    min_pitch: int = 31  # vocabulary: lowest MIDI pitch (all four voices share it)
    max_pitch: int = 86  # vocabulary: highest MIDI pitch (inclusive)
    window: int = 64  # 16th steps per input/output window (64 = four bars of 4/4)
    hidden: tuple[int, ...] = (256, 256)  # width of each hidden layer
    dropout: float = 0.3  # after each hidden layer (training only)

    @property
    def vocab(self) -> Vocabulary:
        return Vocabulary(self.min_pitch, self.max_pitch)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedforwardConfig:
        return config_from_dict(cls, data, tuples=("hidden",))


class FeedforwardHarmonizer(nn.Module):
    """Soprano window (one-hot) -> alto, tenor, bass windows (logits)."""

    kind = "feedforward"

    def __init__(self, config: FeedforwardConfig):
        super().__init__()
        self.config = config
        v, w = config.vocab.size, config.window
        layers: list[nn.Module] = []
        width = w * (v + MAX_BAR_STEPS)
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(config.dropout)]
            width = h
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, 3 * w * v)

    @property
    def vocab(self) -> Vocabulary:
        return self.config.vocab

    @property
    def device(self) -> torch.device:
        return self.out.weight.device

    def forward(self, soprano: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """soprano (B, W) tokens, position (B, W) in-bar step -> logits (B, 3, W, V)."""
        b, w = soprano.shape
        v = self.vocab.size
        roll = torch.nn.functional.one_hot(soprano, v).float()  # (B, W, V)
        bar = torch.nn.functional.one_hot(position % MAX_BAR_STEPS, MAX_BAR_STEPS).float()  # (B, W, P)
        x = torch.cat([roll, bar], dim=-1).reshape(b, -1)  # (B, W*(V+P))
        return self.out(self.body(x)).reshape(b, 3, w, v)  # (B, 3, W, V)

    @torch.no_grad()
    def atb_log_probs(self, soprano: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """log p(alto, tenor, bass cell | soprano) of a whole melody: windows half a window
        apart, probabilities averaged where they overlap. soprano (T,), position (T,) ->
        (3, T, V)."""
        w, t = self.config.window, len(soprano)
        pad = (-t) % (w // 2) if t > w else w - t
        s = torch.cat([soprano, soprano.new_full((pad,), Vocabulary.REST)])
        p = torch.cat([position, (position[-1:] + 1 + torch.arange(pad)) % MAX_BAR_STEPS]) if pad else position
        starts = list(range(0, len(s) - w + 1, max(w // 2, 1)))
        windows = torch.stack([s[a: a + w] for a in starts]).to(self.device)  # (N, W)
        positions = torch.stack([p[a: a + w] for a in starts]).to(self.device)
        probs = torch.softmax(self.forward(windows, positions).float(), dim=-1).cpu()  # (N, 3, W, V)
        total = torch.zeros(3, len(s), self.vocab.size)
        cover = torch.zeros(len(s))
        for k, a in enumerate(starts):
            total[:, a: a + w] += probs[k]
            cover[a: a + w] += 1
        return torch.log(total[:, :t] / cover[None, :t, None])
