"""The harmony model directory: ``config.json`` (``kind``, model config, vocabulary,
provenance) and ``model.safetensors``, as the melody models keep theirs
(``rlmusic.models.checkpoint``); ``default_harmony_dir`` is the model shipped in the
package (``rlmusic/data/harmony``).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from rlmusic.harmony.feedforward import FeedforwardConfig, FeedforwardHarmonizer
from rlmusic.harmony.masked import MaskedConfig, MaskedHarmonizer
from rlmusic.models.checkpoint import Provenance, read_model_meta, read_weights, write_model_dir
from rlmusic.music.representation import Vocabulary, VocabularyMismatchError

FORMAT_VERSION = 1
KINDS = {"masked": (MaskedConfig, MaskedHarmonizer), "feedforward": (FeedforwardConfig, FeedforwardHarmonizer)}
SHIPPED_HARMONY = "shipped-harmony"  # how provenance names the model shipped in the package

Harmonizer = MaskedHarmonizer | FeedforwardHarmonizer


def default_harmony_dir() -> Path:
    """The harmony model shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "data" / "harmony"


def build_harmonizer(kind: str, config: dict[str, Any] | None = None) -> Harmonizer:
    """A fresh model of ``kind`` (``masked`` or ``feedforward``) from config keys."""
    if kind not in KINDS:
        raise ValueError(f"unknown harmony model kind {kind!r}; valid: {', '.join(KINDS)}")
    config_cls, model_cls = KINDS[kind]
    return model_cls(config_cls.from_dict(config or {}))


def save_harmonizer(model: Harmonizer, directory: str | Path, provenance: Provenance | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (atomically, via temp files)."""
    meta = {"format_version": FORMAT_VERSION, "kind": model.kind, "model": asdict(model.config),
            "vocabulary": model.vocab.to_dict(), "provenance": asdict(provenance or Provenance(kind="harmony"))}
    return write_model_dir(directory, meta, model)


def read_harmony_meta(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a harmony model directory (raises if it is not one)."""
    meta = read_model_meta(directory)  # missing, damaged or newer config.json: one line naming it
    if meta.get("kind") not in KINDS:
        raise ValueError(f"{directory} is not a harmony model (kind {meta.get('kind')!r}; "
                         f"valid: {', '.join(KINDS)}); melody models go to generate, tune and revise")
    return meta


def load_harmonizer(directory: str | Path | None = None, device: str | torch.device = "cpu") -> Harmonizer:
    """Load a harmony model directory (default: the shipped one), in eval mode."""
    directory = Path(directory) if directory is not None else default_harmony_dir()
    meta = read_harmony_meta(directory)
    model = build_harmonizer(meta["kind"], meta["model"])
    if Vocabulary.from_dict(meta["vocabulary"]) != model.vocab:
        raise VocabularyMismatchError(f"{directory}: vocabulary and model config disagree")
    try:
        model.load_state_dict(read_weights(directory, meta))  # checksum and finite values checked
    except RuntimeError as exc:
        raise VocabularyMismatchError(f"{directory}: weights do not match config.json: {exc}") from exc
    model.source_dir = directory
    return model.to(device).eval()


def harmony_ref(directory: str | Path) -> str:
    """How provenance and the database name a harmony model: ``shipped-harmony`` for the
    shipped one, else its absolute path."""
    path = Path(directory).resolve()
    return SHIPPED_HARMONY if path == default_harmony_dir().resolve() else str(path)
