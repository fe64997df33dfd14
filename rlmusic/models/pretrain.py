"""Supervised pretraining of the melody prior: teacher-forced cross-entropy.

Each piece is cut into chunks of ``seq_len`` steps (8 bars of 4/4 at 128), each fed
after BOS, padded and masked. AdamW, gradient clipping, early stopping on validation
NLL, seeds, ``--device auto``, a progress bar, a CSV metrics log, and ``--resume`` from
the last checkpoint. The best model (lowest validation NLL) is saved as a model
directory with provenance.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rlmusic.corpus.cache import load_corpus
from rlmusic.environment import environment
from rlmusic.fileio import write_atomic
from rlmusic.models.checkpoint import Provenance, save_model
from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.music.representation import Vocabulary
from rlmusic.runtime import command_line, git_commit, now_iso, resolve_device, seed_everything

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
PAD = -100  # ignore_index of the loss


@dataclass
class PretrainConfig:
    """Options of ``rlmusic pretrain`` (saved in the checkpoint and the model's provenance)."""

    corpus: str = "irish"  # corpus sources, e.g. "irish", "irish+bach", "midi:DIR"
    corpus_limit: int | None = None  # first N pieces per source (tests, quick runs)
    min_pitch: int = 48  # vocabulary range
    max_pitch: int = 84
    embed_dim: int = 64  # model size
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.2
    seq_len: int = 128  # chunk length in 16th steps; also the model's max_steps
    min_chunk: int = 16  # shorter tails of a piece are dropped
    batch_size: int = 64
    lr: float = 2e-3  # AdamW learning rate (cosine decay to lr/10 over max_epochs)
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # max global gradient norm
    max_epochs: int = 30
    patience: int = 4  # stop after this many epochs without a better validation NLL
    seed: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> PretrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown pretrain config keys {unknown}; valid: {sorted(known)}")
        return cls(**data)

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            min_pitch=self.min_pitch,
            max_pitch=self.max_pitch,
            embed_dim=self.embed_dim,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            max_steps=self.seq_len,
        )

    def validate(self) -> None:
        for name in ("seq_len", "batch_size", "max_epochs", "hidden_size", "embed_dim", "num_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


# --------------------------------------------------------------------------- data


def start_cleanly(chunk: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, bool]:
    """A chunk cut from a piece at some offset, made to start as a melody can start.

    A chunk cut in the middle of a note begins with HOLD tokens that hold nothing (the
    note began in ``before``, which the model never sees). The held note is re-struck
    instead: the first HOLD becomes that note's pitch token. HOLDs after a rest (or at
    the very start) are rests already (``tokens_to_notes``) and become REST. Returns the
    (copied when changed) chunk and whether it changed.
    """
    if len(chunk) == 0 or chunk[0] != Vocabulary.HOLD:
        return chunk, False
    chunk = chunk.copy()
    onsets = np.flatnonzero(np.asarray(before) != Vocabulary.HOLD)
    last = int(before[onsets[-1]]) if len(onsets) else Vocabulary.REST
    chunk[0] = last if last >= Vocabulary.FIRST_PITCH_TOKEN else Vocabulary.REST
    return chunk, True


def make_chunks(
    sequences: list[np.ndarray], seq_len: int, min_chunk: int = 16, counts: dict[str, int] | None = None
) -> torch.Tensor:
    """Cut melodies into chunks of ``seq_len`` -> (N, seq_len) int64 targets, PAD-padded.

    Every chunk starts with a note or a rest, never with a HOLD that holds nothing
    (``start_cleanly``); ``counts`` (when given) receives ``restruck`` (chunks whose
    opening HOLD became the held note) and ``short_tails`` (tails under ``min_chunk``
    steps, dropped).
    """
    rows, restruck, short = [], 0, 0
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for start in range(0, len(seq), seq_len):
            chunk, changed = start_cleanly(seq[start : start + seq_len], seq[:start])
            restruck += changed
            if len(chunk) >= min_chunk:
                rows.append(np.pad(chunk, (0, seq_len - len(chunk)), constant_values=PAD))
            else:
                short += 1
    if counts is not None:
        counts.update(restruck=restruck, short_tails=short)
    if not rows:
        raise ValueError(f"no chunk of at least {min_chunk} steps in {len(sequences)} sequences")
    return torch.from_numpy(np.stack(rows))


def inputs_for(targets: torch.Tensor, bos: int) -> torch.Tensor:
    """Teacher forcing: (B, T) targets -> (B, T) inputs = BOS, targets[:, :-1] (PAD -> REST)."""
    prev = targets[:, :-1].clamp(min=0)
    return torch.cat([torch.full_like(targets[:, :1], bos), prev], dim=1)


def batch_loss(model: MelodyLSTM, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, int]]:
    """Mean NLL over real tokens and the counts behind the accuracies: ``correct`` /
    ``tokens`` (every next token; mostly HOLD) and ``onsets_correct`` / ``onsets`` (only
    steps where a note starts: the right pitch at the right time)."""
    logits, _ = model(inputs_for(targets, model.vocab.BOS))  # (B, T, V)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)
    mask = targets != PAD
    hit = logits.argmax(-1) == targets  # (B, T)
    onset = targets >= Vocabulary.FIRST_PITCH_TOKEN
    counts = {"correct": int((hit & mask).sum()), "tokens": int(mask.sum()),
              "onsets_correct": int((hit & onset).sum()), "onsets": int(onset.sum())}
    return loss, counts


