"""Figures over training seeds: the runs of one configuration with different seeds, each
evaluated on the same footing, reported as the mean and the range over seeds.

A result is never read from one seed (docs/results.md): the result scripts take a model
path with ``{seed}`` in it and ``--seeds K`` (``runs/rl-tuner-s{seed}`` with ``--seeds 3``
names ``runs/rl-tuner-s0`` .. ``-s2``), evaluate every seed's model and print
``mean [min, max]`` per figure, and for a bar how many seeds clear it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

SEED_FIELD = "{seed}"


def expand_seeds(pattern: str, seeds: int) -> list[str]:
    """The model paths of ``seeds`` training seeds: ``pattern`` with ``{seed}`` replaced by
    0..seeds-1; a pattern without ``{seed}`` is one model whatever ``seeds`` says (a model
    shipped or trained once, shown beside the seeded ones: its figures say "of 1")."""
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if SEED_FIELD not in pattern:
        return [pattern]
    return [pattern.replace(SEED_FIELD, str(s)) for s in range(seeds)]


@dataclass(frozen=True)
class Spread:
    """One figure over seeds."""

    values: tuple[float, ...]  # one per seed, in seed order

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)

    def format(self, percent: bool = False, digits: int = 3) -> str:
        """``71.3% [69.9, 72.0]`` (percent) or ``0.358 [0.351, 0.366]``; one seed: the value."""
        if percent:
            one = f"{{:.{max(digits - 2, 1)}f}}"
            mean, low, high = (one.format(100 * v) for v in (self.mean, self.low, self.high))
            return f"{mean}%" if len(self.values) == 1 else f"{mean}% [{low}, {high}]"
        one = f"{{:.{digits}f}}"
        mean, low, high = (one.format(v) for v in (self.mean, self.low, self.high))
        return mean if len(self.values) == 1 else f"{mean} [{low}, {high}]"

    def cleared(self, bar: float, direction: str) -> int:
        """On how many seeds the figure clears ``bar`` (``direction``: ``>=`` or ``<=``)."""
        if direction not in (">=", "<="):
            raise ValueError(f"direction must be '>=' or '<=', got {direction!r}")
        return sum((v >= bar) if direction == ">=" else (v <= bar) for v in self.values)


def spreads(tables: Sequence[Mapping[str, object]], keys: Iterable[str]) -> dict[str, Spread]:
    """``key -> Spread`` over the seeds' evaluation tables (every table must have every key)."""
    if not tables:
        raise ValueError("no tables to summarise")
    return {key: Spread(tuple(float(t[key]) for t in tables)) for key in keys}
