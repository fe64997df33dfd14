"""Training to the projection with PPO (issue 20, ``--method ppo``): the plan that starts a
run with ``[targets]``, the reward ``lambda . phi(x)`` of each melody, and lambda refitted online.

With beta = 1, KL-regularised RL with the end-of-melody reward ``r(x) = lambda . phi(x)``
maximises ``E_pi[lambda . phi] - KL(pi || prior)``, whose optimum is
``prior(x) exp(lambda . phi(x)) / Z``: for the projection's lambda, the projection itself
(Korbak et al. 2022). So a targets run

1. plans (``plan_for_config``): samples ``targets_plan_n`` prior melodies, fits the projection
   (``rlmusic.tuning.targets.plan_projection``: lambda and the KL floor; an unreachable target is
   refused before anything trains) and prints the table ``rlmusic targets plan`` prints;
2. pays ``lambda . phi(x)`` for each melody (``TargetReward``, a term ``targets`` beside the
   env's others; phi: each target key's per-melody feature, a ratio key linearised at its
   target, ``rlmusic.music.targets``) and the per-step KL with beta fixed at 1: by default as
   the melody grows (``TargetReward.progress``, ``targets_shaping``: each step earns the growth
   of ``lambda . phi`` of the melody so far, the same return with gamma 1), else at its end;
3. refits lambda after each rollout by projected dual ascent on the rollout's feature means
   (``dual_ascent``, ``TargetControl``): the dual's gradient at the policy is ``mean_i - bar_i``,
   so ``lambda_i += targets_lr * (bar_i - mean_i) / var_i`` (var_i the prior's variance of the
   feature: a Newton step of the dual at ``targets_lr = 1``), then clipped to lambda_i >= 0 for a
   ">=" target and <= 0 for a "<=" target ("==" free). An unmet target pulls harder, a met
   inequality relaxes toward 0 and never past it; once the policy is at the projection the
   means sit at the bars and lambda stays. ``targets_lr = 0`` keeps the plan's lambda (the plain
   Korbak et al. run). Like any integral controller it winds up while the policy lags.
   ``targets_margin`` aims each inequality that many prior sds past its bar (``TargetReward.aims``);
   ``targets_lr_decay`` lets the step fall linearly to 0 over the run (``TargetControl.lr_scale``).
   ``targets_kp`` and ``targets_kd`` make it a PID Lagrangian (Stooke et al. 2020, "Responsive
   Safety in Reinforcement Learning by PID Lagrangian Methods"; OmniSafe's ``PIDLagrangian``):
   the dual ascent above is the integral term, and lambda paid is
   ``I_i + kp s_i + kd d_i`` (then the same sign clip), with ``s_i`` the rollouts' error
   ``(aim_i - mean_i) / var_i`` in Newton units, smoothed across rollouts, and ``d_i`` its growth
   over the last ten refits, counted only when the target is getting further from met
   (``pid_step``). The proportional term answers a gap without waiting for the integral to
   wind up; the derivative term answers a feature that starts to fall. Both 0 (the default):
   plain dual ascent.

``TargetControl`` logs per rollout ``target/<KEY>`` (the key's figure on the rollout's melodies),
``lambda/<KEY>`` (the lambda the rollout was paid with), ``kl_per_step`` (sampled, as
``kl/per_step``) beside ``kl_floor_per_step`` (the plan's floor) and ``rollout/diversity``
(the rollout's batch diversity, as the evaluation's ``diversity``). ``model_targets_report``
says for a model tuned to targets whether its samples meet each (``rlmusic evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

from rlmusic.music import originality
from rlmusic.music.reward import TheoryConfig
from rlmusic.music.targets import TARGETS, figure, linearise, target_parts
from rlmusic.tuning.config import TuneConfig
from rlmusic.tuning.rewards import novelty_corpus
from rlmusic.tuning.targets import (
    TargetPlan,
    format_plan,
    format_report,
    parse_targets,
    plan_projection,
    target_report,
)

# --------------------------------------------------------------------------- the plan


def feature_corpus(keys: Sequence[str], config: TuneConfig, prior_dir: str | Path, vocab):
    """The n-gram index the targets' originality features measure against (the config's
    ``eval_corpus``, else the prior's training corpus), or None when no target needs one."""
    from rlmusic.corpus.index import corpus_index

    if not any(TARGETS[k].needs == "corpus" for k in keys):
        return None
    name = novelty_corpus(config, Path(prior_dir))
    return corpus_index(name, vocab=vocab) if name else None


