"""The reward pieces the melody environments combine, behind one small interface.

The environments never call a rule directly: they take three plain callables/objects,
so the music theory (``rlmusic.music.reward``), the structure and originality scores
(``rlmusic.music.structure``, ``rlmusic.music.originality``) and a learned reward model
(``rlmusic.feedback``) plug in here, in one place:

- ``TheoryReward``: ``(histories (B, t) tokens, next_tokens (B,)) -> (B,)`` reward of
  each next token given what came before (already weighted by rule);
- ``FinalReward``: ``tokens (B, T) -> {name: (B,)}`` end-of-melody terms, each already
  multiplied by its weight (e.g. ``structure``, ``novelty``);
- ``ProgressReward``: ``tokens so far (B, t) -> {name: (B,)}``: scores of the melodies so
  far (each already weighted), which the env pays as they grow: step t earns
  ``score(t) - score(t - 1)``, a melody earns its final score in total (``structure``);
- ``RewardModel``: an object with ``score(tokens (B, T)) -> (B,)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from rlmusic.music.originality import NgramIndex, RecentNgrams, note_pitches, originality_scores
from rlmusic.music.representation import Vocabulary
from rlmusic.music.reward import TheoryConfig, step_rewards
from rlmusic.music.rl_tuner_rewards import COMPONENTS as RL_TUNER_COMPONENTS
from rlmusic.music.rl_tuner_rewards import (
    RLTunerRewardState,
    rl_tuner_step_reward_components,
    rl_tuner_step_rewards,
)
from rlmusic.music.structure import structure_scores

TheoryReward = Callable[[np.ndarray, np.ndarray], np.ndarray]
FinalReward = Callable[[np.ndarray], dict[str, np.ndarray]]
ProgressReward = Callable[[np.ndarray], dict[str, np.ndarray]]  # melodies so far (B, t) -> {name: (B,)}


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


class RLTunerTheoryReward:
    """RL Tuner's per-step music-theory reward (``reward_music_theory``) exactly as Magenta
    computes it (``rlmusic.music.rl_tuner_rewards``), for B melodies of ``steps`` tokens.

    Called step after step from the start, as an env does, it keeps Magenta's running state
    (O(1) per step, ``RLTunerRewardState``); called on any other history it replays the
    whole melody (``rl_tuner_step_rewards``). ``last_components`` holds the last step's
    unscaled rule values (name -> (B,)), for logging. ``amounts`` multiply components by
    name (Magenta's ``reward_*`` functions take their amounts as arguments; {} keeps
    ``reward_music_theory``'s own, and its float sums exactly)."""

    def __init__(self, vocab: Vocabulary, config: Any = None, steps: int = 32,
                 amounts: Mapping[str, float] | None = None):
        if vocab != Vocabulary():
            raise ValueError(f"RL Tuner's reward is defined on pitches 48..84 (Magenta's tokens); "
                             f"this prior's vocabulary is {vocab.min_pitch}..{vocab.max_pitch}")
        key = theory_config(config).context(vocab, steps).key
        self.scale, self.tonic_pitch, self.steps = key.scale, 60 + key.tonic, int(steps)
        self.state = RLTunerRewardState(self.scale, self.tonic_pitch, self.steps)
        self.fed = np.zeros((0, 0), dtype=np.int64)  # what the running state has seen
        self.last_components: dict[str, np.ndarray] = {}
        self.amounts = dict(amounts or {})
        for name, value in self.amounts.items():
            if name not in RL_TUNER_COMPONENTS:
                raise ValueError(f"unknown RL Tuner reward component {name!r}; valid: {', '.join(RL_TUNER_COMPONENTS)}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"multiplier of RL Tuner's {name} must be a finite number >= 0, got {value!r}")

    def __call__(self, histories: np.ndarray, next_tokens: np.ndarray) -> np.ndarray:
        histories = np.asarray(histories, dtype=np.int64).reshape(len(next_tokens), -1)
        next_tokens = np.asarray(next_tokens, dtype=np.int64)
        t = histories.shape[1]
        if t == 0:
            self.state.reset(len(next_tokens))
            self.fed = np.zeros((len(next_tokens), 0), dtype=np.int64)
        if self.fed.shape == histories.shape and np.array_equal(self.fed, histories):
            reward = self.state.step(next_tokens)
            self.fed = np.concatenate([self.fed, next_tokens[:, None]], axis=1)
            self.last_components = self.state.last_components
        else:
            full = np.concatenate([histories, next_tokens[:, None]], axis=1)
            parts = rl_tuner_step_reward_components(full, self.scale, self.tonic_pitch, self.steps)
            self.last_components = {k: v[:, -1] for k, v in parts.items()}
            reward = rl_tuner_step_rewards(full, self.scale, self.tonic_pitch, self.steps)[:, -1]
        if not self.amounts:
            return reward
        return sum(self.amounts.get(k, 1.0) * v for k, v in self.last_components.items())


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
    diversity_memory: int = 0,
) -> FinalReward:
    """End-of-melody terms, each times its weight (zero weights cost nothing):
    ``structure`` (``structure_scores``), ``novelty`` (``originality_scores``' originality:
    novelty against ``corpus``, an ``NgramIndex``, times one minus the copy penalty) and
    ``diversity`` (the share of the melody's 4-grams no other melody of the batch has, nor,
    with ``diversity_memory`` > 0, any of the last ``diversity_memory`` melodies before it)."""
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
    memory = RecentNgrams(diversity_memory, index.n) if diversity_memory else None
    # the batch-only diversity comes with the originality scores; with a memory it has its own
    want_originality = "novelty" in active or ("diversity" in active and memory is None)

    def final(tokens: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if "structure" in active:
            out["structure"] = active["structure"] * np.asarray(structure_scores(tokens, ctx))
        if want_originality:
            scores = originality_scores(tokens, vocab=vocab, corpus=index)
            if "novelty" in active:  # novelty with the copy penalty: copying the corpus earns nothing
                out["novelty"] = active["novelty"] * np.asarray(scores["originality"], dtype=np.float64)
            if "diversity" in active and memory is None:
                out["diversity"] = active["diversity"] * np.asarray(scores["diversity"], dtype=np.float64)
        if "diversity" in active and memory is not None:
            pitches = [note_pitches(t, vocab) for t in np.atleast_2d(tokens)]
            out["diversity"] = active["diversity"] * memory.unshared(pitches)
            memory.add(pitches)
        return out

    return final


def structure_progress(weight: float) -> ProgressReward:
    """The structure (form) score of the melody so far times ``weight``, for the env to pay
    as it grows: the step that brings a phrase back gets the credit at once, and a melody
    earns ``weight * structure(melody)`` in total, as with an end-of-melody term."""
    if weight < 0:
        raise ValueError(f"weight of structure must be >= 0, got {weight}")

    def progress(tokens: np.ndarray) -> dict[str, np.ndarray]:
        return {"structure": weight * np.asarray(structure_scores(tokens), dtype=np.float64)}

    return progress
