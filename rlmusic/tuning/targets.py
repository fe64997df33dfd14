"""Targets and the information projection: the distribution closest to the prior that meets them.

A tuning config's ``[targets]`` table states targets on evaluation keys
(``"rl_tuner/unique_min_note" = ">= 0.6"``, also ``<=`` and ``==``); each key has a per-melody
feature phi_i whose mean is that key's figure (``rlmusic.music.targets``; a ratio key's feature
is linearised at its target, so its bar becomes ``>= 0``). Of all distributions whose feature
means meet the targets, the one with the least KL to the prior is the information projection

    P(x) = prior(x) exp(lambda . phi(x)) / Z,   Z = E_prior[exp(lambda . phi)],

where lambda solves the convex dual ``min_lambda log E_prior[exp(lambda . phi)] - lambda . mu*``
with lambda_i >= 0 for a ">=" target, <= 0 for a "<=" target and free for "==". Its KL to the
prior, ``lambda . E_P[phi] - log Z``, is the **floor**: no model meeting the targets is closer.

Reads in this order: parsing targets (``Target``, ``parse_targets``) -> the fit on samples
(``fit_projection``: self-normalised importance sampling with optional proposal log-weights,
so a policy can be the proposal; scipy's L-BFGS-B on standardised features, lambda reported in
each feature's own units) -> the checked plan of a set of targets on melodies' features
(``plan_projection``: reachability, misses, effective sample size; one-line ``ValueError``s)
-> the plan as the table ``rlmusic targets plan`` and a targets run print (``format_plan``).
docs/targets.md has the derivation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rlmusic.music.targets import TARGETS, check_target_key, figure, linearise

OPS = (">=", "<=", "==")
MIN_ESS = 100.0  # below this effective sample size the projection's estimates are too rough to use
TOLERANCE = 1e-3  # a fitted mean may miss its bar by this many prior standard deviations of its feature
_TARGET = re.compile(r"\s*(>=|<=|==)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*")
_ADVICE = "sample more melodies (-n) or loosen the target"


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    """``key op value``: the mean of key's feature (its figure) must be >=, <= or == value."""

    key: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.key} {self.op} {self.value:g}"

    @property
    def ratio(self) -> bool:
        """A ratio key: its feature is linearised at ``value`` and its bar is ``op 0``."""
        return TARGETS[self.key].ratio

    @property
    def bar(self) -> float:
        """The bar mu* of the (linearised) feature's mean."""
        return 0.0 if self.ratio else self.value


def parse_target(key: str, text: Any) -> Target:
    """``key``, ``">= 0.6"`` -> Target; ``ValueError`` naming the key and the value."""
    check_target_key(key)
    match = _TARGET.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"target {key!r} = {text!r}: write it as a string \">= X\", \"<= X\" or \"== X\" "
                         "with X a number")
    value = float(match.group(2))
    if not math.isfinite(value):
        raise ValueError(f"target {key!r} = {text!r}: the value must be finite")
    return Target(key, match.group(1), value)


def parse_targets(table: Mapping[str, Any] | None) -> list[Target]:
    """A ``[targets]`` table (key -> ``">= X"``) -> targets, in the table's order."""
    if table is None:
        return []
    if not isinstance(table, Mapping):
        raise ValueError(f"[targets] must be a table of \"KEY\" = \">= X\", got {table!r}")
    return [parse_target(k, v) for k, v in table.items()]


# --------------------------------------------------------------------------- the fit


@dataclass
class Projection:
    """A fitted projection on N samples: ``lam`` (K,) in the features' own units, the
    normalised weights of the prior (``base``) and of the projection (``weights``) over the
    samples, ``log_z``, its KL to the prior per melody and its effective sample size."""

    lam: np.ndarray
    base: np.ndarray
    weights: np.ndarray
    log_z: float
    kl: float
    ess: float

    def mean(self, phi: np.ndarray) -> np.ndarray:
        """E_P[phi] of (N,) or (N, K) values."""
        return self.weights @ phi