def music_key(config: TuneConfig) -> str:
    """The key (``"C major"``) the targets' theory features are measured in: the ``[theory]`` table's."""
    return TheoryConfig.from_dict(dict(config.theory)).key


def plan_for_config(config: TuneConfig, prior, prior_dir: str | Path, n: int, seed: int = 0,
                    min_ess: float = 100.0, progress: bool = False, proposal=None) -> TargetPlan:
    """Sample ``n`` melodies of ``config.steps`` from ``prior`` (a ``MelodyLSTM`` loaded from
    ``prior_dir``), compute the features of the config's targets and fit their projection
    (one-line ``ValueError`` for a target the samples cannot reach). ``proposal``: another
    ``MelodyLSTM`` (a model tuned toward the targets) to sample instead, each melody weighed by
    ``prior(x) / proposal(x)`` (``proposal_log_weights``): the same projection and floor,
    estimated where the projection's mass lies."""
    return sample_plan(config, prior, prior_dir, n, seed, min_ess, progress, proposal=proposal)[0]


@torch.no_grad()
def proposal_log_weights(prior, proposal, tokens: np.ndarray) -> np.ndarray:
    """``log prior(x) - log proposal(x)`` (N,) of whole melodies sampled from ``proposal`` at
    temperature 1: the importance log-weights that make the proposal's samples the prior's."""
    from rlmusic.evaluation.table import step_log_probs

    if proposal.vocab != prior.vocab:
        raise ValueError("the proposal's vocabulary differs from the prior's: tune it from this prior")
    return step_log_probs(prior, tokens).sum(axis=1) - step_log_probs(proposal, tokens).sum(axis=1)


