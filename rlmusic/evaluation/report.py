"""Printing, comparing and plotting evaluation tables."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------- printing, plotting


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def format_table(a: dict, b: dict | None = None, names: tuple[str, str] = ("a", "b")) -> str:
    keys = list(a) + [k for k in (b or {}) if k not in a]
    width = max(len(k) for k in keys)
    head = f"{'metric'.ljust(width)}  {names[0]:>12}"
    if b is not None:
        head += f"  {names[1]:>12}  {'diff (b-a)':>12}"
    lines = [head, "-" * len(head)]
    for k in keys:
        va, line = a.get(k, math.nan), f"{k.ljust(width)}  {_fmt(a.get(k, math.nan)):>12}"
        if b is not None:
            vb = b.get(k, math.nan)
            line += f"  {_fmt(vb):>12}  {_fmt(_diff(va, vb)):>12}"
        lines.append(line)
    return "\n".join(lines)


def _diff(a: Any, b: Any) -> Any:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return b - a
    return math.nan


def diff_tables(a: dict, b: dict) -> dict:
    return {k: _diff(a[k], b[k]) for k in a if k in b and isinstance(a[k], (int, float))}


def plot_tables(path: str | Path, a: dict, b: dict | None = None, names=("a", "b")) -> Path:
    """Bar chart of the figures in [-1, 1] (shares, structure, originality, autocorrelation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in a if isinstance(a[k], float) and math.isfinite(a[k]) and -1 <= a[k] <= 1
            and k not in ("log_p_prior_per_step", "kl_per_step", "kl_per_note", "copied_notes")]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(keys)), 4.5))
    w = 0.4 if b is not None else 0.8
    ax.bar(x - (w / 2 if b is not None else 0), [a[k] for k in keys], w, label=names[0])
    if b is not None:
        ax.bar(x + w / 2, [b.get(k, math.nan) for k in keys], w, label=names[1])
    ax.set_xticks(x, keys, rotation=60, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.5)
    title = f"n={a.get('n')}, steps={a.get('steps')}"
    for k in ("log_p_prior_per_step", "kl_per_step", "kl_per_note"):
        if k in a:
            title += f"   {k}: " + " / ".join(_fmt(t.get(k, math.nan)) for t in ([a, b] if b else [a]))
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
