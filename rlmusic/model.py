"""MelodyLSTM: the melody prior (and, after tuning, the tuned model).

Reads in the order of the architecture: config -> embedding -> stacked LSTM -> head,
then incremental stepping, batched sampling, and the model directory format
(``config.json`` with vocabulary and provenance, ``model.safetensors``).
Prior and tuned models share this format, so every command takes either.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from rlmusic.representation import DEFAULT_VOCAB, Vocabulary, VocabularyMismatchError

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (num_layers, B, hidden_size)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


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
    ) -> torch.Tensor:
        """Sample ``n`` melodies of ``steps`` tokens in one batch -> (n, steps) int64 on CPU.

        ``primer`` tokens are fed first and kept as the melody's opening; sampling uses
        ``generator`` (seeded by the caller) so the same seed gives the same melodies.
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
        for t in range(steps):
            logits, state = self.step(token, state)  # (n, V)
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
        return out


# --------------------------------------------------------------------------- model directory


@dataclass
class Provenance:
    """Where a model came from. Saved in config.json beside the model config."""

    kind: str = "prior"  # "prior" or "tuned"
    corpus: str | None = None  # corpus sources and their cache key
    parent_model: str | None = None  # directory (or name) of the model this one started from
    reward_model: str | None = None  # reward model directory used in tuning
    ratings: list[int] | None = None  # rating ids the reward model was fitted on
    git_commit: str | None = None  # commit of the code that produced this model
    created: str | None = None  # ISO time
    metrics: dict[str, float] = field(default_factory=dict)  # e.g. valid NLL, accuracy
    command: str | None = None  # command line that produced the model
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. training config


def save_model(model: MelodyLSTM, directory: str | Path, provenance: Provenance | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (atomically, via temp files)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    meta = {
        "format_version": FORMAT_VERSION,
        "model": asdict(model.config),
        "vocabulary": model.vocab.to_dict(),
        "provenance": asdict(provenance or Provenance()),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp_w, tmp_c = directory / (WEIGHTS_FILE + ".tmp"), directory / (CONFIG_FILE + ".tmp")
    save_file(tensors, str(tmp_w))
    tmp_c.write_text(json.dumps(meta, indent=2) + "\n")
    tmp_w.replace(directory / WEIGHTS_FILE)
    tmp_c.replace(directory / CONFIG_FILE)
    return directory


def read_model_meta(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory (raises if it is not one)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a model directory (no {CONFIG_FILE})")
    return json.loads(path.read_text())


def load_model(
    directory: str | Path | None = None,
    device: str | torch.device = "cpu",
    vocab: Vocabulary | None = None,
) -> MelodyLSTM:
    """Load a model directory (default: the shipped prior), in eval mode.

    ``vocab``: when given, a model with another vocabulary raises ``VocabularyMismatchError``.
    """
    from safetensors.torch import load_file

    directory = Path(directory) if directory is not None else default_prior_dir()
    meta = read_model_meta(directory)
    config = ModelConfig.from_dict(meta["model"])
    saved_vocab = Vocabulary.from_dict(meta.get("vocabulary", asdict(config)))
    if saved_vocab != config.vocab:
        raise VocabularyMismatchError(f"{directory}: vocabulary and model config disagree")
    if vocab is not None:
        vocab.check_same(config.vocab, what=f"model {directory}")
    model = MelodyLSTM(config)
    weights = load_file(str(Path(directory) / WEIGHTS_FILE))
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise VocabularyMismatchError(f"{directory}: weights do not match config.json: {exc}") from exc
    return model.to(device).eval()


def load_provenance(directory: str | Path) -> Provenance:
    return Provenance(**read_model_meta(directory).get("provenance", {}))


def default_prior_dir() -> Path:
    """The prior shipped inside the package."""
    return Path(__file__).resolve().parent / "data" / "prior"


def check_vocab(directory: str | Path, vocab: Vocabulary = DEFAULT_VOCAB) -> None:
    """Raise ``VocabularyMismatchError`` unless the model directory uses ``vocab``."""
    meta = read_model_meta(directory)
    vocab.check_same(Vocabulary.from_dict(meta["vocabulary"]), what=f"model {directory}")