def sample_plan(config: TuneConfig, prior, prior_dir: str | Path, n: int, seed: int = 0, min_ess: float = 100.0,
                progress: bool = False, proposal=None,
                ) -> tuple[TargetPlan, dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """``plan_for_config``'s plan with the samples it rests on: per key (num, den) and the tokens (n, steps)."""
    from rlmusic.models.generate import sample_tokens

    targets = parse_targets(config.targets)
    if not targets:
        raise ValueError("no targets: give a [targets] table of \"KEY\" = \">= X\"")
    if n < 2:
        raise ValueError(f"the plan needs >= 2 melodies, got {n}")
    keys = [t.key for t in targets]
    corpus = feature_corpus(keys, config, prior_dir, config.vocab)
    tokens = sample_tokens(proposal if proposal is not None else prior, n, config.steps, seed=seed,
                           progress=progress)
    log_w = None if proposal is None else proposal_log_weights(prior, proposal, tokens)
    parts = target_parts(keys, tokens, vocab=config.vocab, key=music_key(config), corpus=corpus)
    return plan_projection(targets, parts, steps=config.steps, log_weights=log_w, min_ess=min_ess), parts, tokens


# --------------------------------------------------------------------------- lambda online


def dual_ascent(lam: np.ndarray, means: np.ndarray, bars: np.ndarray, ops: Sequence[str],
                variances: np.ndarray, lr: float) -> np.ndarray:
    """One projected step of the dual: ``lambda_i + lr (bar_i - mean_i) / var_i``, then
    ``>= 0`` for a ">=" target, ``<= 0`` for a "<=" target (means and bars of the linearised
    features; ``var_i`` > 0 sets the step's scale)."""
    lam = np.asarray(lam, dtype=np.float64) + lr * (np.asarray(bars) - np.asarray(means)) / np.asarray(variances)
    ge = np.array([op == ">=" for op in ops])
    le = np.array([op == "<=" for op in ops])
    return np.where(ge, np.maximum(lam, 0.0), np.where(le, np.minimum(lam, 0.0), lam))


PID_EMA = 0.9  # the smoothing of the PID's error across rollouts (OmniSafe's EMA alphas are its kind)
PID_DELAY = 10  # rollouts over which the derivative is taken (OmniSafe's ``pid_d_delay`` default)


def pid_step(integral: np.ndarray, history: Sequence[np.ndarray], means: np.ndarray, aims: np.ndarray,
             ops: Sequence[str], variances: np.ndarray, ki: float, kp: float = 0.0, kd: float = 0.0,
             ema: float = PID_EMA, delay: int = PID_DELAY) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """One refit of a PID Lagrangian, after OmniSafe's ``PIDLagrangian.pid_update``, per target:
    the integral ``I`` steps by ``dual_ascent`` (gain ``ki``); the rollout's error
    ``e = (aim - mean) / var`` (Newton units: > 0 asks lambda up) is smoothed,
    ``s = ema s_prev + (1 - ema) e`` (``s`` starts at 0, so the proportional term ramps in over
    the first rollouts); the derivative ``d = s - s_delay`` (``s`` of ``delay`` refits ago; 0 at
    first) counts only where the target moves away from met (up for ">=", down for "<=", both
    ways for "=="). ``history``: the last ``delay`` values of ``s``, oldest first (empty at the
    start). Returns ``(lambda, I, history)`` with ``lambda = I + kp s + kd d`` clipped to the
    target's sign as the integral is."""
    integral = dual_ascent(integral, means, aims, ops, variances, ki)
    error = (np.asarray(aims, dtype=np.float64) - np.asarray(means)) / np.asarray(variances)
    history = [np.asarray(h, dtype=np.float64) for h in history] or [np.zeros_like(error)]
    smooth = ema * history[-1] + (1.0 - ema) * error
    growth = smooth - history[0]
    ge = np.array([op == ">=" for op in ops])
    le = np.array([op == "<=" for op in ops])
    growth = np.where(ge, np.maximum(growth, 0.0), np.where(le, np.minimum(growth, 0.0), growth))
    lam = integral + kp * smooth + kd * growth
    lam = np.where(ge, np.maximum(lam, 0.0), np.where(le, np.minimum(lam, 0.0), lam))
    return lam, integral, (history + [smooth])[-max(1, int(delay)):]


class TargetReward:
    """The end-of-melody term ``targets = lambda . phi(x)`` of a targets run (a ``FinalReward``),
    holding lambda (from the plan; ``step`` refits it) and the features of the melodies it paid
    since ``take`` last collected them."""

    def __init__(self, plan: TargetPlan, vocab, key: str, corpus=None, lr: float = 0.05, margin: float = 0.0,
                 kp: float = 0.0, kd: float = 0.0):
        self.plan, self.vocab, self.key, self.corpus, self.lr = plan, vocab, key, corpus, float(lr)
        self.kp, self.kd = float(kp), float(kd)  # the PID Lagrangian's other gains (0: dual ascent alone)
        self.targets = plan.targets
        self.keys = [t.key for t in self.targets]
        self.lam = np.array(plan.projection.lam, dtype=np.float64)  # (K,) in the features' units
        self.integral = self.lam.copy()  # the dual ascent's lambda: the PID's integral term
        self.history: list[np.ndarray] = []  # the PID's smoothed errors of the last refits, oldest first
        self.bars = np.array([t.bar for t in self.targets])
        self.ops = [t.op for t in self.targets]
        sd = np.asarray(plan.prior_sds, dtype=np.float64)
        self.variances = np.where(sd > 0, sd, 1.0) ** 2
        # what lambda's refit aims at: each inequality ``margin`` prior sds of its feature past its bar
        side = np.array([1.0 if op == ">=" else -1.0 if op == "<=" else 0.0 for op in self.ops])
        self.aims = self.bars + side * float(margin) * np.where(sd > 0, sd, 0.0)
        self._parts: list[dict[str, tuple[np.ndarray, np.ndarray]]] = []
        self._tokens: list[np.ndarray] = []

    def features(self, parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """(N, K) linearised features from per-key (num, den)."""
        return np.stack([linearise(t.key, *parts[t.key], t.value) for t in self.targets], axis=1)

    def __call__(self, tokens: np.ndarray) -> dict[str, np.ndarray]:
        """The end-of-melody term of whole melodies (B, T): ``{"targets": lambda . phi}``."""
        tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
        parts = target_parts(self.keys, tokens, vocab=self.vocab, key=self.key, corpus=self.corpus)
        self._parts.append(parts)
        self._tokens.append(tokens.copy())
        return {"targets": self.features(parts) @ self.lam}

    def progress(self, steps: int):
        """The same term paid as each melody of ``steps`` grows (a ``ProgressReward``): the
        potential ``lambda . phi(x_1..t)`` of the melody so far (per-step shares counted over
        the whole melody's ``steps``), of which the env pays each step's growth. The potential
        of the whole melody is ``lambda . phi(x)``, so with gamma = 1 every melody earns exactly
        the end-of-melody reward in total: the return, and so the optimum, is unchanged
        (potential-based shaping, Ng et al. 1999); only the credit moves to the step that earns
        it (the first note for the tonic row, each step for a per-step share)."""

        def potential(tokens: np.ndarray) -> dict[str, np.ndarray]:
            tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
            if tokens.shape[1] == steps:  # a whole melody: collected for the rollout's moments
                return self(tokens)
            parts = target_parts(self.keys, tokens, vocab=self.vocab, key=self.key, corpus=self.corpus, steps=steps)
            return {"targets": self.features(parts) @ self.lam}

        return potential

    def take(self) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray] | None:
        """The (num, den) per key and the tokens of every melody paid since the last call
        (None when none was), and forget them."""
        if not self._parts:
            return None
        parts = {k: (np.concatenate([p[k][0] for p in self._parts]), np.concatenate([p[k][1] for p in self._parts]))
                 for k in self.keys}
        tokens = np.concatenate(self._tokens)
        self._parts, self._tokens = [], []
        return parts, tokens

    def step(self, means: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Refit lambda from the linearised features' means (K,) of a rollout, toward the aims
        (the bars, each inequality ``margin`` prior sds past its own): the integral by dual ascent
        at ``scale`` times ``lr``, plus ``scale`` times the proportional and derivative terms
        (``pid_step``; with kp = kd = 0 lambda is the integral)."""
        self.lam, self.integral, self.history = pid_step(
            self.integral, self.history, means, self.aims, self.ops, self.variances,
            self.lr * scale, self.kp * scale, self.kd * scale)
        return self.lam


def with_targets(terms, targets):
    """One reward callable (a ``FinalReward`` or ``ProgressReward``: tokens -> {name: (B,)}) of
    ``terms``' (None: none) with ``targets``' added: the env's end-of-melody terms with
    ``lambda . phi``, or its progress terms with the potential of ``TargetReward.progress``."""
    if terms is None:
        return targets

    def combined(tokens: np.ndarray) -> dict[str, np.ndarray]:
        return {**terms(tokens), **targets(tokens)}

    return combined


def start_targets(run: Any, progress: bool = True) -> TargetReward:
    """Plan a ``TuneRun``'s targets on ``targets_plan_n`` prior melodies (seeded by the config's
    seed), print the plan, and return the reward that trains toward it."""
    c = run.config
    print(f"tune: planning the targets on {c.targets_plan_n:,} melodies of {c.steps} steps sampled from the prior "
          f"(seed {c.seed})", flush=True)
    plan = plan_for_config(c, run.prior, run.prior_dir, c.targets_plan_n, seed=c.seed, min_ess=c.targets_min_ess,
                           progress=progress)
    print(format_plan(plan), flush=True)
    corpus = feature_corpus(plan_keys(plan), c, run.prior_dir, run.prior.vocab)
    return TargetReward(plan, run.prior.vocab, music_key(c), corpus, lr=c.targets_lr, margin=c.targets_margin,
                        kp=c.targets_kp, kd=c.targets_kd)


def plan_keys(plan: TargetPlan) -> list[str]:
    return [t.key for t in plan.targets]


class TargetControl(BaseCallback):
    """After each rollout: logs every target's figure on the rollout's melodies and its lambda,
    the sampled KL per step beside the floor and the batch diversity; then refits lambda."""

    def __init__(self, reward: TargetReward, kl_control: Any, total: int | None = None):
        super().__init__()
        self.reward, self.kl_control = reward, kl_control  # kl_control: the run's KLControl (its KL)
        self.total = total  # targets_lr_decay: lambda's step falls linearly to 0 at this many env steps
        self.last: dict[str, float] = {}

    def lr_scale(self) -> float:
        """The factor of ``targets_lr`` for the next refit: 1, or with ``total`` the share of the
        run still to go (lambda settles as the run ends, so the last rollouts' noise does not
        decide where the saved model stands)."""
        if not self.total:
            return 1.0
        return max(0.0, 1.0 - self.model.num_timesteps / self.total)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        taken = self.reward.take()
        if taken is None:
            return
        parts, tokens = taken
        means = self.reward.features(parts).mean(axis=0)  # (K,) the linearised features' means
        rec = self.logger.record
        last: dict[str, float] = {}
        for i, t in enumerate(self.reward.targets):
            last[f"target/{t.key}"] = figure(t.key, *parts[t.key])
            last[f"lambda/{t.key}"] = float(self.reward.lam[i])  # what this rollout was paid with
            if self.reward.kp or self.reward.kd:
                last[f"lambda_integral/{t.key}"] = float(self.reward.integral[i])  # the PID's I term
        last["kl_floor_per_step"] = self.reward.plan.kl_floor_per_step
        if "kl" in self.kl_control.last:
            last["kl_per_step"] = float(self.kl_control.last["kl"])
        last["rollout/diversity"] = float(originality.batch_diversity(tokens, self.reward.vocab))
        for name, value in last.items():
            rec(name, value)
        scale = self.lr_scale()
        rec("targets/lr_scale", scale)
        self.last = last
        self.reward.step(means, scale)


# --------------------------------------------------------------------------- a tuned model's targets


def model_target_rows(model_dir: str | Path, tokens: np.ndarray, prior_dir: str | Path | None = None
                      ) -> tuple[list[dict[str, Any]], TuneConfig] | None:
    """For a model tuned to targets (its provenance holds the tune config's ``[targets]``):
    per target on ``tokens`` (its samples) the figure, the 95% interval and met or missed
    (``rlmusic.tuning.targets.target_report``), and the config it was tuned with; None for
    any other model."""
    from rlmusic.models.checkpoint import load_provenance, model_path, reference_prior_dir

    source = model_path(model_dir)
    stored = (load_provenance(source).extra or {}).get("tune_config") or {}
    targets = parse_targets(stored.get("targets"))
    if not targets:
        return None
    config = TuneConfig.from_dict(stored)
    keys = [t.key for t in targets]
    reference = model_path(prior_dir) if prior_dir is not None else reference_prior_dir(source)
    corpus = feature_corpus(keys, config, reference, config.vocab)
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    parts = target_parts(keys, tokens, vocab=config.vocab, key=music_key(config), corpus=corpus)
    return target_report(targets, parts), config


def model_targets_report(model_dir: str | Path, tokens: np.ndarray, prior_dir: str | Path | None = None) -> str | None:
    """``model_target_rows`` as the lines ``rlmusic evaluate`` prints; None for a model not
    tuned to targets."""
    found = model_target_rows(model_dir, tokens, prior_dir)
    if found is None:
        return None
    rows, config = found
    tokens = np.atleast_2d(tokens)
    head = f"targets of the tuned model ({len(tokens):,} melodies of {tokens.shape[1]} steps"
    head += f"; it was tuned on {config.steps} steps)" if tokens.shape[1] != config.steps else ")"
    return head + ":\n" + format_report(rows)
