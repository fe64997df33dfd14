"""Per-melody target features: for a target key (an evaluation key, as ``rlmusic evaluate``
names it), one number per melody whose mean over the melodies is that key's figure.

A target (``"rl_tuner/unique_min_note" = ">= 0.6"`` in a tuning config's ``[targets]``)
constrains the mean of its feature under the tuned model; ``rlmusic.tuning.targets`` fits the
distribution closest to the prior that meets every target (docs/targets.md). Each feature
is computed by the same code as its evaluation figure, so the two agree on the same melodies
(tests/test_targets.py checks every key to 1e-9):

- a *mean* key's figure is the mean over melodies of a per-melody value: per-step shares
  become per-melody shares (a melody's count over its steps), shares of melodies a 0/1 per
  melody, scores the melody's score;
- a *ratio* key's figure pools counts over melodies, ``sum(num) / sum(den)`` (leaps resolved
  over leaps with an outcome, notes out of key over onsets). A ratio is not a mean, but for a
  target value c it is *linearised*: the per-melody feature ``num - c * den`` has a mean >= 0
  exactly when the ratio is >= c (<= 0 when <= c, = 0 when = c), so ``target_features`` takes
  the target value of a ratio key; ``target_parts`` gives (num, den) themselves.

Keys by family (``TARGETS`` describes each): RL Tuner's rows as Magenta computes them
(``rl_tuner/*``, via ``rl_tuner_metrics.rl_tuner_row_counts`` and ``rl_tuner_detections``),
rlmusic's own rules (``rlmusic/*``, ``metrics.music_theory_parts``), the structure score
and its components (``structure``), originality against a corpus n-gram index (``novelty``,
``copied_notes``, ``copied_over_max``) and within the batch (``unshared_ngrams``: a melody's
value depends on the other melodies of the batch), and ``notes_per_melody``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from rlmusic.music import originality, structure
from rlmusic.music.context import Key, RuleContext
from rlmusic.music.metrics import music_theory_parts
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary
from rlmusic.music.rl_tuner_metrics import rl_tuner_row_counts
from rlmusic.music.rl_tuner_rewards import autocorrelate_rows

Parts = tuple[np.ndarray, np.ndarray]  # (num, den), each (N,): the figure is sum(num) / sum(den)


@dataclass(frozen=True)
class TargetFeature:
    """What a target key's per-melody feature is."""

    family: str  # rl_tuner, rlmusic, structure, originality, notes: computed together
    doc: str  # the per-melody value, in words
    ratio: bool = False  # figure = sum(num) / sum(den): linearised as num - c * den for a target c
    empty: float = math.nan  # a ratio's figure when sum(den) == 0 (as the evaluation table says)
    needs: str | None = None  # "corpus": an n-gram index; "batch": relative to the other melodies


def _rl(doc: str, **kw) -> TargetFeature:
    return TargetFeature("rl_tuner", doc, **kw)


def _ours(doc: str, **kw) -> TargetFeature:
    return TargetFeature("rlmusic", doc, **kw)


def _form(doc: str) -> TargetFeature:
    return TargetFeature("structure", doc)


TARGETS: dict[str, TargetFeature] = {
    "rl_tuner/notes_excessively_repeated": _rl("steps where Magenta's detect_repeating_notes fires / steps"),
    "rl_tuner/notes_not_in_key": _rl("steps holding a note outside the key / steps"),
    "rl_tuner/starts_with_tonic": _rl("1 when step 0 is the tonic at MIDI 60..71 (C major: 60), else 0"),
    "rl_tuner/leaps_resolved": _rl("resolved - c * (resolved + doubled) leap outcomes (Magenta's state "
                                   "machine): mean >= 0 iff the pooled ratio >= c", ratio=True),
    "rl_tuner/unique_max_note": _rl("1 when the highest token occurs once (Magenta's max over all tokens)"),
    "rl_tuner/unique_min_note": _rl("1 when the lowest note occurs once"),
    "rl_tuner/notes_in_motif": _rl("steps ending an 8-step window of >= 3 distinct notes / steps"),
    "rl_tuner/notes_in_repeated_motif": _rl("steps ending such a window that already occurred / steps"),
    **{f"rl_tuner/autocorrelation_lag{lag}": _rl(
        f"(autocorrelation at lag {lag} - c) for a melody that is not constant, 0 for one that is "
        "(the figure is the nanmean over melodies)", ratio=True) for lag in (1, 2, 3)},
    "rlmusic/onsets_excessively_repeated": _ours("repeated onsets - c * onsets", ratio=True, empty=0.0),
    "rlmusic/onsets_not_in_key": _ours("onsets out of key - c * onsets", ratio=True, empty=0.0),
    "rlmusic/starts_with_tonic_pitch_class": _ours("1 when the first note is the tonic in any octave"),
    "rlmusic/leaps_resolved_by_next_note": _ours("resolved leaps - c * leaps", ratio=True, empty=1.0),
    "rlmusic/unique_highest_note": _ours("1 when the highest onset pitch is played once"),
    "rlmusic/unique_lowest_note": _ours("1 when the lowest onset pitch is played once"),
    "rlmusic/onsets_in_motif": _ours("onsets ending a motif - c * onsets", ratio=True, empty=0.0),
    "rlmusic/onsets_in_repeated_motif": _ours("onsets ending a repeated motif - c * onsets", ratio=True,
                                              empty=0.0),
    **{f"rlmusic/note_autocorrelation_lag{lag}": _ours(f"the note-pitch autocorrelation at lag {lag}")
       for lag in (1, 2, 3)},
    "structure": _form("the structure (form) score in [0, 1]"),
    **{f"structure_{k}": _form(f"the structure component {k} in [0, 1]")
       for k in ("repetition", "variety", "bar_repetition", "cadence", "rhythm_consistency")},
    "bar_structure": _form("the older bar-grid structure score in [0, 1]"),
    "novelty": TargetFeature("originality", "share of the melody's 4-interval n-grams absent from the corpus",
                             needs="corpus"),
    "copied_notes": TargetFeature("originality", "the longest run of notes copied from one corpus piece",
                                  needs="corpus"),
    "copied_over_max": TargetFeature("originality", "1 when the copied run is longer than max_copied_notes",
                                     needs="corpus"),
    "unshared_ngrams": TargetFeature("originality", "share of the melody's distinct n-grams that no other "
                                     "melody of the batch has (depends on the batch)", needs="batch"),
    "notes_per_melody": TargetFeature("notes", "the number of note onsets"),
}
TARGET_KEYS: tuple[str, ...] = tuple(TARGETS)