def _logsumexp(a: np.ndarray) -> float:
    top = float(np.max(a))
    return top + math.log(float(np.exp(a - top).sum())) if math.isfinite(top) else top


def _normalised_log(log_weights: np.ndarray | None, n: int) -> np.ndarray:
    if log_weights is None:
        return np.full(n, -math.log(n))
    lw = np.asarray(log_weights, dtype=np.float64)
    if lw.shape != (n,) or np.isnan(lw).any() or not np.isfinite(lw).any():
        raise ValueError(f"log_weights must be ({n},) numbers, some finite, got shape {lw.shape}")
    return lw - _logsumexp(lw)


def fit_projection(phi: np.ndarray, mu: Sequence[float], ops: Sequence[str],
                   log_weights: np.ndarray | None = None) -> Projection:
    """Fit lambda of ``P(x) ∝ prior(x) exp(lambda . phi(x))`` to the bars ``mu`` (K,) with
    ``ops`` (K,) from samples' features ``phi`` (N, K) by self-normalised importance sampling.

    ``log_weights`` (N,): log prior(x) - log q(x) when the samples come from a proposal q (up
    to a constant); None when they come from the prior. Solves the dual
    ``min log sum_j w_j exp(lambda . phi_j) - lambda . mu`` (w normalised) with scipy's
    L-BFGS-B under the sign bounds of ``ops``, on features standardised by their prior mean and
    standard deviation (lambda is returned in the features' units). No check that the bars are
    met: ``plan_projection`` checks.
    """
    from scipy.optimize import minimize

    phi = np.asarray(phi, dtype=np.float64)
    phi = phi[:, None] if phi.ndim == 1 else phi
    n, k = phi.shape
    mu = np.asarray(mu, dtype=np.float64).reshape(k)
    if any(op not in OPS for op in ops) or len(ops) != k:
        raise ValueError(f"ops must be {k} of {OPS}, got {list(ops)}")
    log_base = _normalised_log(log_weights, n)
    base = np.exp(log_base)
    centre = base @ phi
    scale = np.sqrt(base @ (phi - centre) ** 2)
    scale = np.where(scale > 0, scale, 1.0)
    z = (phi - centre) / scale  # (N, K) standardised features
    bar = (mu - centre) / scale

    def dual(lam: np.ndarray) -> tuple[float, np.ndarray]:
        a = log_base + z @ lam
        log_z = _logsumexp(a)
        p = np.exp(a - log_z)
        return log_z - float(lam @ bar), p @ z - bar

    bounds = [(0.0, None) if op == ">=" else (None, 0.0) if op == "<=" else (None, None) for op in ops]
    result = minimize(dual, np.zeros(k), jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"maxiter": 1000, "maxfun": 2000, "ftol": 1e-15, "gtol": 1e-10})
    lam = np.asarray(result.x, dtype=np.float64)
    a = log_base + z @ lam
    log_z_std = _logsumexp(a)
    weights = np.exp(a - log_z_std)
    kl = max(0.0, float(lam @ (weights @ z)) - log_z_std) if lam.any() else 0.0
    lam_units = lam / scale
    return Projection(lam=lam_units, base=base, weights=weights, log_z=log_z_std + float(lam_units @ centre),
                      kl=kl, ess=float(1.0 / (weights @ weights)))


# --------------------------------------------------------------------------- the checked plan


