"""Training the MelodyVAE: windows of the corpus, the ELBO with KL annealing and free
bits, held-out reconstruction figures, progress, a CSV log, ``resume`` and provenance.

Loss per window: ``CE(tokens | z) + beta_t * sum_d max(free_bits, KL_d)`` where ``KL_d``
is the batch mean KL of latent dimension d (free bits, Kingma et al. 2016: a dimension
pays nothing until it carries ``free_bits`` nats, so the decoder cannot ignore z for
free) and ``beta_t`` rises linearly from 0 to ``kl_weight`` over ``kl_anneal_steps``
optimiser steps (Bowman et al. 2016). ``token_dropout`` replaces a share of the decoder's
input tokens by BOS during training, so the decoder must lean on z; ``own_inputs``
replaces a share (rising over ``own_inputs_steps``) by the decoder's own greedy
predictions (parallel scheduled sampling), so it learns to recover from the mistakes
free-running decoding makes.

The best model (``select = "loss"``: lowest held-out loss ``nll + kl_weight * KL``, the
objective trained at its final beta, the ELBO itself reported too; ``"reconstruction"``:
the best greedy free-running token accuracy) is saved as a VAE directory with ``examples.json``: the opening window of a few test-split pieces, the
melodies the Explore page offers.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rlmusic.corpus.cache import load_corpus
from rlmusic.environment import environment
from rlmusic.models.checkpoint import Provenance
from rlmusic.models.vae import KIND, MelodyVAE, VAEConfig, save_vae
from rlmusic.models.windows import melody_windows
from rlmusic.music.representation import Vocabulary
from rlmusic.runtime import (
    command_line,
    dataclass_from_dict,
    git_commit,
    now_iso,
    resolve_device,
    seed_everything,
)

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
EXAMPLES = "examples.json"
EXTENDABLE = ("max_epochs", "patience", "own_inputs", "own_inputs_steps", "token_dropout", "select")  # a resumed run may change these
SELECT = ("loss", "reconstruction")  # what picks the saved epoch
N_EXAMPLES = 8  # test-split openings saved with the model for the Explore page


@dataclass
class VAETrainConfig:
    """Options of ``rlmusic vae train`` (saved in the checkpoint and the VAE's provenance)."""

    corpus: str = "irish"  # corpus sources, e.g. "irish", "irish+bach", "midi:DIR"
    corpus_limit: int | None = None  # first N pieces per source (tests, quick runs)
    min_pitch: int = 48  # lowest pitch of the vocabulary (the prior's)
    max_pitch: int = 84  # highest pitch of the vocabulary (inclusive)
    window: int = 32  # steps per window: 32 = 2 bars, 64 = 4 bars of 4/4
    hop: int = 16  # steps between window starts (16 = one bar)
    min_notes: int = 2  # windows with fewer note onsets are dropped
    embed_dim: int = 32  # token embedding width
    encoder_hidden: int = 128  # LSTM units per direction of the bidirectional encoder
    latent_dim: int = 64  # size of z
    decoder_hidden: int = 256  # LSTM units per decoder layer
    decoder_layers: int = 1  # stacked decoder LSTM layers
    step_codes: int = 16  # width of the per-step code of z the decoder reads (0: none; rlmusic.models.vae)
    kl_weight: float = 0.2  # beta of the KL term once annealed (MusicVAE's 2-bar models: 0.2-0.5)
    kl_anneal_steps: int = 1500  # optimiser steps over which beta rises from 0 to kl_weight
    free_bits: float = 1.0  # nats per latent dimension that cost nothing
    token_dropout: float = 0.25  # share of decoder inputs replaced by BOS while training
    own_inputs: float = 0.0  # share of decoder inputs replaced by its own greedy predictions, once ramped
    own_inputs_steps: int = 0  # optimiser steps over which that share rises from 0 (0: at once)
    batch_size: int = 128  # windows per optimiser step
    lr: float = 2e-3  # Adam learning rate
    grad_clip: float = 1.0  # max global gradient norm
    max_epochs: int = 10  # the shipped VAE: 10, then resumed twice (docs/vae.md)
    patience: int = 4  # stop after this many epochs without a better held-out figure (``select``)
    select: str = "loss"  # keep the epoch with the lowest held-out loss, or "reconstruction": greedy token accuracy
    seed: int = 0  # seeds the initialisation, the window order and the latent draws

    @classmethod
    def from_dict(cls, data: dict) -> VAETrainConfig:
        return dataclass_from_dict(cls, data, "VAE train config")

    def model_config(self) -> VAEConfig:
        names = {f.name for f in fields(VAEConfig)}
        return VAEConfig(**{k: v for k, v in asdict(self).items() if k in names})

    def validate(self) -> None:
        self.model_config().validate()
        for name in ("hop", "batch_size", "max_epochs", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("kl_weight", "kl_anneal_steps", "free_bits", "min_notes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.select not in SELECT:
            raise ValueError(f"select must be one of {', '.join(SELECT)}, got {self.select!r}")
        for name in ("token_dropout", "own_inputs"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.own_inputs_steps < 0:
            raise ValueError(f"own_inputs_steps must be >= 0, got {self.own_inputs_steps}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


# --------------------------------------------------------------------------- loss and figures


def elbo_terms(model: MelodyVAE, tokens: torch.Tensor, token_dropout: float = 0.0,
               sample: bool = True, own: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """tokens (B, T) -> reconstruction NLL per window (B,), KL per dimension (B, Z), logits (B, T, V).

    ``own``: share of the decoder's inputs replaced by its own greedy predictions
    (parallel scheduled sampling, Duckworth et al. 2019: a teacher-forced pass without
    gradient gives the predictions, the trained pass reads them), so training meets the
    mistakes free-running decoding makes; ``token_dropout`` then replaces a share by BOS."""
    mu, logvar = model.encode(tokens)
    z = model.reparameterise(mu, logvar) if sample else mu
    inputs = model.with_bos(tokens)
    if own:
        with torch.no_grad():
            guess = model.with_bos(model.decode_logits(z, inputs).argmax(-1))
        swap = torch.rand(inputs.shape, device=inputs.device) < own
        swap[:, 0] = False  # BOS stays
        inputs = torch.where(swap, guess, inputs)
    if token_dropout:
        drop = torch.rand(inputs.shape, device=inputs.device) < token_dropout
        inputs = inputs.masked_fill(drop, model.vocab.BOS)
    logits = model.decode_logits(z, inputs)  # (B, T, V)
    nll = F.cross_entropy(logits.transpose(1, 2), tokens, reduction="none").sum(1)  # (B,)
    return nll, model.kl_per_dim(mu, logvar), logits


def accuracies(decoded: torch.Tensor, tokens: torch.Tensor) -> dict[str, float]:
    """Token accuracy (every step; mostly HOLD) and onset accuracy (only the steps where
    the target starts a note: the right pitch at the right time)."""
    hit = decoded == tokens  # (N, T)
    onset = tokens >= Vocabulary.FIRST_PITCH_TOKEN
    return {"token_accuracy": float(hit.float().mean()),
            "onset_accuracy": float((hit & onset).sum() / onset.sum().clamp_min(1))}


@torch.no_grad()
def evaluate_vae(model: MelodyVAE, windows: np.ndarray, batch_size: int = 512) -> dict[str, float]:
    """Held-out figures of ``windows`` (N, T): ``nll`` and ``kl`` (nats per window, z = mu
    for the NLL), ``elbo`` (their negative sum), teacher-forced accuracies (``tf_*``),
    free-running greedy reconstruction from mu (``token_accuracy``, ``onset_accuracy``),
    the same decoded from another window's mu (``other_z_*``: what the decoder gets right
    without this melody's z), and ``active_units`` (dims whose mu varies, Var > 0.01)."""
    was_training = model.training
    model.eval()
    x = torch.as_tensor(windows, dtype=torch.long)
    nll = kl = 0.0
    mus, tf, greedy = [], [], []
    for i in range(0, len(x), batch_size):
        batch = x[i : i + batch_size].to(model.device)
        n, kd, logits = elbo_terms(model, batch, sample=False)
        nll += float(n.sum())
        kl += float(kd.sum())
        mu, _ = model.encode(batch)
        mus.append(mu)
        tf.append(logits.argmax(-1).cpu())
        greedy.append(model.decode(mu))
    mu = torch.cat(mus)  # (N, Z)
    other = torch.roll(mu, shifts=1, dims=0)  # another window's z (N >= 2)
    other_dec = torch.cat([model.decode(other[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    n = len(x)
    out = {"nll": nll / n, "kl": kl / n, "elbo": -(nll + kl) / n}  # ELBO: log p(x) >= elbo
    out |= {f"tf_{k}": v for k, v in accuracies(torch.cat(tf), x).items()}
    out |= accuracies(torch.cat(greedy), x)
    out |= {f"other_z_{k}": v for k, v in accuracies(other_dec, x).items()}
    out["active_units"] = int((mu.var(0) > 0.01).sum()) if n > 1 else 0
    model.train(was_training)
    return out


# --------------------------------------------------------------------------- training


class VAETrainer:
    """Owns model, optimiser, windows and the loop; ``run()`` trains to the end or early stop."""

    def __init__(self, config: VAETrainConfig, train: np.ndarray, valid: np.ndarray, out: Path,
                 device: torch.device, corpus_key: str | None = None, progress: bool = True,
                 extra: dict | None = None):
        config.validate()
        self.config, self.out, self.device, self.progress = config, Path(out), device, progress
        self.corpus_key, self.extra = corpus_key, extra or {}
        seed_everything(config.seed)
        self.model = MelodyVAE(config.model_config()).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.train_windows = torch.as_tensor(train, dtype=torch.long)
        self.valid_windows = valid
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch, self.step, self.best, self.bad_epochs = 0, 0, math.inf, 0

    def beta(self) -> float:
        c = self.config
        return c.kl_weight * (min(1.0, self.step / c.kl_anneal_steps) if c.kl_anneal_steps else 1.0)

    def own_share(self) -> float:
        """Share of decoder inputs that are its own predictions at this step."""
        c = self.config
        return c.own_inputs * (min(1.0, self.step / c.own_inputs_steps) if c.own_inputs_steps else 1.0)

    def train_step(self, batch: torch.Tensor) -> tuple[float, float]:
        c = self.config
        nll, kl_dims, _ = elbo_terms(self.model, batch, c.token_dropout, own=self.own_share())
        kl = kl_dims.mean(0).clamp_min(c.free_bits).sum()  # free bits per dimension, batch mean
        loss = nll.mean() + self.beta() * kl
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.step += 1
        return float(nll.mean().detach()), float(kl_dims.sum(1).mean().detach())

    def run(self) -> dict[str, float]:
        from tqdm import tqdm

        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        columns = ["epoch", "step", "beta", "train_nll", "train_kl", "valid_nll", "valid_kl", "valid_elbo",
                   "valid_token_accuracy", "valid_onset_accuracy", "valid_active_units"]
        new = not (self.out / METRICS).exists()
        with open(self.out / METRICS, "a", newline="") as fh:
            log = csv.writer(fh)
            if new:
                log.writerow(columns)
            while self.epoch < c.max_epochs and self.bad_epochs < c.patience:
                self.model.train()
                order = torch.randperm(len(self.train_windows), generator=self.generator)
                bar = tqdm(range(0, len(order), c.batch_size), desc=f"vae epoch {self.epoch + 1}/{c.max_epochs}",
                           disable=not self.progress, leave=False)
                nlls, kls = [], []
                for i in bar:
                    nll, kl = self.train_step(self.train_windows[order[i : i + c.batch_size]].to(self.device))
                    nlls.append(nll)
                    kls.append(kl)
                    bar.set_postfix(nll=f"{nll:.2f}", kl=f"{kl:.2f}", beta=f"{self.beta():.3f}")
                self.epoch += 1
                val = evaluate_vae(self.model, self.valid_windows)
                val["loss"] = val["nll"] + c.kl_weight * val["kl"]  # what training minimises, at its final beta
                score = val["loss"] if c.select == "loss" else -val["token_accuracy"]  # lower is better
                improved = score < self.best - 1e-4
                if improved:
                    self.best, self.bad_epochs = score, 0
                    self.save_best(val)
                else:
                    self.bad_epochs += 1
                log.writerow([self.epoch, self.step, self.beta(), np.mean(nlls), np.mean(kls), val["nll"], val["kl"],
                              val["elbo"], val["token_accuracy"], val["onset_accuracy"], val["active_units"]])
                fh.flush()
                print(f"vae epoch {self.epoch}: train nll {np.mean(nlls):.3f} kl {np.mean(kls):.2f}  valid nll "
                      f"{val['nll']:.3f} kl {val['kl']:.2f}  reconstruction: tokens {val['token_accuracy']:.3f} "
                      f"onsets {val['onset_accuracy']:.3f}  active units {val['active_units']}"
                      + ("  *best" if improved else ""), flush=True)
                self.save_checkpoint()
        return json.loads((self.out / "config.json").read_text())["provenance"]["metrics"]

    # -- persistence
    def save_best(self, val: dict[str, float]) -> None:
        metrics = {f"valid_{k}": v for k, v in val.items()} | {
            "epoch": self.epoch, "train_windows": len(self.train_windows), "valid_windows": len(self.valid_windows)}
        prov = Provenance(kind=KIND, corpus=self.corpus_key or self.config.corpus, git_commit=git_commit(),
                          environment=environment(), created=now_iso(), metrics=metrics, command=command_line(),
                          extra={"vae_train": asdict(self.config), **self.extra})
        save_vae(self.model, self.out, prov)

    def save_checkpoint(self) -> None:
        state = {"config": asdict(self.config), "model": self.model.state_dict(),
                 "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                 "torch_rng": torch.get_rng_state(), "epoch": self.epoch, "step": self.step,
                 "best": self.best, "bad_epochs": self.bad_epochs}
        tmp = self.out / (CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.out / CHECKPOINT)

    def load_checkpoint(self) -> None:
        state = torch.load(self.out / CHECKPOINT, map_location=self.device, weights_only=False)
        diff = {k: (state["config"].get(k), v) for k, v in asdict(self.config).items()
                if state["config"].get(k) != v and k not in EXTENDABLE}
        if diff:
            raise ValueError(f"--resume with a different config than the checkpoint's: {diff} "
                             f"(only {', '.join(EXTENDABLE)} may change)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        self.epoch, self.step, self.best, self.bad_epochs = (state["epoch"], state["step"], state["best"],
                                                             state["bad_epochs"])
        if state["config"].get("select", "loss") != self.config.select:  # a new yardstick: its first epoch is best
            self.best, self.bad_epochs = math.inf, 0


def write_examples(out: Path, pieces: list[tuple[str, str, np.ndarray]], window: int) -> Path:
    """``examples.json``: the opening ``window`` steps of each (id, title, tokens) piece."""
    rows = [{"piece": pid, "title": title, "tokens": [int(t) for t in tokens[:window]]}
            for pid, title, tokens in pieces if len(tokens) >= window][:N_EXAMPLES]
    path = out / EXAMPLES
    path.write_text(json.dumps(rows, indent=1) + "\n")
    return path


def train_vae(config: VAETrainConfig, out: str | Path, device: str = "auto", resume: bool = False,
              progress: bool = True) -> dict[str, float]:
    """Train a VAE on the corpus's train split (held-out: its valid split) into ``out``."""
    out = Path(out)
    if not resume and (out / CHECKPOINT).exists():
        raise ValueError(f"{out} already holds a training run; pass --resume or choose another --out")
    if resume and not (out / CHECKPOINT).exists():
        raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {out}")
    config.validate()
    corpus = load_corpus(config.corpus, Vocabulary(config.min_pitch, config.max_pitch),
                         limit=config.corpus_limit, progress=progress)
    print(corpus.describe(), flush=True)
    counts: dict[str, int] = {}
    train = melody_windows(corpus.split("train"), config.window, config.hop, config.min_notes, counts)
    valid = melody_windows(corpus.split("valid"), config.window, config.hop, config.min_notes)
    print(f"vae: {len(train)} train windows, {len(valid)} valid windows of {config.window} steps (hop "
          f"{config.hop}); {counts['few_notes']} windows with under {config.min_notes} notes dropped, "
          f"{counts['short_pieces']} pieces shorter than a window, {counts['restruck']} re-struck", flush=True)
    trainer = VAETrainer(config, train, valid, out, resolve_device(device), corpus.key, progress,
                         extra={"windows": counts})
    if resume:
        trainer.load_checkpoint()
        print(f"vae: resumed at epoch {trainer.epoch}, step {trainer.step}", flush=True)
    test = [(corpus.pieces[i].id, corpus.pieces[i].title, corpus.pieces[i].tokens) for i in corpus.splits["test"]]
    best = trainer.run()
    write_examples(out, test, config.window)
    return best
