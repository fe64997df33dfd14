"""The reward pieces the melody environments combine, behind one small interface.

The environments never call a rule directly: they take three plain callables/objects,
so the music theory (``rlmusic.music.reward``), the structure and originality scores
(``rlmusic.music.structure``, ``rlmusic.music.originality``) and a learned reward model
(``rlmusic.feedback``) plug in here, in one place:

- ``TheoryReward``: ``(histories (B, t) tokens, next_tokens (B,)) -> (B,)`` reward of
  each next token given what came before (already weighted by rule);
- ``FinalReward``: ``tokens (B, T) -> {name: (B,)}`` end-of-melody terms, each already
  multiplied by its weight (e.g. ``structure``, ``novelty``);
- ``RewardModel``: an object with ``score(tokens (B, T)) -> (B,)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from rlmusic.music.originality import NgramIndex, originality_scores
from rlmusic.music.representation import Vocabulary
from rlmusic.music.reward import TheoryConfig, step_rewards
from rlmusic.music.structure import structure_scores

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


def theory_reward_from_config(vocab: Vocabulary, config: Any = None, steps: int | None = None) -> TheoryReward:
    """The weighted per-step music-theory reward (``rlmusic.music.reward``) under ``config``
    (a ``TheoryConfig``, a mapping of its TOML table, or None for the defaults), for
    melodies of ``steps`` tokens (the last-step rules need the length)."""
    cfg = theory_config(config)
    ctx = cfg.context(vocab, steps)

    def reward(histories: np.ndarray, next_tokens: np.ndarray) -> np.ndarray:
        return np.asarray(step_rewards(histories, next_tokens, cfg, ctx=ctx), dtype=np.float64)

    return reward


def theory_config(config: Any = None) -> TheoryConfig:
    """A ``TheoryConfig`` from None (defaults), a mapping (its TOML table) or itself."""
    if config is None:
        return TheoryConfig()
    if isinstance(config, Mapping):
        return TheoryConfig.from_dict(dict(config))
    return config


def final_reward_from_weights(
    vocab: Vocabulary,
    weights: Mapping[str, float],
    theory: Any = None,
    steps: int | None = None,
    corpus: NgramIndex | None = None,
) -> FinalReward:
    """End-of-melody terms, each times its weight (zero weights cost nothing):
    ``structure`` (``structure_scores``), ``novelty`` (``originality_scores``' originality:
    novelty against ``corpus``, an ``NgramIndex``, times one minus the copy penalty) and
    ``diversity`` (within the batch)."""
    valid = ("diversity", "novelty", "structure")
    unknown = sorted(set(weights) - set(valid))
    if unknown:
        raise ValueError(f"unknown final reward terms {unknown}; valid: {list(valid)}")
    for name, w in weights.items():
        if w < 0:
            raise ValueError(f"weight of {name} must be >= 0, got {w}")
    active = {k: float(w) for k, w in weights.items() if w}
    if not active:
        return no_final
    ctx = theory_config(theory).context(vocab, steps)
    if "novelty" in active and corpus is None:
        raise ValueError("the novelty term needs the n-gram index of a corpus (corpus=NgramIndex)")
    index = corpus if corpus is not None else NgramIndex.build([], vocab)  # diversity needs no corpus
    want_originality = bool({"novelty", "diversity"} & set(active))

    def final(tokens: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if "structure" in active:
            out["structure"] = active["structure"] * np.asarray(structure_scores(tokens, ctx))
        if want_originality:
            scores = originality_scores(tokens, vocab=vocab, corpus=index)
            if "novelty" in active:  # novelty with the copy penalty: copying the corpus earns nothing
                out["novelty"] = active["novelty"] * np.asarray(scores["originality"], dtype=np.float64)
            if "diversity" in active:
                out["diversity"] = active["diversity"] * np.asarray(scores["diversity"], dtype=np.float64)
        return out

    return final