def check_target_key(name: str) -> TargetFeature:
    """The feature of target key ``name``; ``ValueError`` naming it and the valid keys."""
    if name not in TARGETS:
        raise ValueError(f"unknown target key {name!r}; valid: {', '.join(TARGET_KEYS)}")
    return TARGETS[name]


# --------------------------------------------------------------------------- families


def _rl_tuner_parts(names: list[str], tokens: np.ndarray, vocab: Vocabulary, key: Key,
                    steps: int) -> dict[str, Parts]:
    if vocab != DEFAULT_VOCAB:  # the evaluation table reports rl_tuner/* only for Magenta's tokens
        raise ValueError(f"rl_tuner/* targets need the vocabulary of pitches {DEFAULT_VOCAB.min_pitch}.."
                         f"{DEFAULT_VOCAB.max_pitch} (Magenta's), got {vocab.min_pitch}..{vocab.max_pitch}")
    one = np.ones(len(tokens))
    c = rl_tuner_row_counts(tokens, key.scale, tonic_pitch=60 + key.tonic)
    per_step = {"notes_excessively_repeated": "num_repeated_notes", "notes_not_in_key": "num_notes_not_in_key",
                "notes_in_motif": "num_notes_in_motif", "notes_in_repeated_motif": "num_notes_in_repeated_motif"}
    per_melody = {"starts_with_tonic": "num_starting_tonic", "unique_max_note": "num_high_unique",
                  "unique_min_note": "num_low_unique"}
    out = {f"rl_tuner/{k}": (c[v] / steps, one) for k, v in per_step.items()}
    out.update({f"rl_tuner/{k}": (c[v].astype(np.float64), one) for k, v in per_melody.items()})
    resolved, doubled = c["num_resolved_leaps"], c["num_doubled_leaps"]
    out["rl_tuner/leaps_resolved"] = (resolved.astype(np.float64), (resolved + doubled).astype(np.float64))
    for lag in (1, 2, 3):
        name = f"rl_tuner/autocorrelation_lag{lag}"
        if name in names:
            with np.errstate(all="ignore"):
                ac = autocorrelate_rows(tokens, lag)
            out[name] = (np.nan_to_num(ac, nan=0.0), (~np.isnan(ac)).astype(np.float64))
    return out


def _originality_parts(names: list[str], tokens: np.ndarray, vocab: Vocabulary, corpus,
                       max_copied_notes: int) -> dict[str, Parts]:
    one = np.ones(len(tokens))
    if isinstance(corpus, str):
        raise ValueError(f"corpus {corpus!r}: pass its n-gram index (rlmusic.corpus.index.corpus_index) "
                         "or its token sequences")
    if not any(TARGETS[k].needs == "corpus" for k in names):
        n = corpus.n if isinstance(corpus, originality.NgramIndex) else 4
        return {"unshared_ngrams": (originality.unshared_ngrams(tokens, vocab, n=n), one)}
    if corpus is None:
        wanted = [k for k in names if TARGETS[k].needs == "corpus"]
        raise ValueError(f"targets {wanted} are measured against a corpus, and none was given "
                         "(eval_corpus 'none', or a prior whose training corpus is unknown)")
    orig = originality.originality_scores(tokens, vocab, corpus, max_copied_notes=max_copied_notes)
    return {"novelty": (orig["novelty"], one), "copied_notes": (orig["copied_notes"], one),
            "copied_over_max": ((orig["copied_notes"] > max_copied_notes).astype(np.float64), one),
            "unshared_ngrams": (orig["diversity"], one)}


# --------------------------------------------------------------------------- entry points


