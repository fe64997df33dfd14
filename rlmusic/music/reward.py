"""The rule registry, ``TheoryConfig`` and the batched per-step reward.

Reads in this order: ``Rule`` and ``RULES`` (every rule by name; an unknown name raises
listing the valid ones) -> ``TheoryConfig`` (rule weights and the settings the rules
read; TOML ``[theory]`` table) -> ``step_reward_terms`` / ``step_rewards`` (B next
tokens after B histories) and ``melody_step_terms`` (every step of whole melodies).
"""

from __future__ import annotations

import math
import numbers
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from rlmusic.music.context import Key, MelodyView, RuleContext
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary
from rlmusic.music.rules import (
    rule_autocorrelation,
    rule_bar_repetition,
    rule_cadence,
    rule_high_low_unique,
    rule_in_key,
    rule_leap_up_back,
    rule_motif,
    rule_non_repeating,
    rule_preferred_intervals,
    rule_repeated_motif,
    rule_structure,
    rule_tonic_start,
)

# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Rule:
    """A named rule: ``fn(batch, ctx) -> (B,)`` scores the last step of each melody."""

    name: str
    fn: Callable[[MelodyView, RuleContext], np.ndarray]
    default_weight: float  # RL Tuner's amount for its rules; 0 (off) for structure rules
    summary: str

    def step(self, history: Sequence[int], next_token: int, ctx: RuleContext | None = None) -> float:
        """Reward of ``next_token`` after ``history`` (one melody)."""
        ctx = ctx or RuleContext()
        seq = np.asarray([*list(np.asarray(history).tolist()), int(next_token)], dtype=np.int64)
        return float(self.fn(MelodyView(seq[None, :], ctx), ctx)[0])

    def melody(self, tokens: Sequence[int], ctx: RuleContext | None = None) -> np.ndarray:
        """(T,) this rule's reward at every step of one melody."""
        ctx = ctx or RuleContext()
        arr = np.asarray(tokens, dtype=np.int64)
        return melody_step_terms(arr[None, :], ctx, rules=[self.name])[self.name][0]


RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("in_key", rule_in_key, 1.0, "-1 per note outside the key (RL Tuner reward_key)"),
        Rule("tonic_start", rule_tonic_start, 3.0, "+1 when the first note is the tonic"),
        Rule("non_repeating", rule_non_repeating, 100.0, "-1 per note repeated too often in a row"),
        Rule("motif", rule_motif, 3.0, "+1 (+0.1 per extra pitch) when the last 8 steps form a motif"),
        Rule("repeated_motif", rule_repeated_motif, 4.0, "+1 (+0.25 per extra pitch) for a motif heard before"),
        Rule("preferred_intervals", rule_preferred_intervals, 5.0, "small steps and consonant leaps good, sevenths and > octave bad"),
        Rule("leap_up_back", rule_leap_up_back, 5.0, "+1 leap resolved by a step back, -1 two leaps one way"),
        Rule("high_low_unique", rule_high_low_unique, 3.0, "last step: +1 unique highest, +1 unique lowest note"),
        Rule("autocorrelation", rule_autocorrelation, 3.0, "-sum |r(lag)| over lags 1-3 above 0.15"),
        Rule("bar_repetition", rule_bar_repetition, 0.0, "bar end: best similarity to an earlier bar"),
        Rule("cadence", rule_cadence, 0.0, "phrase end: stable degree and long note"),
        Rule("structure", rule_structure, 0.0, "last step: structure score in [0, 1]"),
    )
}
RL_TUNER_RULES = ("in_key", "tonic_start", "non_repeating", "motif", "repeated_motif",
                  "preferred_intervals", "leap_up_back", "high_low_unique", "autocorrelation")


def get_rule(name: str) -> Rule:
    """The rule called ``name``; raises ``ValueError`` listing the valid names."""
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown theory rule {name!r}; valid: {', '.join(RULES)}") from None


def _check_rules(names: Sequence[str]) -> list[str]:
    return [get_rule(n).name for n in names]


# --------------------------------------------------------------------------- reward config


