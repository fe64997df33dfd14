"""What a result was computed with: the installed packages against the lock
(``constraints.txt``, written by ``make lock``), the interpreter, the CPU and torch's build.

``rlmusic --version`` prints it; every model's provenance records ``environment()``, so a
figure that does not repeat on another machine can be traced to what differed
(docs/reliability.md, "What repeats")."""

from __future__ import annotations

import platform
import re
from importlib.metadata import PackageNotFoundError, distributions
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

LOCK_FILE = Path(__file__).resolve().parent.parent / "constraints.txt"  # in a checkout

# The packages whose versions can change a training or sampling result, in the order
# ``--version`` lists them (the rest of the lock is compared, not listed).
KEY_PACKAGES = ("torch", "numpy", "scipy", "gymnasium", "stable-baselines3", "sb3-contrib", "music21",
                "pretty_midi", "sqlalchemy", "alembic", "streamlit", "ray")


def canonical(name: str) -> str:
    """A distribution name as PEP 503 compares it (``SQLAlchemy`` = ``sqlalchemy``,
    ``sb3_contrib`` = ``sb3-contrib``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public_version(version: str) -> str:
    """A version without its local label: ``2.13.0+cpu`` -> ``2.13.0`` (the lock pins the
    public version, so the CPU and CUDA builds of one torch both match it)."""
    return version.split("+", 1)[0]


def installed_versions() -> dict[str, str]:
    """Every installed distribution: canonical name -> version."""
    found: dict[str, str] = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(canonical(name), dist.version)
    return found


def read_lock(path: str | Path = LOCK_FILE) -> dict[str, str]:
    """The lock's pins: canonical name -> version (``name==version`` lines; comments and
    blank lines skipped). Raises ``ValueError`` naming the line for anything else."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise ValueError(f"{path}:{number}: expected NAME==VERSION, got {raw!r}")
        pins[canonical(name.strip())] = version.strip()
    return pins


def lock_differences(installed: dict[str, str] | None = None,
                     path: str | Path = LOCK_FILE) -> list[tuple[str, str | None, str]]:
    """(name, installed version or None, locked version) for every pin the environment
    does not meet; [] when it matches the lock."""
    installed = installed_versions() if installed is None else installed
    return [(name, installed.get(name), locked) for name, locked in sorted(read_lock(path).items())
            if name not in installed or public_version(installed[name]) != public_version(locked)]


def lock_status(path: str | Path = LOCK_FILE) -> str:
    """One line: does this environment match the lock?"""
    path = Path(path)
    if not path.is_file():
        return "lock: no constraints.txt beside the package (installed outside a checkout)"
    n = len(read_lock(path))
    diff = lock_differences(path=path)
    if not diff:
        return f"lock: matches constraints.txt ({n} packages)"
    shown = ", ".join(f"{name} {have or 'missing'} (locked {want})" for name, have, want in diff[:5])
    more = f" and {len(diff) - 5} more" if len(diff) > 5 else ""
    return f"lock: {len(diff)} of {n} packages differ from constraints.txt: {shown}{more}; run make setup"


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """What a model's provenance records about the machine and packages it came from."""
    import torch

    installed = installed_versions()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),  # the SIMD kernels torch runs
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "packages": {name: installed.get(canonical(name)) for name in KEY_PACKAGES},
        "lock_matches": not lock_differences(installed) if LOCK_FILE.is_file() else None,
    }


def version_report() -> list[str]:
    """``rlmusic --version``: the package, the key packages, the machine, the lock."""
    try:
        own = dist_version("rlmusic")
    except PackageNotFoundError:  # running from a source tree that is not installed
        own = "unknown (not installed)"
    installed = installed_versions()
    lines = [f"rlmusic {own}", f"python {platform.python_version()} ({platform.platform()})"]
    lines += [f"{name} {installed.get(canonical(name), 'not installed')}" for name in KEY_PACKAGES]
    import torch

    lines.append(f"cpu {cpu_name()} (torch kernels: {torch.backends.cpu.get_cpu_capability()})")
    lines.append(lock_status())
    return lines