@dataclass
class TargetPlan:
    """The projection of a set of targets on N melodies of ``steps``: per target its prior
    figure, lambda, projected figure and (fitted alone) effective sample size and floor."""

    targets: list[Target]
    projection: Projection
    prior_means: list[float]  # each key's figure under the prior (the samples' SNIS estimate)
    projected_means: list[float]  # ... under the projection
    ess_alone: list[float]  # effective sample size of the projection onto this target alone
    kl_alone: list[float]  # floor (nats per melody) of this target alone
    n: int
    steps: int
    prior_sds: list[float] | None = None  # each (linearised) feature's standard deviation under the prior

    @property
    def kl_floor_per_melody(self) -> float:
        return self.projection.kl

    @property
    def kl_floor_per_step(self) -> float:
        return self.projection.kl / self.steps

    def to_dict(self) -> dict[str, Any]:
        rows = [{"key": t.key, "op": t.op, "target": t.value, "linearised": t.ratio,
                 "prior_mean": self.prior_means[i], "lambda": float(self.projection.lam[i]),
                 "projected_mean": self.projected_means[i], "ess_alone": self.ess_alone[i],
                 "kl_floor_per_step_alone": self.kl_alone[i] / self.steps,
                 "prior_sd": None if self.prior_sds is None else self.prior_sds[i]}
                for i, t in enumerate(self.targets)]
        return {"targets": rows, "n": self.n, "steps": self.steps, "ess": self.projection.ess,
                "kl_floor_per_melody": self.kl_floor_per_melody, "kl_floor_per_step": self.kl_floor_per_step,
                "log_z": self.projection.log_z}


def _miss(op: str, mean: float, bar: float) -> float:
    """How far ``mean`` lies on the wrong side of ``op bar`` (0 when it meets it)."""
    return max(0.0, bar - mean) if op == ">=" else max(0.0, mean - bar) if op == "<=" else abs(mean - bar)


def _unreachable(target: Target, phi: np.ndarray, base: np.ndarray) -> bool:
    """No sample (of positive weight) on the bar's side, and the prior does not already meet it."""
    values, bar = phi[base > 0], target.bar
    if _miss(target.op, float(base @ phi), bar) == 0.0:
        return False
    if target.op == ">=":
        return not (values >= bar).any()
    if target.op == "<=":
        return not (values <= bar).any()
    return not ((values >= bar).any() and (values <= bar).any())


def plan_projection(
    targets: Sequence[Target],
    parts: Mapping[str, tuple[np.ndarray, np.ndarray]],
    steps: int,
    log_weights: np.ndarray | None = None,
    min_ess: float = MIN_ESS,
    tolerance: float = TOLERANCE,
) -> TargetPlan:
    """Fit the projection of ``targets`` on melodies whose per-key (num, den) are ``parts``
    (``rlmusic.music.targets.target_parts``), and check it. One-line ``ValueError``, naming the
    target and what to do, when a target has no sample on its side of the bar, when the fitted
    projection misses a bar by more than ``tolerance`` prior standard deviations (targets
    that conflict), or when its effective sample size is below ``min_ess``."""
    if not targets:
        raise ValueError("no targets: give a [targets] table of \"KEY\" = \">= X\"")
    keys = [t.key for t in targets]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a key appears twice among the targets: {keys}")
    missing = [k for k in keys if k not in parts]
    if missing:
        raise ValueError(f"no features for targets {missing}")
    phi = np.stack([linearise(t.key, *parts[t.key], t.value) for t in targets], axis=1)  # (N, K)
    n = phi.shape[0]
    bars = np.array([t.bar for t in targets])
    ops = [t.op for t in targets]
    base = np.exp(_normalised_log(log_weights, n))
    out = [t for j, t in enumerate(targets) if _unreachable(t, phi[:, j], base)]
    if out:
        raise ValueError("; ".join(f"target {t}: none of the {n:,} sampled melodies lies on its side of the bar"
                                   for t in out) + f": {_ADVICE}")
    proj = fit_projection(phi, bars, ops, log_weights)
    means = proj.mean(phi)
    sd = np.sqrt(proj.base @ (phi - proj.base @ phi) ** 2)
    misses = [_miss(op, m, b) / (s if s > 0 else 1.0) for op, m, b, s in zip(ops, means, bars, sd, strict=True)]
    worst = int(np.argmax(misses))
    figures = [figure(t.key, *parts[t.key], weights=proj.weights) for t in targets]
    if misses[worst] > tolerance:
        t = targets[worst]
        raise ValueError(f"target {t}: the projection fitted on {n:,} melodies misses it ({figures[worst]:.6g}; "
                         f"the targets may conflict): {_ADVICE}")
    if proj.ess < min_ess:
        hardest = targets[int(np.argmax(np.abs(proj.lam) * np.where(sd > 0, sd, 1.0)))]
        raise ValueError(f"target {hardest}: the projection's effective sample size is {proj.ess:,.0f} of {n:,} "
                         f"melodies (below {min_ess:g}), too few to trust: {_ADVICE}")
    alone = [fit_projection(phi[:, j], bars[j:j + 1], ops[j:j + 1], log_weights) for j in range(len(targets))]
    return TargetPlan(
        targets=list(targets), projection=proj,
        prior_means=[figure(t.key, *parts[t.key], weights=proj.base) for t in targets],
        projected_means=figures, ess_alone=[a.ess for a in alone], kl_alone=[a.kl for a in alone],
        n=n, steps=int(steps), prior_sds=[float(v) for v in sd])


