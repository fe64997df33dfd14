"""The reward pieces the melody environments combine, behind one small interface.

The environments never call a rule directly: they take three plain callables/objects,
so the music theory (``rlmusic.theory``), the originality/structure scores
(``rlmusic.metrics``) and the learned reward model (``rlmusic.reward_model``) plug in
here, in one place:

- ``TheoryReward``: ``(histories (B, t) tokens, next_tokens (B,)) -> (B,)`` reward of
  each next token given what came before (already weighted by rule);
- ``FinalReward``: ``tokens (B, T) -> {name: (B,)}`` end-of-melody terms, each already
  multiplied by its weight (e.g. ``structure``, ``novelty``);
- ``RewardModel``: an object with ``score(tokens (B, T)) -> (B,)`` (issue 7).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from rlmusic.representation import Vocabulary

TheoryReward = Callable[[np.ndarray, np.ndarray], np.ndarray]
FinalReward = Callable[[np.ndarray], dict[str, np.ndarray]]


class RewardModel(Protocol):
    def score(self, tokens: np.ndarray) -> np.ndarray:  # (B, T) -> (B,)
        ...


def no_theory(histories: np.ndarray, next_tokens: np.ndarray) -> np.ndarray:
    """A theory reward of zero (the env then rewards only closeness to the prior)."""
    return np.zeros(len(next_tokens), dtype=np.float64)


def no_final(tokens: np.ndarray) -> dict[str, np.ndarray]:
    return {}


def theory_reward_from_config(vocab: Vocabulary, config: Any = None) -> TheoryReward:
    """The per-step music-theory reward of ``rlmusic.theory`` under ``config``
    (a ``theory.RewardConfig``, a mapping of rule weights, or None for the defaults)."""
    from rlmusic import theory

    cfg = _theory_config(config)

    def reward(histories: np.ndarray, next_tokens: np.ndarray) -> np.ndarray:
        return np.asarray(theory.step_rewards(histories, next_tokens, cfg, vocab=vocab), dtype=np.float64)

    return reward


def _theory_config(config: Any):
    from rlmusic import theory

    if config is None:
        return theory.RewardConfig()
    if isinstance(config, Mapping):
        return theory.RewardConfig.from_dict(dict(config))
    return config


def final_reward_from_weights(
    vocab: Vocabulary,
    weights: Mapping[str, float],
    theory_config: Any = None,
    corpus: np.ndarray | None = None,
) -> FinalReward:
    """End-of-melody terms: ``structure`` (theory), ``novelty`` (vs ``corpus``) and
    ``diversity`` (within the batch), each times its weight; zero weights cost nothing."""
    active = {k: float(w) for k, w in weights.items() if w}
    if not active:
        return no_final
    unknown = sorted(set(active) - {"structure", "novelty", "diversity"})
    if unknown:
        raise ValueError(f"unknown final reward terms {unknown}; valid: ['diversity', 'novelty', 'structure']")

    def final(tokens: np.ndarray) -> dict[str, np.ndarray]:
        from rlmusic import theory

        out: dict[str, np.ndarray] = {}
        if "structure" in active:
            out["structure"] = active["structure"] * np.asarray(theory.structure_scores(tokens, vocab=vocab))
        if "novelty" in active or "diversity" in active:
            scores = theory.originality_scores(tokens, vocab=vocab, corpus=corpus)
            for name in ("novelty", "diversity"):
                if name in active:
                    out[name] = active[name] * np.asarray(scores[name])
        return out

    return final
