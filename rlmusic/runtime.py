"""Process-wide helpers: RLMUSIC_HOME, device choice, seeds, provenance stamps."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

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