def format_plan(plan: TargetPlan) -> str:
    """The plan as a table: one row per target, then the effective sample size and the floor
    (what ``rlmusic targets plan`` and a targets run of ``rlmusic tune`` print)."""
    width = max(len("target"), *(len(t.key) for t in plan.targets))
    lines = [f"{'target'.ljust(width)}  {'prior':>10}  {'bar':>12}  {'lambda':>11}  {'projected':>10}  "
             f"{'ESS alone':>10}"]
    for i, t in enumerate(plan.targets):
        lines.append(f"{t.key.ljust(width)}  {plan.prior_means[i]:>10.5g}  {f'{t.op} {t.value:g}':>12}  "
                     f"{plan.projection.lam[i]:>11.5g}  {plan.projected_means[i]:>10.5g}  "
                     f"{plan.ess_alone[i]:>10,.0f}")
    lines.append(f"effective sample size {plan.projection.ess:,.0f} of {plan.n:,} melodies "
                 f"({plan.projection.ess / plan.n:.1%})")
    lines.append(f"kl_floor_per_step {plan.kl_floor_per_step:.4f} nats ({plan.kl_floor_per_melody:.3f} nats per "
                 f"melody of {plan.steps} steps)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- a model's targets, met or missed


Z95 = 1.959963984540054  # two-sided 95% normal quantile


def target_report(targets: Sequence[Target], parts: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """Per target, on N melodies whose per-key (num, den) are ``parts``: the key's figure, the
    95% interval of the mean of its (linearised) feature, ``mean +- 1.96 sd / sqrt(N)``, in the
    figure's units (for a ratio key ``c + interval / mean(den)``: the linearised mean's interval
    decides), and ``status``: ``met`` (the figure meets the bar; for "==": the bar lies in the
    interval), ``within`` (it misses, but the bar lies in the interval: no significant miss) or
    ``missed`` (the whole interval lies on the wrong side)."""
    rows = []
    for t in targets:
        num, den = (np.asarray(a, dtype=np.float64) for a in parts[t.key])
        phi = linearise(t.key, num, den, t.value)
        n = len(phi)
        mean = float(phi.mean())
        half = Z95 * float(phi.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
        scale, shift = (float(den.mean()), t.value) if t.ratio else (1.0, 0.0)
        scale = scale if scale > 0 else math.nan
        lo, hi = shift + (mean - half) / scale, shift + (mean + half) / scale
        value = figure(t.key, num, den)
        inside = lo <= t.value <= hi
        if t.op == "==":
            status = "met" if inside else "missed"
        else:
            status = "met" if _miss(t.op, value, t.value) == 0.0 else "within" if inside else "missed"
        rows.append({"key": t.key, "op": t.op, "target": t.value, "figure": value, "low": lo, "high": hi,
                     "n": n, "status": status})
    return rows


def format_report(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per target: ``KEY >= X: met, figure (95% interval lo .. hi)``."""
    words = {"met": "met", "within": "missed within the 95% interval", "missed": "missed"}
    return "\n".join(f"{r['key']} {r['op']} {r['target']:g}: {words[r['status']]}, {r['figure']:.4g} "
                     f"(95% interval {r['low']:.4g} .. {r['high']:.4g}, n={r['n']:,})" for r in rows)