@torch.no_grad()
def evaluate_nll(model: MelodyLSTM, chunks: torch.Tensor, batch_size: int = 256) -> dict[str, float]:
    """Validation NLL (nats per token), next-token ``accuracy`` and ``note_accuracy``
    (accuracy on the steps where a note starts)."""
    was_training = model.training
    model.eval()
    total, sums = 0.0, {"correct": 0, "tokens": 0, "onsets_correct": 0, "onsets": 0}
    for i in range(0, len(chunks), batch_size):
        targets = chunks[i : i + batch_size].to(model.device)
        loss, c = batch_loss(model, targets)
        total += float(loss) * c["tokens"]
        for k in sums:
            sums[k] += c[k]
    model.train(was_training)
    return {"nll": total / max(sums["tokens"], 1), "accuracy": sums["correct"] / max(sums["tokens"], 1),
            "note_accuracy": sums["onsets_correct"] / max(sums["onsets"], 1)}


# --------------------------------------------------------------------------- training


class Trainer:
    """Owns model, optimiser, data and the loop; ``run()`` trains to the end or early stop."""

    def __init__(
        self,
        config: PretrainConfig,
        train: torch.Tensor,
        valid: torch.Tensor,
        out: Path,
        device: torch.device,
        corpus_key: str | None = None,
        progress: bool = True,
    ):
        config.validate()
        self.config, self.out, self.device = config, Path(out), device
        self.corpus_key, self.progress = corpus_key, progress
        seed_everything(config.seed)
        self.model = MelodyLSTM(config.model_config()).to(device)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.train_chunks, self.valid_chunks = train, valid
        self.steps_per_epoch = math.ceil(len(train) / config.batch_size)
        total = self.steps_per_epoch * config.max_epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / total, 1.0)))
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch, self.step, self.best_nll, self.bad_epochs = 0, 0, math.inf, 0

    # -- one optimisation step (shared with the benchmark)
    def train_step(self, targets: torch.Tensor) -> float:
        loss, _ = batch_loss(self.model, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return float(loss.detach())

    def run(self) -> dict[str, float]:
        from tqdm import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        log_new = not (self.out / METRICS).exists()
        with open(self.out / METRICS, "a", newline="") as fh:
            log = csv.writer(fh)
            if log_new:
                log.writerow(["epoch", "step", "train_nll", "valid_nll", "valid_accuracy", "valid_note_accuracy",
                              "tokens_per_s", "lr"])
            self.model.train()
            while self.epoch < self.config.max_epochs and self.bad_epochs < self.config.patience:
                order = torch.randperm(len(self.train_chunks), generator=self.generator)
                bs = self.config.batch_size
                bar = tqdm(range(0, len(order), bs), desc=f"epoch {self.epoch + 1}/{self.config.max_epochs}",
                           disable=not self.progress, leave=False)
                losses, tokens, t0 = [], 0, time.perf_counter()
                for i in bar:
                    targets = self.train_chunks[order[i : i + bs]].to(self.device)
                    losses.append(self.train_step(targets))
                    tokens += int((targets != PAD).sum())
                    bar.set_postfix(nll=f"{losses[-1]:.3f}")
                speed = tokens / (time.perf_counter() - t0)
                self.epoch += 1
                val = evaluate_nll(self.model, self.valid_chunks)
                improved = val["nll"] < self.best_nll - 1e-4
                if improved:
                    self.best_nll, self.bad_epochs = val["nll"], 0
                    self.save_best(val)
                else:
                    self.bad_epochs += 1
                row = [self.epoch, self.step, float(np.mean(losses)), val["nll"], val["accuracy"],
                       val["note_accuracy"], round(speed), self.scheduler.get_last_lr()[0]]
                log.writerow(row)
                fh.flush()
                print(f"epoch {self.epoch}: train nll {row[2]:.4f}  valid nll {val['nll']:.4f}  "
                      f"acc {val['accuracy']:.3f}  note acc {val['note_accuracy']:.3f}  {speed:,.0f} tok/s" + ("  *best" if improved else ""),
                      flush=True)
                self.save_checkpoint()
        best = json.loads((self.out / "config.json").read_text())["provenance"]["metrics"]
        return best

    # -- persistence
    def save_best(self, val: dict[str, float]) -> None:
        prov = Provenance(
            kind="prior",
            corpus=self.corpus_key or self.config.corpus,
            git_commit=git_commit(),
            environment=environment(),
            created=now_iso(),
            metrics={"valid_nll": val["nll"], "valid_accuracy": val["accuracy"],
                     "valid_note_accuracy": val["note_accuracy"], "epoch": self.epoch,
                     "train_chunks": len(self.train_chunks), "valid_chunks": len(self.valid_chunks)},
            command=command_line(),
            extra={"pretrain": asdict(self.config)},
        )
        save_model(self.model, self.out, prov)

    def save_checkpoint(self) -> None:
        state = {
            "config": asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "epoch": self.epoch, "step": self.step,
            "best_nll": self.best_nll, "bad_epochs": self.bad_epochs,
        }
        write_atomic(self.out / CHECKPOINT, lambda f: torch.save(state, f))

    def load_checkpoint(self) -> None:
        state = torch.load(self.out / CHECKPOINT, map_location=self.device, weights_only=False)
        if state["config"] != asdict(self.config):
            diff = {k: (state["config"].get(k), v) for k, v in asdict(self.config).items()
                    if state["config"].get(k) != v}
            raise ValueError(f"--resume with a different config than the checkpoint's: {diff}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_nll, self.bad_epochs = state["best_nll"], state["bad_epochs"]


def pretrain(
    config: PretrainConfig,
    out: str | Path,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    sequences: dict[str, list[np.ndarray]] | None = None,
) -> dict[str, float]:
    """Train a prior into ``out``; ``sequences`` ({"train": [...], "valid": [...]}) bypasses the corpus."""
    out = Path(out)
    corpus_key = None
    if sequences is None:
        corpus = load_corpus(config.corpus.split("+"), Vocabulary(config.min_pitch, config.max_pitch),
                             limit=config.corpus_limit, progress=progress)
        sequences = {"train": corpus.split("train"), "valid": corpus.split("valid")}
        corpus_key = corpus.key
        print(corpus.describe(), flush=True)
    counts: dict[str, int] = {}
    train = make_chunks(sequences["train"], config.seq_len, config.min_chunk, counts)
    valid = make_chunks(sequences["valid"], config.seq_len, config.min_chunk)
    print(f"pretrain: {len(train)} train chunks, {len(valid)} valid chunks of {config.seq_len} steps; "
          f"{counts['restruck']} train chunks began inside a note (re-struck), "
          f"{counts['short_tails']} tails under {config.min_chunk} steps dropped", flush=True)
    trainer = Trainer(config, train, valid, out, resolve_device(device), corpus_key, progress)
    if resume:
        if not (out / CHECKPOINT).exists():
            raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
        trainer.load_checkpoint()
        print(f"pretrain: resumed at epoch {trainer.epoch}, step {trainer.step}", flush=True)
    elif (out / CHECKPOINT).exists():
        raise ValueError(f"{out} already holds a training run; pass --resume or choose another --out")
    return trainer.run()
