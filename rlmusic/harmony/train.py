"""Train a harmony model on the four-voice chorales: crops of the training chorales,
AdamW with a cosine schedule, validation every ``eval_every`` steps on the held-out
``valid`` chorales, the best model kept (``metrics.csv`` logs every evaluation).

Selection figure (both kinds, the same): ``valid_atb_nll_per_frame``, the negative
log-likelihood in nats of the alto, tenor and bass tokens of a frame given the whole
soprano and nothing else, averaged over every frame of every valid chorale.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmusic.corpus.chorale_corpus import ChoraleCorpus
from rlmusic.corpus.chorales import Chorale
from rlmusic.environment import environment
from rlmusic.harmony.checkpoint import build_harmonizer, save_harmonizer
from rlmusic.harmony.gibbs import training_masks
from rlmusic.harmony.likelihood import atb_nll_per_frame
from rlmusic.models.checkpoint import Provenance
from rlmusic.music.representation import Vocabulary
from rlmusic.runtime import command_line, git_commit, now_iso, seed_everything


@dataclass
class HarmonyTrainConfig:
    """How a harmony model is trained (saved in its provenance)."""

    kind: str = "masked"  # masked (Coconet-style infilling) or feedforward (the seed's baseline)
    steps: int = 3000  # optimiser steps
    batch_size: int = 16  # chorale crops per step
    crop: int = 128  # 16th steps per crop for the masked model (the feedforward model uses its window)
    lr: float = 2e-3  # peak learning rate (AdamW; linear warm-up, then cosine to 10%)
    warmup: int = 100  # warm-up steps
    weight_decay: float = 0.01  # AdamW weight decay
    eval_every: int = 250  # steps between validations (and checkpoints of the best model)
    seed: int = 0  # crops, masks, initialisation: same seed, same model
    model: dict[str, Any] = field(default_factory=dict)  # model config keys (MaskedConfig / FeedforwardConfig)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "crop", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def crops(chorales: list[Chorale], batch: int, length: int, rng: np.random.Generator,
          vocab: Vocabulary) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens (B, 4, L), positions (B, L), real (B, L) bool) of random crops; a chorale
    is drawn in proportion to its length; short ones are padded with rests (not real)."""
    lengths = np.array([c.steps for c in chorales], dtype=np.float64)
    picks = rng.choice(len(chorales), size=batch, p=lengths / lengths.sum())
    tokens = np.full((batch, 4, length), vocab.REST, dtype=np.int64)
    position = np.zeros((batch, length), dtype=np.int64)
    real = np.zeros((batch, length), dtype=bool)
    for b, i in enumerate(picks):
        c = chorales[i]
        start = int(rng.integers(0, max(c.steps - length, 0) + 1))
        n = min(length, c.steps - start)
        tokens[b, :, :n] = c.tokens[:, start: start + n]
        position[b] = (np.arange(length) + start + c.phase) % c.bar_steps
        real[b, :n] = True
    return torch.from_numpy(tokens), torch.from_numpy(position), torch.from_numpy(real)


def masked_loss(model, tokens, position, real, generator) -> torch.Tensor:
    """Cross-entropy over the masked real cells, averaged per example, then over the batch."""
    masks = training_masks(tokens.shape[0], tokens.shape[2], generator).to(tokens.device) & real[:, None, :]
    logits = model(tokens.masked_fill(masks, model.mask_token), position)  # (B, 4, T, V)
    nll = torch.nn.functional.cross_entropy(logits.permute(0, 3, 1, 2), tokens, reduction="none")  # (B, 4, T)
    per_example = (nll * masks).sum(dim=(1, 2)) / masks.sum(dim=(1, 2)).clamp(min=1)
    return per_example[masks.any(dim=(1, 2))].mean()


def feedforward_loss(model, tokens, position, real) -> torch.Tensor:
    """Cross-entropy of the alto, tenor and bass cells of the real frames."""
    logits = model(tokens[:, 0], position)  # (B, 3, W, V)
    nll = torch.nn.functional.cross_entropy(logits.permute(0, 3, 1, 2), tokens[:, 1:], reduction="none")
    return (nll * real[:, None, :]).sum() / (3 * real.sum()).clamp(min=1)


def lr_at(step: int, config: HarmonyTrainConfig) -> float:
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    done = (step - config.warmup) / max(config.steps - config.warmup, 1)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))


def train_harmonizer(corpus: ChoraleCorpus, config: HarmonyTrainConfig, out: str | Path,
                     progress: bool = True, log=print, device: str | torch.device = "cpu"):
    """Train, keep the best model (by ``valid_atb_nll_per_frame``) in ``out``; returns it."""
    from tqdm import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    vocab = corpus.vocab
    model = build_harmonizer(config.kind, {"min_pitch": vocab.min_pitch, "max_pitch": vocab.max_pitch,
                                           **config.model}).to(device)
    train, valid = corpus.split("train"), corpus.split("valid")
    length = model.config.window if config.kind == "feedforward" else config.crop
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"harmony train: {config.kind} model, {n_params:,} parameters; {len(train)} train / "
        f"{len(valid)} valid chorales; {config.steps} steps of {config.batch_size} x {length} frames")
    best, started, running = math.inf, time.perf_counter(), []
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["step", "train_loss", "valid_atb_nll_per_frame", "seconds"])
        model.train()
        for step in tqdm(range(config.steps), desc="harmony train", disable=not progress, dynamic_ncols=True):
            for group in opt.param_groups:
                group["lr"] = lr_at(step, config)
            tokens, position, real = (x.to(device) for x in crops(train, config.batch_size, length, rng, vocab))
            if config.kind == "masked":
                loss = masked_loss(model, tokens, position, real, generator)
            else:
                loss = feedforward_loss(model, tokens, position, real)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            running.append(float(loss.detach()))
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                nll = atb_nll_per_frame(model, valid)
                seconds = time.perf_counter() - started
                writer.writerow([step + 1, f"{np.mean(running):.5f}", f"{nll:.5f}", f"{seconds:.1f}"])
                f.flush()
                log(f"step {step + 1}: train loss {np.mean(running):.4f}, valid ATB|S NLL {nll:.4f} "
                    f"nats/frame ({seconds:.0f} s)")
                running = []
                if nll < best:
                    best = nll
                    save_harmonizer(model, out, provenance(corpus, config, {"valid_atb_nll_per_frame": nll,
                                                                            "train_steps": step + 1,
                                                                            "train_seconds": seconds}))
    from rlmusic.harmony.checkpoint import load_harmonizer

    return load_harmonizer(out, device)


def provenance(corpus: ChoraleCorpus, config: HarmonyTrainConfig, metrics: dict[str, float]) -> Provenance:
    return Provenance(kind="harmony", corpus=corpus.key, git_commit=git_commit(), environment=environment(),
                      created=now_iso(), metrics=metrics, command=command_line(),
                      extra={"train": asdict(config), "splits": {k: len(v) for k, v in corpus.splits.items()}})
