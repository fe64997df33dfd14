"""The model directory: ``config.json`` (model config, vocabulary, provenance) and
``model.safetensors``. Prior and tuned models share this format, so every command takes
either; ``default_prior_dir`` is the prior shipped in the package.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary, VocabularyMismatchError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


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
    meta = {
        "format_version": FORMAT_VERSION,
        "model": asdict(model.config),
        "vocabulary": model.vocab.to_dict(),
        "provenance": asdict(provenance or Provenance()),
    }
    return write_model_dir(directory, meta, model)


def write_model_dir(directory: str | Path, meta: dict[str, Any], model: torch.nn.Module) -> Path:
    """A model directory: ``meta`` as ``config.json`` and the weights as
    ``model.safetensors``, each via a temporary file and a rename."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
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
    model.source_dir = directory  # where it came from: provenance of what is built from it
    return model.to(device).eval()


def load_provenance(directory: str | Path) -> Provenance:
    return Provenance(**read_model_meta(directory).get("provenance", {}))


def default_prior_dir() -> Path:
    """The prior shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "data" / "prior"


SHIPPED_PRIOR = "shipped-prior"  # how provenance names the prior shipped in the package


def model_ref(directory: str | Path) -> str:
    """How provenance names a model directory: ``shipped-prior`` for the prior shipped in
    the package (so the name holds on every machine), else its absolute path."""
    path = Path(directory).resolve()
    return SHIPPED_PRIOR if path == default_prior_dir().resolve() else str(path)


def resolve_model_ref(ref: str | None, base: str | Path | None = None) -> Path | None:
    """The directory a provenance reference names (``shipped-prior``, an absolute path, or a
    path relative to ``base`` or the working directory); None when it names no directory."""
    if not ref:
        return None
    if ref == SHIPPED_PRIOR or Path(ref).name == "prior" and Path(ref).parent.name == "data":
        return default_prior_dir()
    for candidate in (Path(ref), *([Path(base) / ref] if base is not None else [])):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    return None


def reference_prior_dir(directory: str | Path | None) -> Path:
    """The prior a model's KL and log-likelihood are measured against: a prior is its own
    reference; a tuned model's is its KL reference (``extra.kl_reference``, else its parent
    model), followed until a prior. Raises when provenance names none that exists here."""
    path = Path(directory) if directory is not None else default_prior_dir()
    for _ in range(16):  # a chain of tuned models is short; a loop in provenance stops here
        prov = read_model_meta(path).get("provenance", {})
        if prov.get("kind", "prior") == "prior":
            return path
        ref = (prov.get("extra") or {}).get("kl_reference") or prov.get("parent_model")
        parent = resolve_model_ref(ref, path)
        if parent is None:
            raise FileNotFoundError(f"tuned model {path} names its prior {ref!r}, which is not a model "
                                    "directory here; pass --prior DIR")
        path = parent
    raise ValueError(f"{directory}: provenance chain of parent models is too long (a loop?)")


def training_corpus(directory: str | Path | None) -> str | None:
    """The corpus sources (``irish``, ``irish+bach``, ``midi:DIR``) the model's reference
    prior was trained on, from its provenance; None when it does not say."""
    prov = read_model_meta(reference_prior_dir(directory)).get("provenance", {})
    pretrain = (prov.get("extra") or {}).get("pretrain") or {}
    if pretrain.get("corpus"):
        return str(pretrain["corpus"])
    key = prov.get("corpus") or ""
    match = re.fullmatch(r"(.+)-p\d+-\d+-(?:all|n\d+)-v\d+", key)
    names = match.group(1).split("+") if match else []
    return "+".join(names) if names and all(n in ("irish", "bach") for n in names) else None


def check_vocab(directory: str | Path, vocab: Vocabulary = DEFAULT_VOCAB) -> None:
    """Raise ``VocabularyMismatchError`` unless the model directory uses ``vocab``."""
    meta = read_model_meta(directory)
    vocab.check_same(Vocabulary.from_dict(meta["vocabulary"]), what=f"model {directory}")
