"""A dpo run (``rlmusic tune --method dpo``): the prior tuned on preference pairs with the
prior as reference (``rlmusic.tuning.dpo``), written as a PPO run writes its folder.

Offline (``dpo_online_pairs = 0``): ``dpo_epochs`` passes over the pairs the raters gave
(their comparisons and star pairs, ``preference_pairs``), in shuffled batches of
``dpo_batch`` pairs. Online (``dpo_online_pairs = K``): rounds of K pairs sampled from the
policy and judged by the reward model, until ``timesteps`` melody steps were sampled,
each round trained on for ``dpo_epochs`` passes. Curves (``metrics.csv``, TensorBoard):
``dpo/loss``, ``dpo/accuracy`` (share of pairs whose margin h > 0), ``dpo/margin``, after
every epoch (offline) or round (online); evaluations (``eval.jsonl``: the policy's own
``eval_melodies`` with the exact KL to the prior) at the start and after each epoch or
every ``eval_every`` steps; the tuned model with provenance ``extra.dpo``. Offline runs
take seconds to minutes, so a stopped run starts again rather than resuming.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.logger import Logger

from rlmusic.environment import environment
from rlmusic.evaluation.table import evaluate_tokens
from rlmusic.models.checkpoint import (
    Provenance,
    default_prior_dir,
    load_model,
    model_ref,
    read_model_meta,
    save_model,
)
from rlmusic.runtime import command_line, git_commit, now_iso, resolve_device, seed_everything
from rlmusic.tuning.callbacks import stop_on_ctrl_c
from rlmusic.tuning.checkpoints import (
    append_eval,
    check_run_folder,
    clean_run_folder,
    keep_previous_model,
    write_run_config,
)
from rlmusic.tuning.config import TuneConfig
from rlmusic.tuning.curves import CurvesWriter
from rlmusic.tuning.dpo import online_pairs, preference_loss, sequence_log_probs
from rlmusic.tuning.rewards import novelty_corpus
from rlmusic.tuning.target_training import music_key


class DPORun:
    """One dpo run into ``out``: ``pairs`` (winners, losers, counts of ``preference_pairs``)
    offline, or ``reward_model`` (a scorer of token rows) online."""

    def __init__(self, config: TuneConfig, out: str | Path, prior_dir: str | Path | None = None, *,
                 pairs: tuple[np.ndarray, np.ndarray, dict[str, int]] | None = None, reward_model: Any = None,
                 reward_model_dir: str | Path | None = None, device: str = "auto", force: bool = False,
                 progress: bool = True, judgements: dict[str, Any] | None = None):
        if config.method != "dpo":
            raise ValueError(f"DPORun trains with method dpo, and the config says method = {config.method!r}")
        config.validate()
        self.config = c = config
        self.out, self.monitor, self.progress = Path(out), None, progress
        self.prior_dir = Path(prior_dir) if prior_dir is not None else default_prior_dir()
        self.device = resolve_device(device)
        check_run_folder(self.out, config, False, force)
        read_model_meta(self.prior_dir)
        self.prior = load_model(self.prior_dir, device=self.device, vocab=c.vocab).eval()
        if c.dpo_online_pairs:
            if reward_model is None:
                raise ValueError("online dpo (dpo_online_pairs > 0) judges the policy's pairs with a reward model: "
                                 "pass --reward-model DIR")
            self.winners = self.losers = np.zeros((0, c.steps), dtype=np.int64)
            self.counts: dict[str, int] = {}
        else:
            if pairs is None or not len(pairs[0]):
                counts = pairs[2] if pairs is not None else {}
                raise ValueError(f"no preference pair to train on ({counts or 'no judgements'}): dpo needs "
                                 f"comparisons or differing stars of melodies of {c.steps} steps")
            self.winners, self.losers, self.counts = pairs
        self.reward_model, self.reward_model_dir, self.judgements = reward_model, reward_model_dir, judgements or {}
        self.corpus = novelty_corpus(c, self.prior_dir)
        self.interrupted, self.last_eval, self.last = False, {}, {}

    def log_ratios(self, tokens: np.ndarray) -> torch.Tensor:
        """log pi(x) - log ref(x) of each melody (gradients through the policy only)."""
        x = torch.as_tensor(tokens, dtype=torch.long, device=self.device)
        with torch.no_grad():
            ref = sequence_log_probs(self.prior, x)
        return sequence_log_probs(self.policy, x) - ref

    def train_pairs(self, winners: np.ndarray, losers: np.ndarray) -> dict[str, float]:
        """One pass over ``winners``/``losers`` in shuffled batches; the pass's mean figures."""
        c = self.config
        order = np.random.default_rng([c.seed, self.passes]).permutation(len(winners))
        losses, margins = [], []
        for i in range(0, len(order), c.dpo_batch):
            idx = order[i : i + c.dpo_batch]
            rw, rl = self.log_ratios(winners[idx]), self.log_ratios(losers[idx])
            loss, h = preference_loss(rw, rl, torch.zeros_like(rw), torch.zeros_like(rl), c.dpo_beta, c.dpo_loss)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), c.max_grad_norm)
            self.optimizer.step()
            losses.append(float(loss.detach()) * len(idx))
            margins.append(h.cpu().numpy())
        self.passes += 1
        h = np.concatenate(margins)
        return {"dpo/loss": sum(losses) / len(order), "dpo/accuracy": float((h > 0).mean()),
                "dpo/margin": float(h.mean())}

    def evaluate(self, timesteps: int) -> dict[str, Any]:
        c = self.config
        tokens, logp = self.policy.sample(c.eval_melodies, c.steps, return_log_probs=True,
                                          generator=torch.Generator().manual_seed(c.seed + 12345))
        result = evaluate_tokens(tokens.numpy(), self.policy.vocab, prior=self.prior, model=self.policy,
                                 key=music_key(c), corpus=self.corpus, model_log_probs=logp)
        result = {"timesteps": timesteps, **result}
        append_eval(self.out, result)
        for k, v in result.items():
            if isinstance(v, (int, float)) and math.isfinite(v) and k not in ("timesteps", "n", "steps"):
                self.logger.record(f"eval/{k}", v)
        self.last_eval = result
        return result

    def train(self, progress: bool = True, stop_after_checkpoints: int | None = None) -> Path | None:
        """Run to the end; returns the model directory, or None when stopped (Ctrl-C)."""
        from tqdm.auto import tqdm

        c = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        clean_run_folder(self.out)
        keep_previous_model(self.out)
        for name in ("eval.jsonl", "metrics.csv"):
            (self.out / name).unlink(missing_ok=True)
        seed_everything(c.seed)
        self.policy = copy.deepcopy(self.prior).eval()  # no dropout: the log-ratios must be exact
        for p in self.prior.parameters():
            p.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=c.dpo_learning_rate)
        self.passes = 0
        write_run_config(self.out, {"config": asdict(c), "prior": str(self.prior_dir),
                                    "reward_model": str(self.reward_model_dir) if self.reward_model_dir else None,
                                    "init_model": None, "dpo_pairs": self.counts})
        self.logger = Logger(str(self.out), [CurvesWriter(self.out, [])])
        online = c.dpo_online_pairs
        per = 2 * online * c.steps if online else 2 * len(self.winners) * c.steps  # melody steps per round or epoch
        rounds = max(1, math.ceil(c.timesteps / per)) if online else c.dpo_epochs
        generator = torch.Generator().manual_seed(c.seed)
        done, start, stop = 0, time.monotonic(), _Stop()
        self.evaluate(0)
        self.logger.dump(0)
        with stop_on_ctrl_c(stop), tqdm(total=rounds, unit="round" if online else "epoch", desc="tune dpo",
                                        disable=not progress, dynamic_ncols=True) as bar:
            for r in range(rounds):
                if stop.stop_requested:
                    self.interrupted = True
                    return None
                if online:
                    w, lo, gap = online_pairs(self.policy, self.reward_model.score, online, c.steps, generator)
                    for _ in range(c.dpo_epochs):
                        numbers = self.train_pairs(w, lo)
                    numbers["dpo/judge_gap"] = float(gap.mean())
                else:
                    numbers = self.train_pairs(self.winners, self.losers)
                done += per
                numbers["time/minutes"] = (time.monotonic() - start) / 60
                self.last = numbers
                for k, v in numbers.items():
                    self.logger.record(k, v)
                if not online or r == rounds - 1 or (c.eval_every and done // c.eval_every != (done - per) // c.eval_every):
                    self.evaluate(done)
                self.logger.dump(done)
                bar.update(1)
                bar.set_postfix(loss=f"{numbers['dpo/loss']:.3f}", acc=f"{numbers['dpo/accuracy']:.2f}", refresh=False)
        return self.save(done)

    def save(self, timesteps: int) -> Path:
        c = self.config
        extra: dict[str, Any] = {"tune_config": asdict(c), "timesteps": int(timesteps), "dpo": {
            "loss": c.dpo_loss, "beta": c.dpo_beta, "epochs": c.dpo_epochs, "online_pairs": c.dpo_online_pairs,
            "rater": c.dpo_rater, "pairs": int(len(self.winners)), "counts": self.counts, "passes": self.passes,
            "comparison_ids": list(self.judgements.get("comparison_ids", []))}}
        provenance = Provenance(
            kind="tuned", corpus=self.corpus, parent_model=model_ref(self.prior_dir),
            reward_model=str(Path(self.reward_model_dir).resolve()) if self.reward_model_dir else None,
            ratings=list(self.judgements["rating_ids"]) if self.judgements.get("rating_ids") else None, git_commit=git_commit(), environment=environment(), created=now_iso(),
            command=command_line(), extra=extra,
            metrics={k: float(v) for k, v in self.last_eval.items() if isinstance(v, (int, float))},
        )
        return save_model(self.policy.cpu(), self.out, provenance)


class _Stop:
    """Set by Ctrl-C (``stop_on_ctrl_c``): the loop stops before its next epoch or round."""

    stop_requested = False
