"""Distributional policy gradient (issue 20, ``--method dpg``): the policy trained toward the
targets' projection ``P(x) = prior(x) exp(lambda . phi(x)) / Z`` by minimising the forward KL,
KL(P || pi), on melodies sampled from a proposal q (Khalifa et al. 2021, "A Distributional
Approach to Controlled Text Generation": GDC; with the baseline of GDC++, Korbak et al. 2022).
Not PPO: no critic, no rollout buffer; one Adam step on the ``MelodyLSTM`` itself per batch.

Reads in the order of one step of the algorithm:

1. **Score** (``sequence_log_probs``, ``target_phi``): B melodies x ~ q (q starts as the prior;
   the policy pi starts as an exact copy of it); log q(x), log prior(x) and, with its gradient,
   log pi(x) (sums over the melody's steps, by teacher forcing); the target's unnormalised
   log-density ``log P~(x) = log prior(x) + lambda . phi(x)`` (phi: each target's per-melody
   feature, a ratio linearised at its target, as the plan's).
2. **Z** (``SampleWindow``): ``Z = E_q[P~(x) / q(x)]``, estimated on a window of the last
   ``targets_plan_n`` sampled melodies, each weighed by its own proposal (term by term
   unbiased); the window starts as the plan's prior samples, so the first Z is the plan's.
3. **The loss** (``dpg_loss``): with ``r(x) = P~(x) / (Z q(x)) = P(x) / q(x)`` and GDC++'s
   baseline ``b(x) = pi(x) / q(x)``,

       grad KL(P || pi) = -E_P[grad log pi] = -E_q[(P(x)/q(x) - pi(x)/q(x)) grad log pi(x)],

   since ``E_q[(pi/q) grad log pi] = E_pi[grad log pi] = 0``: the baseline changes the variance,
   not the expectation (it is Z pi/q in units of the unnormalised P~). The loss is
   ``-mean_j (r_j - b_j) log pi(x_j)`` with r and b held constant.
4. **Divergences** (``kl_estimates``): ``KL(P || m) = E_q[r (log P~ - log Z - log m)]`` for
   m = pi and m = q, importance-sampled on the batch.
5. **The proposal** (``DPG.check``, every ``dpg_proposal_every`` steps): when the interval's mean
   estimate of KL(P || pi) is below that of KL(P || q), q becomes a copy of pi (GDC's rule).
6. **lambda** (``DPG.check``, ``dpg_refit_lambda``): the projection refitted on the window
   (``plan_projection`` with log-weights ``log prior - log q``: the policy as proposal), kept when
   its effective sample size is at least the current fit's (and ``targets_min_ess``); Z follows.

``rlmusic.tuning.dpg_run`` runs it: the plan, logs, evaluation, checkpoints and the saved model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from rlmusic.models.lstm import MelodyLSTM
from rlmusic.music import originality
from rlmusic.music.targets import figure, linearise, target_parts
from rlmusic.tuning.targets import Target, TargetPlan, plan_projection

Parts = dict[str, tuple[np.ndarray, np.ndarray]]

# --------------------------------------------------------------------------- 1. scoring


def make_policy(prior: MelodyLSTM) -> MelodyLSTM:
    """The policy: an exact copy of the prior's weights with dropout 0 (train mode is then as
    deterministic as eval mode, and cuDNN's LSTM backward needs train mode)."""
    policy = MelodyLSTM(replace(prior.config, dropout=0.0)).to(prior.device)
    policy.load_state_dict(prior.state_dict())
    return policy.train()