def target_parts(
    names: Iterable[str],
    tokens: np.ndarray,
    *,
    vocab: Vocabulary = DEFAULT_VOCAB,
    key: str = "C major",
    corpus=None,
    max_copied_notes: int = 16,
    steps: int | None = None,
) -> dict[str, Parts]:
    """For each target key in ``names``, (num, den) per melody of N melodies (N, T), each (N,):
    the key's evaluation figure (``evaluate_tokens`` with the same ``vocab``, ``key``,
    ``corpus`` and ``max_copied_notes``) is ``figure(num, den)``. A mean key's den is all ones.

    ``corpus``: an ``NgramIndex`` (``rlmusic.corpus.index.corpus_index``) or token sequences,
    needed by ``novelty``, ``copied_notes`` and ``copied_over_max``; with it ``unshared_ngrams``
    uses its n-gram length, as the evaluation table does. Each family is computed once.

    ``steps``: the whole melody's length when ``tokens`` are its first steps (a prefix, as a
    targets run pays the features while a melody grows): per-step shares divide their counts
    by it, not by the prefix's length, and the rules' context has it. None: ``tokens``' length.
    """
    names = list(dict.fromkeys(names))
    for name in names:
        check_target_key(name)
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    if tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise ValueError(f"need at least one melody of one step, got shape {tokens.shape}")
    vocab.validate(tokens.reshape(-1))
    if steps is None:
        steps = tokens.shape[1]
    elif steps < tokens.shape[1]:
        raise ValueError(f"steps={steps} is shorter than the {tokens.shape[1]} steps of the tokens")
    ctx = RuleContext(vocab=vocab, key=Key.parse(key), steps=steps)
    families = {TARGETS[k].family for k in names}
    one = np.ones(len(tokens))
    out: dict[str, Parts] = {}
    if "rl_tuner" in families:
        out.update(_rl_tuner_parts(names, tokens, vocab, ctx.key, steps))
    if "rlmusic" in families:
        out.update({f"rlmusic/{k}": (np.asarray(v[0], np.float64), np.asarray(v[1], np.float64))
                    for k, v in music_theory_parts(tokens, ctx).items()})
    if "structure" in families:
        parts = structure.structure_terms(tokens, ctx)
        out["structure"] = (parts["structure"], one)
        out["bar_structure"] = (parts["bar_structure"], one)
        for k in ("repetition", "variety", "bar_repetition", "cadence", "rhythm_consistency"):
            out[f"structure_{k}"] = (parts[k], one)
    if "originality" in families:
        out.update(_originality_parts(names, tokens, vocab, corpus, max_copied_notes))
    if "notes" in families:
        out["notes_per_melody"] = ((vocab.pitches(tokens) >= 0).sum(axis=1).astype(np.float64), one)
    return {k: out[k] for k in names}


def figure(name: str, num: np.ndarray, den: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Key ``name``'s figure from its parts: ``sum(w * num) / sum(w * den)`` (weights: a
    distribution over the melodies, e.g. a projection's; None: equal), or the key's empty
    value when ``sum(w * den)`` is 0."""
    w = np.ones(len(num)) if weights is None else np.asarray(weights, dtype=np.float64)
    total = float(np.dot(w, den))
    return float(np.dot(w, num) / total) if total > 0 else check_target_key(name).empty


def linearise(name: str, num: np.ndarray, den: np.ndarray, target: float | None = None) -> np.ndarray:
    """The per-melody feature of key ``name`` from its parts: ``num`` for a mean key; for a
    ratio key ``num - target * den`` (``target`` needed), whose mean is >= 0 exactly when the
    ratio is >= ``target``."""
    if not check_target_key(name).ratio:
        return np.asarray(num, dtype=np.float64)
    if target is None or not math.isfinite(target):
        raise ValueError(f"{name} is a ratio of counts: its feature is linearised at the target value c "
                         f"(num - c * den), so pass its target, got {target!r}")
    return np.asarray(num, dtype=np.float64) - float(target) * np.asarray(den, dtype=np.float64)


def target_features(
    names: Iterable[str],
    tokens: np.ndarray,
    targets: Mapping[str, float] | None = None,
    **kwargs,
) -> dict[str, np.ndarray]:
    """Per melody (N,) the feature of each target key in ``names``: for a mean key its
    per-melody value (its mean over the melodies is the key's evaluation figure); for a ratio
    key (``TARGETS[k].ratio``) the linearised ``num - c * den`` at c = ``targets[k]``.
    ``kwargs``: ``vocab``, ``key``, ``corpus``, ``max_copied_notes`` of ``target_parts``."""
    targets = dict(targets or {})
    parts = target_parts(names, tokens, **kwargs)
    return {k: linearise(k, num, den, targets.get(k)) for k, (num, den) in parts.items()}


def target_feature(name: str, tokens: np.ndarray, target: float | None = None, **kwargs) -> np.ndarray:
    """One key's per-melody feature (``target_features``); ``target``: a ratio key's c."""
    return target_features([name], tokens, {name: target} if target is not None else None, **kwargs)[name]