@dataclass
class TheoryConfig:
    """Weights of the theory rules and the settings the rules read.

    A TOML table gives any subset of the fields below and of the rule names (weights)::

        [theory]
        key = "A minor"
        motif = 0.0          # switch a rule off
        preferred_intervals = 2.5
    """

    weights: dict[str, float] = field(default_factory=lambda: {n: r.default_weight for n, r in RULES.items()})  # rule name -> weight >= 0
    key: str = "C major"  # "<tonic> <mode>", mode in MODES
    motif_length: int = 8  # steps of a motif window
    max_repeats: int = 4  # see RuleContext
    max_repeats_with_breaks: int = 6  # see RuleContext
    leap: int = 7  # semitones of a leap
    step_back_max: int = 4  # semitones of the step that resolves a leap
    phrase_bars: int | None = None  # bars per phrase (None: 2 up to 64 steps, else 4)

    def __post_init__(self) -> None:
        full = {n: r.default_weight for n, r in RULES.items()}
        for name, w in self.weights.items():
            get_rule(name)
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w):
                raise ValueError(f"weight of rule {name!r} must be a finite number, got {w!r}")
            if w < 0:
                raise ValueError(
                    f"weight of rule {name!r} must be >= 0 (rules carry their own sign), got {w}"
                )
            full[name] = float(w)
        self.weights = full
        for name in ("motif_length", "max_repeats", "max_repeats_with_breaks", "leap", "step_back_max",
                     "phrase_bars"):
            value = getattr(self, name)
            if not (value is None and name == "phrase_bars") and (
                    isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise ValueError(f"theory setting {name} must be a whole number, got {value!r}")
        self._key = Key.parse(self.key)
        self.context()  # validates the settings

    @classmethod
    def valid_keys(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "weights"] + list(RULES)

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> TheoryConfig:
        """Flat mapping of settings and rule weights (``{"key": "A minor", "motif": 0.5}``);
        a nested ``weights`` table is accepted too. Unknown keys raise listing the valid ones."""
        table = dict(table)
        weights = dict(table.pop("weights", {}) or {})
        settings = {f.name for f in fields(cls)} - {"weights"}
        kwargs: dict[str, Any] = {}
        for k, v in table.items():
            if k in settings:
                kwargs[k] = v
            elif k in RULES:
                weights[k] = v
            else:
                raise ValueError(f"unknown theory config key {k!r}; valid: {', '.join(cls.valid_keys())}")
        return cls(weights=weights, **kwargs)

    @classmethod
    def from_toml(cls, path: str | Path, table: str | None = "theory") -> TheoryConfig:
        """Read ``[theory]`` (or the dotted ``table``, e.g. ``"reward.theory"``; None: the
        whole file) from a TOML file. A file without the table gives the defaults."""
        data: Any = tomllib.loads(Path(path).read_text())
        for part in (table.split(".") if table else []):
            data = data.get(part, {})
            if not isinstance(data, dict):
                raise ValueError(f"{path}: [{table}] must be a table, got {type(data).__name__}")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "weights"}
        return {**{k: v for k, v in out.items() if v is not None}, **self.weights}

    def context(self, vocab: Vocabulary = DEFAULT_VOCAB, steps: int | None = None) -> RuleContext:
        """The ``RuleContext`` these settings describe, for melodies of ``steps`` tokens."""
        return RuleContext(
            vocab=vocab, key=Key.parse(self.key), steps=steps, motif_length=self.motif_length,
            max_repeats=self.max_repeats, max_repeats_with_breaks=self.max_repeats_with_breaks,
            leap=self.leap, step_back_max=self.step_back_max, phrase_bars=self.phrase_bars,
        )

    def active(self) -> list[str]:
        return [n for n, w in self.weights.items() if w != 0]


# --------------------------------------------------------------------------- batched reward


def _batch(histories: np.ndarray, next_tokens: np.ndarray, ctx: RuleContext) -> MelodyView:
    h = np.asarray(histories, dtype=np.int64)
    n = np.asarray(next_tokens, dtype=np.int64).reshape(-1)
    if h.ndim == 1 and h.size == 0:
        h = h.reshape(len(n), 0)
    if h.ndim != 2 or h.shape[0] != n.shape[0]:
        raise ValueError(f"histories must be (B, t) with B = len(next_tokens) = {n.shape[0]}, got {h.shape}")
    return MelodyView(np.concatenate([h, n[:, None]], axis=1), ctx)


def step_reward_terms(
    histories: np.ndarray,
    next_tokens: np.ndarray,
    config: TheoryConfig | None = None,
    *,
    vocab: Vocabulary = DEFAULT_VOCAB,
    steps: int | None = None,
    ctx: RuleContext | None = None,
    rules: Sequence[str] | None = None,
    weighted: bool = False,
) -> dict[str, np.ndarray]:
    """Per-rule reward of ``next_tokens`` (B,) after ``histories`` (B, t): name -> (B,).

    ``rules``: which rules (default: those with a non-zero weight in ``config``);
    ``weighted``: multiply by the config's weights; ``steps``: the melody length, which
    the last-step rules (``high_low_unique``, ``structure``) need.
    """
    config = config or TheoryConfig()
    ctx = ctx or config.context(vocab, steps)
    names = config.active() if rules is None else _check_rules(rules)
    b = _batch(histories, next_tokens, ctx)
    out = {}
    for name in names:
        v = RULES[name].fn(b, ctx)
        out[name] = v * config.weights[name] if weighted else v
    return out


def step_rewards(
    histories: np.ndarray,
    next_tokens: np.ndarray,
    config: TheoryConfig | None = None,
    *,
    vocab: Vocabulary = DEFAULT_VOCAB,
    steps: int | None = None,
    ctx: RuleContext | None = None,
) -> np.ndarray:
    """Weighted sum of the rules for ``next_tokens`` (B,) after ``histories`` (B, t) -> (B,)."""
    terms = step_reward_terms(histories, next_tokens, config, vocab=vocab, steps=steps,
                              ctx=ctx, weighted=True)
    total = np.zeros(np.asarray(next_tokens).reshape(-1).shape[0])
    for v in terms.values():
        total += v
    return total


def melody_step_terms(
    tokens: np.ndarray, ctx: RuleContext | None = None, rules: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Each rule's reward at every step of whole melodies: (N, T) -> name -> (N, T)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must have shape (N, T), got {tokens.shape}")
    N, T = tokens.shape
    ctx = ctx or RuleContext()
    if ctx.steps is None:
        ctx = replace(ctx, steps=T)
    names = list(RULES) if rules is None else _check_rules(rules)
    out = {n: np.zeros((N, T)) for n in names}
    for t in range(T):
        b = MelodyView(tokens[:, : t + 1], ctx)
        for n in names:
            out[n][:, t] = RULES[n].fn(b, ctx)
    return out
