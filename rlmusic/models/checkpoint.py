"""The model directory: ``config.json`` (model config, vocabulary, provenance) and
``model.safetensors``. Prior and tuned models share this format, so every command takes
either; ``default_prior_dir`` is the prior shipped in the package.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rlmusic.fileio import write_atomic, write_json
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
    environment: dict[str, Any] = field(default_factory=dict)  # python, packages, CPU, torch build (rlmusic.environment)


def save_model(model: MelodyLSTM, directory: str | Path, provenance: Provenance | None = None) -> Path:
    """Write a MelodyLSTM's model directory (``write_model_dir``)."""
    meta = {
        "format_version": FORMAT_VERSION,
        "model": asdict(model.config),
        "vocabulary": model.vocab.to_dict(),
        "provenance": asdict(provenance or Provenance()),
    }
    return write_model_dir(directory, meta, model)


def write_model_dir(directory: str | Path, meta: dict[str, Any], model: torch.nn.Module) -> Path:
    """A model directory: the weights as ``model.safetensors`` then ``meta`` as
    ``config.json`` (each atomically, flushed to disk). ``config.json`` is written last and
    carries the SHA-256 of the weights (``weights_sha256``), so a crash between the two
    files (new weights, old config) is caught by ``load_model``."""
    from safetensors.torch import save

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save(tensors)
    write_atomic(directory / WEIGHTS_FILE, weights)
    write_json(directory / CONFIG_FILE, {**meta, "weights_sha256": hashlib.sha256(weights).hexdigest()})
    return directory


def shipped_models() -> dict[str, Path]:
    """The models shipped in the package, by name: ``prior`` and each tuned model of
    ``rlmusic/data/tuned/NAME`` (e.g. ``rl-tuner``, ``structure``)."""
    data = Path(__file__).resolve().parent.parent / "data"
    tuned = sorted(d for d in (data / "tuned").glob("*") if (d / CONFIG_FILE).is_file())
    return {"prior": data / "prior", **{d.name: d for d in tuned}}


def model_path(ref: str | Path | None) -> Path:
    """The directory of a model: a path, or the name of a shipped model when no such
    folder exists here (``rlmusic generate --model rl-tuner``); None: the shipped prior."""
    if ref is None:
        return default_prior_dir()
    path = Path(ref)
    if not path.exists() and str(ref) in shipped_models():
        return shipped_models()[str(ref)]
    return path


def read_model_meta(directory: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model directory; ``FileNotFoundError`` if it is not
    one, ``ValueError`` if the file is damaged or from a newer rlmusic."""
    directory = model_path(directory)
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a model directory (no {CONFIG_FILE}) nor the name of a "
                                f"shipped model ({', '.join(shipped_models())})")
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is damaged (not valid JSON: {exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is damaged (not a JSON object)")
    version = meta.get("format_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"{path}: format_version {version!r} is not a positive integer")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version} is newer than this rlmusic reads "
                         f"({FORMAT_VERSION}); upgrade rlmusic to load it")
    return meta


def read_weights(directory: str | Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors``, checked: its SHA-256 against ``config.json``
    (when recorded: models saved before it was are not), parseable, all values finite."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(directory) / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: {WEIGHTS_FILE} is missing")
    data = path.read_bytes()
    expected = meta.get("weights_sha256")
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError(f"{path} is damaged or was replaced: its SHA-256 differs from the one "
                         f"recorded in {CONFIG_FILE}")
    try:
        weights = load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path} is damaged (not a safetensors file: {exc})") from None
    for name, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"{path}: tensor {name!r} holds NaN or infinite values")
    return weights


def load_model(
    directory: str | Path | None = None,
    device: str | torch.device = "cpu",
    vocab: Vocabulary | None = None,
) -> MelodyLSTM:
    """Load a model directory (default: the shipped prior), in eval mode.

    ``vocab``: when given, a model with another vocabulary raises ``VocabularyMismatchError``.
    Damaged files (a checksum that differs, NaN weights, unreadable JSON, a format from a
    newer rlmusic) raise ``ValueError`` naming the file.
    """
    directory = model_path(directory)
    meta = read_model_meta(directory)
    if not isinstance(meta.get("model"), dict):
        raise ValueError(f"{directory / CONFIG_FILE} is damaged (no \"model\" config)")
    config = ModelConfig.from_dict(meta["model"])
    saved_vocab = Vocabulary.from_dict(meta.get("vocabulary", asdict(config)))
    if saved_vocab != config.vocab:
        raise VocabularyMismatchError(f"{directory}: vocabulary and model config disagree")
    if vocab is not None:
        vocab.check_same(config.vocab, what=f"model {directory}")
    model = MelodyLSTM(config)
    weights = read_weights(directory, meta)
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
