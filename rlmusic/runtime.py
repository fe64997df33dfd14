"""Process-wide helpers: RLMUSIC_HOME, device choice, seeds, provenance stamps."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


def home() -> Path:
    """``RLMUSIC_HOME`` (default ``~/.rlmusic``): corpus caches, models, clips, audio."""
    path = Path(os.environ.get("RLMUSIC_HOME", Path.home() / ".rlmusic")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_device(device: str = "auto"):
    """``auto`` -> CUDA when present, else CPU; anything else is passed to torch."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available")
    return dev


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def git_commit() -> str | None:
    """The commit of the source tree rlmusic runs from (``+dirty`` when modified)."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def command_line() -> str:
    return " ".join(["rlmusic", *sys.argv[1:]]) if sys.argv else "rlmusic"


def json_safe(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays made plain and non-finite floats made None
    (JSON has no NaN), for ``json.dumps``."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.integer, np.floating)):
        return json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def field_docs(cls: type) -> dict[str, str]:
    """A dataclass's field -> its one-line documentation: the comment where it is declared
    (``name: type = default  # what it does``)."""
    import inspect
    import re

    source = inspect.getsource(cls)
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"^    (\w+): [^\n#]*#\s*([^\n]*)$", source, flags=re.MULTILINE)}


def check_field_types(obj: Any, what: str) -> None:
    """Raise ``ValueError`` naming the field and value when a field of the dataclass ``obj``
    does not hold its declared type: ``bool``; ``int`` (a whole number, not a bool);
    ``float`` (a finite number); ``str``; or any of them ``| None``. A config read from
    TOML is checked here before anything runs on it (NaN, ``"7"`` for 7, ``true`` for 1)."""
    import dataclasses
    import numbers

    for f in dataclasses.fields(obj):
        declared = str(f.type).replace(" ", "")
        optional = declared.endswith("|None")
        base = declared.removesuffix("|None")
        value = getattr(obj, f.name)
        if value is None and optional:
            continue
        if base == "bool":
            ok = isinstance(value, bool)
        elif base == "int":
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        elif base == "float":
            ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
                  and math.isfinite(float(value)))
        elif base == "str":
            ok = isinstance(value, str)
        else:
            continue  # tables and other types are checked by their owners
        if not ok:
            kind = {"bool": "true or false", "int": "a whole number", "float": "a finite number",
                    "str": "a string"}[base]
            raise ValueError(f"{what} {f.name} must be {kind}, got {value!r}")


def set_threads(threads: int | None) -> None:
    """Torch's CPU threads for this process. ``None`` keeps torch's choice. On a shared
    machine one thread is the safe choice (two spinning OpenMP threads against other jobs
    made small LSTM steps 10-100x slower: docs/benchmarks.md, "Threads")."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def read_table(path: str | Path) -> dict[str, Any]:
    """The keys of a TOML (or ``.json``) config file; a clear error when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    text = path.read_text()
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from exc


def dataclass_from_dict(cls: type, data: dict[str, Any], what: str):
    """``cls(**data)`` for a config dataclass; unknown keys raise naming them and the valid
    ones (``what`` says whose keys, e.g. "VAE config")."""
    from dataclasses import fields

    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {what} keys {unknown}; valid: {sorted(known)}")
    return cls(**dict(data))
