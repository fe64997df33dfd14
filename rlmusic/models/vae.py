"""MelodyVAE: a variational autoencoder of short melody windows (2 or 4 bars).

Reads in the order of the architecture, as MusicVAE's flat model does for short
sequences: config -> bidirectional LSTM encoder -> q(z | x) = N(mu, sigma^2) -> LSTM
decoder whose initial state comes from z and which sees z beside every input token ->
head over the vocabulary; then greedy or sampled decoding, and the model directory
(``config.json`` with provenance + ``model.safetensors``, the format of
``rlmusic.models.checkpoint``). Tokens are the prior's (``rlmusic.music.representation``).
Training (KL annealing, free bits) lives in ``rlmusic.models.vae_train``; reading MIDI,
interpolating, sampling and varying in ``rlmusic.models.vae_explore``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from rlmusic.models.checkpoint import Provenance, read_model_meta, read_weights, save_model
from rlmusic.music.representation import Vocabulary, VocabularyMismatchError
from rlmusic.runtime import dataclass_from_dict

KIND = "vae"  # Provenance.kind of a VAE directory


@dataclass
class VAEConfig:
    """Everything needed to rebuild a MelodyVAE; saved in its model directory."""

    min_pitch: int = 48  # vocabulary: lowest MIDI pitch
    max_pitch: int = 84  # vocabulary: highest MIDI pitch (inclusive)
    window: int = 32  # steps (16th notes) of one melody window: 32 = 2 bars of 4/4, 64 = 4 bars
    embed_dim: int = 32  # token embedding width (encoder and decoder share it)
    encoder_hidden: int = 128  # LSTM units per direction of the bidirectional encoder
    latent_dim: int = 32  # size of z
    decoder_hidden: int = 256  # LSTM units per decoder layer
    decoder_layers: int = 1  # stacked decoder LSTM layers
    step_codes: int = 0  # width of a code of z for each step (a linear map per position) that the decoder reads beside z; 0: none

    @property
    def vocab(self) -> Vocabulary:
        return Vocabulary(self.min_pitch, self.max_pitch)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VAEConfig:
        return dataclass_from_dict(cls, data, "VAE config")

    def validate(self) -> None:
        self.vocab  # noqa: B018 - raises on a bad pitch range
        for f in fields(self):
            if f.name not in ("min_pitch", "max_pitch", "step_codes") and getattr(self, f.name) < 1:
                raise ValueError(f"{f.name} must be >= 1, got {getattr(self, f.name)}")
        if self.step_codes < 0:
            raise ValueError(f"step_codes must be >= 0, got {self.step_codes}")


class MelodyVAE(nn.Module):
    """tokens (B, T) -> q(z | tokens) -> z (B, Z) -> p(tokens | z), with T = ``config.window``."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.source_dir: Path | None = None  # the directory it was loaded from (load_vae)
        vocab = config.vocab
        e, h, z = config.embed_dim, config.encoder_hidden, config.latent_dim
        self.embedding = nn.Embedding(vocab.input_size, e)  # BOS included: the decoder's first input
        # -- encoder
        self.encoder = nn.LSTM(e, h, batch_first=True, bidirectional=True)
        self.to_mu = nn.Linear(2 * h, z)
        self.to_logvar = nn.Linear(2 * h, z)
        # -- decoder
        d, layers = config.decoder_hidden, config.decoder_layers
        self.to_state = nn.Linear(z, 2 * layers * d)  # z -> (h0, c0) of every decoder layer
        # step t's own code of z, so the decoder can read where z says each note is
        self.to_steps = nn.Linear(z, config.window * config.step_codes) if config.step_codes else None
        self.decoder = nn.LSTM(e + z + config.step_codes, d, num_layers=layers, batch_first=True)
        self.head = nn.Linear(d, vocab.size)

    @property
    def vocab(self) -> Vocabulary:
        return self.config.vocab

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    # -- encoder
    def encode(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, T) -> mu (B, Z), logvar (B, Z) of q(z | tokens)."""
        x = self.embedding(tokens)  # (B, T, E)
        _, (h, _) = self.encoder(x)  # h: (2, B, H), forward and backward final states
        summary = torch.cat([h[0], h[1]], dim=-1)  # (B, 2H)
        return self.to_mu(summary), self.to_logvar(summary).clamp(-10.0, 10.0)

    @staticmethod
    def reparameterise(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """z = mu + sigma * eps, eps ~ N(0, I): (B, Z)."""
        eps = torch.randn(mu.shape, generator=generator, device="cpu").to(mu.device)
        return mu + torch.exp(0.5 * logvar) * eps

    @staticmethod
    def kl_per_dim(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q(z | x) || N(0, I)) of each latent dimension: (B, Z) nats."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)

    # -- decoder
    def initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, Z) -> (h0, c0), each (layers, B, D)."""
        layers, d = self.config.decoder_layers, self.config.decoder_hidden
        s = torch.tanh(self.to_state(z)).view(z.shape[0], 2, layers, d)  # (B, 2, L, D)
        return s[:, 0].transpose(0, 1).contiguous(), s[:, 1].transpose(0, 1).contiguous()

    def conditioning(self, z: torch.Tensor, steps: int) -> torch.Tensor:
        """What the decoder reads beside each input token: z, and step t's code of z when
        ``step_codes`` -> (B, steps, Z [+ C])."""
        cond = z[:, None].expand(-1, steps, -1)
        if self.to_steps is None:
            return cond
        codes = self.to_steps(z).view(z.shape[0], self.config.window, self.config.step_codes)
        if steps > self.config.window:
            raise ValueError(f"a VAE with step codes decodes at most its window of {self.config.window} steps")
        return torch.cat([cond, codes[:, :steps]], dim=-1)

    def decode_logits(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: z (B, Z), inputs (B, T) (BOS then the previous tokens) -> logits (B, T, V)."""
        x = self.embedding(inputs)  # (B, T, E)
        x = torch.cat([x, self.conditioning(z, x.shape[1])], dim=-1)  # (B, T, E + Z [+ C])
        out, _ = self.decoder(x, self.initial_state(z))  # (B, T, D)
        return self.head(out)  # (B, T, V)

    def with_bos(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) tokens -> (B, T) decoder inputs: BOS then tokens[:, :-1]."""
        bos = torch.full_like(tokens[:, :1], self.vocab.BOS)
        return torch.cat([bos, tokens[:, :-1]], dim=1)

    def forward(self, tokens: torch.Tensor, sample: bool = True):
        """tokens (B, T) -> logits (B, T, V), mu (B, Z), logvar (B, Z) (z sampled, or mu)."""
        mu, logvar = self.encode(tokens)
        z = self.reparameterise(mu, logvar) if sample else mu
        return self.decode_logits(z, self.with_bos(tokens)), mu, logvar

    @torch.no_grad()
    def decode(self, z: torch.Tensor, temperature: float = 0.0,
               generator: torch.Generator | None = None, steps: int | None = None) -> torch.Tensor:
        """z (B, Z) -> tokens (B, steps) int64 on CPU, free-running: each step's output is
        the next input. ``temperature`` 0 decodes greedily (argmax), else samples."""
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        steps = steps or self.config.window
        was_training = self.training
        self.eval()
        z = z.to(self.device)
        n = z.shape[0]
        state = self.initial_state(z)
        cond = self.conditioning(z, steps)  # (B, steps, Z [+ C])
        token = torch.full((n,), self.vocab.BOS, dtype=torch.long, device=self.device)
        out = torch.empty(n, steps, dtype=torch.long)
        for t in range(steps):
            x = torch.cat([self.embedding(token), cond[:, t]], dim=-1)[:, None]  # (B, 1, E + Z [+ C])
            h, state = self.decoder(x, state)
            logits = self.head(h[:, 0]).float()  # (B, V)
            if temperature == 0:
                token = logits.argmax(-1)
            else:
                probs = F.softmax(logits / temperature, dim=-1).cpu()
                token = torch.multinomial(probs, 1, generator=generator)[:, 0].to(self.device)
            out[:, t] = token.cpu()
        self.train(was_training)
        return out

    @torch.no_grad()
    def posterior_mean(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (B, T) -> mu (B, Z) (the point of the latent space a melody is at)."""
        was_training = self.training
        self.eval()
        mu, _ = self.encode(tokens.to(self.device))
        self.train(was_training)
        return mu


# --------------------------------------------------------------------------- interpolation


def slerp(a: torch.Tensor, b: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (MusicVAE) between a (Z,) and b (Z,) -> (len(alphas), Z);
    linear when the two are (anti)parallel. Endpoints are exactly a and b."""
    cos = torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    alphas = alphas[:, None]  # (N, 1)
    if omega.abs() < 1e-4 or (math.pi - omega).abs() < 1e-4:
        out = (1 - alphas) * a + alphas * b
    else:
        out = (torch.sin((1 - alphas) * omega) * a + torch.sin(alphas * omega) * b) / torch.sin(omega)
    out[0], out[-1] = a, b
    return out


# --------------------------------------------------------------------------- the model directory


def save_vae(model: MelodyVAE, directory: str | Path, provenance: Provenance | None = None) -> Path:
    """``config.json`` (VAE config, vocabulary, provenance of kind ``vae``) + weights."""
    provenance = provenance or Provenance(kind=KIND)
    if provenance.kind != KIND:
        raise ValueError(f"a VAE's provenance kind is {KIND!r}, got {provenance.kind!r}")
    return save_model(model, directory, provenance)  # the same two files as a melody model


SHIPPED_VAES = {"2bar": "vae", "4bar": "vae-4bar"}  # --model name -> folder under rlmusic/data


def default_vae_dir(model: str = "2bar") -> Path:
    """A VAE shipped inside the package: ``2bar`` (the default) or ``4bar``."""
    if model not in SHIPPED_VAES:
        raise ValueError(f"unknown shipped VAE {model!r}; valid: {', '.join(SHIPPED_VAES)}")
    return Path(__file__).resolve().parent.parent / "data" / SHIPPED_VAES[model]


SHIPPED_VAE = "shipped-vae"  # how provenance and manifests name the 2-bar VAE shipped in the package


def vae_ref(directory: str | Path | None) -> str:
    """``shipped-vae`` (``shipped-vae-4bar``) for a VAE in the package (None: the 2-bar
    one), else the absolute path."""
    if directory is None:
        return SHIPPED_VAE
    for name in SHIPPED_VAES:
        if Path(directory).resolve() == default_vae_dir(name).resolve():
            return SHIPPED_VAE if name == "2bar" else f"{SHIPPED_VAE}-{name}"
    return str(Path(directory).resolve())


def load_vae(directory: str | Path | None = None, device: str | torch.device = "cpu") -> MelodyVAE:
    """Load a VAE directory (default: the shipped VAE) in eval mode; a melody model's
    directory (or anything else) raises naming what it is."""
    directory = Path(directory) if directory is not None else default_vae_dir()
    meta = read_model_meta(directory)
    kind = (meta.get("provenance") or {}).get("kind")
    if kind != KIND:
        raise ValueError(f"{directory} is not a VAE directory (its provenance kind is {kind!r}, "
                         f"not {KIND!r}); train one with `rlmusic vae train`")
    config = VAEConfig.from_dict(meta["model"])
    if Vocabulary.from_dict(meta["vocabulary"]) != config.vocab:
        raise VocabularyMismatchError(f"{directory}: vocabulary and VAE config disagree")
    model = MelodyVAE(config)
    try:
        model.load_state_dict(read_weights(directory, meta))  # checksum and finite values checked
    except RuntimeError as exc:
        raise ValueError(f"{directory}: weights do not match config.json: {exc}") from exc
    model.source_dir = directory
    return model.to(device).eval()
