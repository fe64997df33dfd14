"""The reward pieces of a tuning run, built from its config: the per-step theory reward
(our rules or RL Tuner's exactly), the progress terms paid as they grow (structure), and
the end-of-melody terms (novelty against the prior's own training corpus, diversity)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.rewards import (
    RLTunerTheoryReward,
    final_reward_from_weights,
    no_theory,
    structure_progress,
    theory_config,
    theory_reward_from_config,
)
from rlmusic.corpus.index import corpus_index
from rlmusic.models.checkpoint import training_corpus
from rlmusic.music.representation import Vocabulary
from rlmusic.tuning.config import TuneConfig


def novelty_corpus(config: TuneConfig, prior_dir: Path) -> str | None:
    """The corpus novelty is measured against: ``eval_corpus`` when set, else the prior's
    training corpus; None for ``"none"`` or when the prior does not say."""
    if config.eval_corpus is not None:
        return None if config.eval_corpus.lower() in ("none", "") else config.eval_corpus
    return training_corpus(prior_dir)


@dataclass
class Rewards:
    """The reward pieces of a run, as ``envs.melody.MelodyBatch`` takes them."""

    theory: Any  # per step: (histories, next tokens) -> (B,)
    final: Any  # end of melody: tokens -> {name: (B,)}
    progress: Any = None  # paid as it grows: tokens so far -> {name: (B,)}


def build_rewards(config: TuneConfig, vocab: Vocabulary, corpus: str | None) -> Rewards:
    """The reward pieces of ``envs.rewards`` for this config; the novelty term measures
    against ``corpus`` (its train split)."""
    theory_config(config.theory)  # unknown rule names or negative weights raise here
    if config.rl_tuner and config.theory_rules != "rl_tuner":
        raise ValueError("[rl_tuner] multipliers apply to theory_rules = 'rl_tuner' only")
    if config.rl_tuner:  # unknown names or bad values raise here, before anything trains
        RLTunerTheoryReward(vocab, config.theory, config.steps, config.rl_tuner)
    if not config.effective_theory_weight:
        theory = no_theory
    elif config.theory_rules == "rl_tuner":
        theory = RLTunerTheoryReward(vocab, config.theory, config.steps, config.rl_tuner)
    else:
        theory = theory_reward_from_config(vocab, config.theory, config.steps)
    shaped = config.structure_shaping and config.structure_weight > 0
    weights = {"structure": 0.0 if shaped else config.structure_weight, "novelty": config.novelty_weight,
               "diversity": config.diversity_weight}
    if config.novelty_weight and corpus is None:
        raise ValueError("novelty_weight > 0 needs a corpus: the prior's provenance names none; set eval_corpus")
    index = corpus_index(corpus, vocab=vocab) if corpus and config.novelty_weight else None
    final = final_reward_from_weights(vocab, weights, config.theory, config.steps, index, config.diversity_memory)
    return Rewards(theory, final, structure_progress(config.structure_weight) if shaped else None)