def sequence_log_probs(model: MelodyLSTM, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole melodies (B, T) -> (log model(x) (B,), log model(. | x_<t) (B, T, V))."""
    logits, _ = model(model.with_bos(tokens))  # (B, T, V)
    log_p = torch.log_softmax(logits, dim=-1)  # (B, T, V)
    return log_p.gather(-1, tokens[..., None])[..., 0].sum(dim=1), log_p


def target_phi(targets: Sequence[Target], parts: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(N, K) features of the targets from per-key (num, den): a ratio key linearised at its target."""
    return np.stack([linearise(t.key, *parts[t.key], t.value) for t in targets], axis=1)


# --------------------------------------------------------------------------- 2. Z on a window of samples


def _logsumexp(a: np.ndarray) -> float:
    top = float(np.max(a))
    return top + math.log(float(np.exp(a - top).sum()))


class SampleWindow:
    """The last ``size`` sampled melodies: their per-key parts, features phi (N, K) and
    ``log prior(x) - log q(x)`` under the proposal each was drawn from (N,)."""

    def __init__(self, size: int, parts: Parts, phi: np.ndarray, log_w: np.ndarray):
        self.size, self.parts, self.phi, self.log_w = int(size), {}, phi[:0], log_w[:0]
        self.add(parts, phi, log_w)

    def add(self, parts: Parts, phi: np.ndarray, log_w: np.ndarray) -> None:
        keep = slice(-self.size, None)
        self.parts = {k: tuple(np.concatenate([self.parts[k][i], v[i]])[keep] if self.parts else v[i][keep]
                               for i in (0, 1)) for k, v in parts.items()}
        self.phi = np.concatenate([self.phi, phi])[keep]
        self.log_w = np.concatenate([self.log_w, np.asarray(log_w, dtype=np.float64)])[keep]

    def log_z(self, lam: np.ndarray) -> float:
        """log Z = log mean_j exp(log_w_j + lambda . phi_j): the window's estimate of log E_prior[exp(lambda . phi)]."""
        return _logsumexp(self.log_w + self.phi @ lam) - math.log(len(self.log_w))


# --------------------------------------------------------------------------- 3.-4. the loss and the divergences


def dpg_loss(log_pi: torch.Tensor, log_q: torch.Tensor, log_target: torch.Tensor, log_z: float) -> torch.Tensor:
    """GDC++'s loss on melodies from q: ``-mean((P/q - pi/q) log pi)``, whose gradient estimates
    grad KL(P || pi). ``log_pi`` (B,) carries the gradient; ``log_target`` = log P~ (unnormalised)."""
    ratio = torch.exp((log_target - log_z - log_q).double())  # (B,) P(x)/q(x)
    baseline = torch.exp((log_pi.detach() - log_q).double())  # (B,) pi(x)/q(x), expectation 1
    return -((ratio - baseline).to(log_pi.dtype) * log_pi).mean()


def kl_estimates(log_target: np.ndarray, log_z: float, log_q: np.ndarray, log_m: np.ndarray) -> np.ndarray:
    """Per melody x ~ q (B,): ``r (log P~ - log Z - log m)``, r = P/q, whose mean estimates KL(P || m)."""
    log_p = log_target - log_z
    return np.exp(log_p - log_q) * (log_p - log_m)


def effective_sample_size(log_w: np.ndarray) -> float:
    """``(sum w)^2 / sum w^2`` of weights given by their logs."""
    w = np.exp(log_w - np.max(log_w))
    return float(w.sum() ** 2 / (w @ w))


# --------------------------------------------------------------------------- the loop's state


class DPG:
    """Policy, proposal and lambda of a dpg run; ``step`` takes one gradient step on a batch
    from the proposal, ``check`` updates the proposal (and lambda) every
    ``config.dpg_proposal_every`` steps. ``plan``: the fit lambda rests on (the run's plan,
    until a refit replaces it); ``parts``: its prior samples' per-key (num, den)."""

    def __init__(self, prior: MelodyLSTM, plan: TargetPlan, parts: Parts, config: Any, *, key: str,
                 corpus: Any = None, generator: torch.Generator | None = None):
        self.prior, self.plan, self.config, self.key, self.corpus = prior.eval(), plan, config, key, corpus
        self.targets = plan.targets
        self.lam = np.array(plan.projection.lam, dtype=np.float64)  # (K,) in the features' units
        self.policy = make_policy(prior)
        self.proposal = copy.deepcopy(self.policy).eval().requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.dpg_learning_rate)
        self.generator = generator if generator is not None else torch.Generator().manual_seed(config.seed)
        phi = target_phi(self.targets, parts)
        self.window = SampleWindow(config.targets_plan_n, dict(parts), phi, np.zeros(len(phi)))
        self.interval: dict[str, list[float]] = {"kl_p_pi": [], "kl_p_q": []}
        self.steps_done = self.proposal_updates = self.refits = 0

    def step(self) -> dict[str, float]:
        """Sample a batch from q, score it, take one gradient step; the step's numbers."""
        c, vocab = self.config, self.prior.vocab
        tokens = self.proposal.sample(c.dpg_batch, c.steps, generator=self.generator)  # (B, T) on CPU
        parts = target_parts([t.key for t in self.targets], tokens.numpy(), vocab=vocab, key=self.key,
                             corpus=self.corpus)
        phi = target_phi(self.targets, parts)  # (B, K)
        x = tokens.to(self.prior.device)
        with torch.no_grad():
            log_q = sequence_log_probs(self.proposal, x)[0].double().cpu().numpy()  # (B,)
            log_prior, step_prior = sequence_log_probs(self.prior, x)  # (B,), (B, T, V)
        log_pi, step_pi = sequence_log_probs(self.policy, x)  # with the gradient
        log_prior_np = log_prior.double().cpu().numpy()
        log_target = log_prior_np + phi @ self.lam  # (B,) log P~(x)
        self.window.add(parts, phi, log_prior_np - log_q)
        log_z = self.window.log_z(self.lam)
        device = log_pi.device
        loss = dpg_loss(log_pi, torch.as_tensor(log_q, device=device), torch.as_tensor(log_target, device=device),
                        log_z)
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
        self.optimizer.step()
        self.steps_done += 1
        # the numbers: pi's figures importance-weighted from q's batch (exact when q = pi)
        log_pi_np = log_pi.detach().double().cpu().numpy()
        kl_pi = kl_estimates(log_target, log_z, log_q, log_pi_np)
        kl_q = kl_estimates(log_target, log_z, log_q, log_q)
        self.interval["kl_p_pi"].append(float(kl_pi.mean()))
        self.interval["kl_p_q"].append(float(kl_q.mean()))
        w_pi = np.exp(log_pi_np - log_q - np.max(log_pi_np - log_q))
        w_pi /= w_pi.sum()  # (B,) self-normalised pi/q
        with torch.no_grad():  # exact KL(pi || prior) of each step along the melody, summed: (B,)
            kl_steps = (step_pi.exp() * (step_pi - step_prior)).sum(dim=(1, 2)).double().cpu().numpy()
        out = {f"target/{t.key}": figure(t.key, *parts[t.key], weights=w_pi) for t in self.targets}
        out.update({f"lambda/{t.key}": float(lam) for t, lam in zip(self.targets, self.lam, strict=True)})
        out.update({"kl_per_step": float(w_pi @ kl_steps) / c.steps, "kl_floor_per_step": self.plan.kl_floor_per_step,
                    "rollout/diversity": float(originality.batch_diversity(tokens.numpy(), vocab)),
                    "dpg/ess": effective_sample_size(log_target - log_q), "dpg/kl_p_pi": float(kl_pi.mean()),
                    "dpg/kl_p_q": float(kl_q.mean()), "dpg/log_z": log_z, "dpg/lambda_ess": self.plan.projection.ess,
                    "dpg/proposal_updates": float(self.proposal_updates), "dpg/refits": float(self.refits),
                    "train/loss": float(loss.item()), "train/grad_norm": float(grad_norm)})
        out["kl/per_step"] = out["kl_per_step"]
        return out

    # -- 5.-6. the proposal and lambda
    def check(self) -> dict[str, float]:
        """GDC's proposal update on the interval's estimates, then lambda's refit on the window."""
        kl_pi, kl_q = (float(np.mean(self.interval[k])) if self.interval[k] else math.nan for k in ("kl_p_pi", "kl_p_q"))
        self.interval = {"kl_p_pi": [], "kl_p_q": []}
        if kl_pi < kl_q:  # pi is closer to P than q is: sample from pi from now on
            self.proposal.load_state_dict(self.policy.state_dict())
            self.proposal_updates += 1
        if self.config.dpg_refit_lambda:
            self.refit()
        return {"dpg/proposal_updates": float(self.proposal_updates), "dpg/refits": float(self.refits)}

    def refit(self) -> bool:
        """lambda refitted on the window with the proposals as proposal (log-weights log prior - log q);
        kept when the fit's effective sample size is at least the current one's and ``targets_min_ess``."""
        min_ess = max(float(self.config.targets_min_ess), self.plan.projection.ess)
        try:
            plan = plan_projection(self.targets, self.window.parts, self.config.steps, log_weights=self.window.log_w,
                                   min_ess=min_ess)
        except ValueError:  # too few effective samples, or a bar the window cannot reach: keep lambda
            return False
        self.plan, self.lam = plan, np.array(plan.projection.lam, dtype=np.float64)
        self.refits += 1
        return True

    # -- the tuned model and checkpoints
    def tuned_model(self) -> MelodyLSTM:
        """The policy as a ``MelodyLSTM`` in the prior's config (eval mode)."""
        model = MelodyLSTM(self.prior.config).to(self.prior.device)
        model.load_state_dict(self.policy.state_dict())
        return model.eval()

    def state_dict(self) -> dict[str, Any]:
        return {"policy": self.policy.state_dict(), "proposal": self.proposal.state_dict(),
                "optimizer": self.optimizer.state_dict(), "plan": self.plan, "lam": self.lam,
                "window": (self.window.parts, self.window.phi, self.window.log_w), "interval": self.interval,
                "generator": self.generator.get_state(),
                "counts": (self.steps_done, self.proposal_updates, self.refits)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.policy.load_state_dict(state["policy"])
        self.proposal.load_state_dict(state["proposal"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.plan, self.lam = state["plan"], np.asarray(state["lam"], dtype=np.float64)
        self.window.parts, self.window.phi, self.window.log_w = state["window"]
        self.interval = {k: list(v) for k, v in state["interval"].items()}
        self.generator.set_state(state["generator"])
        self.steps_done, self.proposal_updates, self.refits = state["counts"]
