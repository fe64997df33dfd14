"""Masks and sampling: the masks the infilling model trains on, blocked Gibbs sampling
(Coconet's procedure, after Yao et al. 2014), and the one call both models harmonise
through (``fill``).

Training masks mix five kinds, so every use the model is put to is one it has trained on:
Coconet's orderless masks (each cell masked with a probability drawn uniformly per
example), whole frames masked with such a probability (what Coconet's framewise
evaluation hides: without them a frame hidden in all four voices, rare under cell masks,
was predicted at 9.6 nats where onsets fall), the harmonisation mask (alto, tenor and
bass masked, the soprano given), a time span of one or more voices (``revise``), and one
whole voice.

Blocked Gibbs: all target cells start masked and are drawn at once from the model's
independent conditionals; then for ``steps`` rounds a random share of the target cells
is masked again and redrawn given everything else. The share anneals linearly from
``pmax`` to ``pmin`` over the first ``eta`` of the rounds, so early rounds rewrite much
and late rounds polish. Cells outside the target are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rlmusic.music.representation import Vocabulary

MASK_KINDS = ("orderless", "frames", "harmonize", "span", "voice")
MASK_MIX = (0.25, 0.2, 0.3, 0.15, 0.1)  # share of training examples of each kind


def training_masks(batch: int, steps: int, generator: torch.Generator,
                   mix: tuple[float, ...] = MASK_MIX) -> torch.Tensor:
    """(batch, 4, steps) bool, True where a cell is masked (to be predicted)."""
    kinds = torch.multinomial(torch.tensor(mix), batch, replacement=True, generator=generator)
    masks = torch.zeros(batch, 4, steps, dtype=torch.bool)  # on CPU: the caller moves it
    for b, kind in enumerate(kinds.tolist()):
        if kind == 0:
            rate = torch.rand((), generator=generator)
            masks[b] = torch.rand(4, steps, generator=generator) < rate
        elif kind == 1:
            rate = torch.rand((), generator=generator)
            masks[b] = (torch.rand(steps, generator=generator) < rate)[None]
        elif kind == 2:
            masks[b, 1:] = True
        elif kind == 3:
            length = int(torch.randint(1, max(steps // 2, 1) + 1, (), generator=generator))
            start = int(torch.randint(0, steps - length + 1, (), generator=generator))
            voices = _span_voices(generator)
            masks[b, voices, start: start + length] = True
        else:
            masks[b, int(torch.randint(0, 4, (), generator=generator))] = True
        if not masks[b].any():
            masks[b, int(torch.randint(0, 4, (), generator=generator)),
                  int(torch.randint(0, steps, (), generator=generator))] = True
    return masks


def _span_voices(generator: torch.Generator) -> list[int]:
    """Voices of a span mask: one voice (70%), alto-tenor-bass (20%) or all four (10%)."""
    u = float(torch.rand((), generator=generator))
    if u < 0.7:
        return [int(torch.randint(0, 4, (), generator=generator))]
    return [1, 2, 3] if u < 0.9 else [0, 1, 2, 3]


@dataclass
class GibbsConfig:
    """Blocked Gibbs sampling with an annealed masking share (Coconet, Yao et al. 2014)."""

    steps: int = 64  # rounds after the first draw of every target cell
    pmax: float = 1.0  # share of target cells redrawn in the first round
    pmin: float = 0.05  # share redrawn once annealing is done
    eta: float = 0.75  # fraction of the rounds over which the share anneals
    temperature: float = 0.9  # softmax temperature of every draw (lower: safer chords)
    repair_rounds: int = 32  # voice-leading repair redraws after sampling (0: the model's raw sample)

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"gibbs steps must be >= 0, got {self.steps}")
        if not 0 < self.pmin <= self.pmax <= 1:
            raise ValueError(f"need 0 < pmin <= pmax <= 1, got pmin={self.pmin}, pmax={self.pmax}")
        if not 0 < self.eta <= 1:
            raise ValueError(f"eta must be in (0, 1], got {self.eta}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.repair_rounds < 0:
            raise ValueError(f"repair rounds must be >= 0, got {self.repair_rounds}")

    def share(self, step: int) -> float:
        """Masking share of round ``step`` (1-based; round 0 masks every target cell)."""
        done = step / max(self.eta * self.steps, 1e-9)
        return max(self.pmin, self.pmax - done * (self.pmax - self.pmin))


def _draw(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """One token per cell: logits (..., V) -> (...) long (on CPU)."""
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator)[:, 0].reshape(probs.shape[:-1])


@torch.no_grad()
def gibbs_fill(model, tokens: torch.Tensor, target: torch.Tensor, position: torch.Tensor,
               generator: torch.Generator, config: GibbsConfig | None = None) -> torch.Tensor:
    """Fill the ``target`` cells of ``tokens`` by blocked Gibbs with a masked model.

    tokens (B, 4, T) long (values in target cells are ignored), target (B, 4, T) bool,
    position (B, T) -> (B, 4, T) long on CPU; cells outside ``target`` come back unchanged.
    """
    config = config or GibbsConfig()
    x = tokens.clone().cpu()
    target = target.cpu()
    mask_token = model.mask_token
    redraw = target.clone()
    for step in range(config.steps + 1):
        if step:
            redraw = target & (torch.rand(target.shape, generator=generator) < config.share(step))
            if not redraw.any():
                continue
        inputs = x.masked_fill(redraw, mask_token)
        logits = model(inputs.to(model.device), position.to(model.device))  # (B, 4, T, V)
        drawn = _draw(logits, config.temperature, generator)
        x = torch.where(redraw, drawn, x)
    return x


@torch.no_grad()
def fill(model, soprano: torch.Tensor, position: torch.Tensor, generator: torch.Generator,
         n: int = 1, gibbs: GibbsConfig | None = None) -> torch.Tensor:
    """Harmonise ``soprano`` (T,) with either model: (n, 4, T) long, row 0 the soprano.

    The masked model fills alto, tenor and bass by blocked Gibbs; the feedforward model
    draws each cell from its own softmax (at ``gibbs.temperature``; the seed's argmax is
    ``greedy_fill``).
    """
    t = len(soprano)
    tokens = torch.full((n, 4, t), Vocabulary.REST, dtype=torch.long)
    tokens[:, 0] = soprano
    if model.kind == "masked":
        target = torch.zeros(n, 4, t, dtype=torch.bool)
        target[:, 1:] = True
        return gibbs_fill(model, tokens, target, position.expand(n, t), generator, gibbs)
    temperature = (gibbs or GibbsConfig()).temperature
    logp = model.atb_log_probs(soprano, position)  # (3, T, V)
    tokens[:, 1:] = _draw(logp.expand(n, *logp.shape), temperature, generator)
    return tokens


@torch.no_grad()
def greedy_fill(model, soprano: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """The most likely token of every alto, tenor and bass cell given the soprano alone
    (the seed's argmax): (4, T) long."""
    logp = model.atb_log_probs(soprano, position)
    return torch.cat([soprano[None], logp.argmax(dim=-1)])
