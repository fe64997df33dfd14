"""Per-melody target features (rlmusic.music.targets): for every target key, on the same
melodies of the shipped prior, the feature's mean is that key's evaluation figure."""

from __future__ import annotations

import math

import numpy as np
import pytest
from seeding import seed

from rlmusic.music.targets import (
    TARGET_KEYS,
    TARGETS,
    figure,
    target_feature,
    target_features,
    target_parts,
)


@pytest.fixture(scope="module", params=[(200, 32), (48, 128)], ids=["200x32", "48x128"])
def melodies(request):
    """Prior samples, the corpus index of the prior's training corpus and their evaluation table."""
    from rlmusic.corpus.index import corpus_index
    from rlmusic.evaluation.table import evaluate_tokens
    from rlmusic.models.checkpoint import load_model, training_corpus
    from rlmusic.models.generate import sample_tokens

    n, steps = request.param
    tokens = sample_tokens(load_model(), n, steps, seed=seed(steps))
    index = corpus_index(training_corpus(None))
    return tokens, index, evaluate_tokens(tokens, corpus=index)


def same(a: float, b: float, tol: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol


def test_evaluation_reports_every_target_key(melodies):
    _, _, table = melodies
    assert [k for k in TARGET_KEYS if k not in table] == []


def test_every_key_has_a_feature_whose_mean_is_its_figure(melodies):
    tokens, index, table = melodies
    parts = target_parts(TARGET_KEYS, tokens, corpus=index)
    wrong = {k: (figure(k, *parts[k]), table[k]) for k in TARGET_KEYS if not same(figure(k, *parts[k]), table[k])}
    assert wrong == {}
    means = {k: f for k, f in target_features(TARGET_KEYS, tokens, {k: 0.5 for k in TARGET_KEYS},
                                              corpus=index).items() if not TARGETS[k].ratio}
    assert {k: v.shape for k, v in means.items()} == dict.fromkeys(means, (len(tokens),))
    assert {k: v.mean() for k, v in means.items() if not same(v.mean(), table[k])} == {}


@pytest.mark.parametrize("key", [k for k in TARGET_KEYS if TARGETS[k].ratio])
def test_a_ratio_is_linearised_at_its_target(melodies, key):
    """mean(num - c den) >= 0 exactly when the ratio >= c; and mean / mean(den) + c is the ratio."""
    tokens, index, table = melodies
    ratio = table[key]
    _, den = target_parts([key], tokens, corpus=index)[key]
    for c in (ratio - 0.05, ratio - 1e-6, ratio + 1e-6, ratio + 0.05):
        lin = target_feature(key, tokens, c, corpus=index)
        assert (lin.mean() >= 0) == (ratio >= c), (key, c, ratio, lin.mean())
        assert same(lin.mean() / den.mean() + c, ratio)
    with pytest.raises(ValueError, match=f"{key} is a ratio of counts.*pass its target"):
        target_feature(key, tokens)


def test_leaps_resolved_is_resolved_minus_c_times_outcomes(melodies):
    from rlmusic.music.rl_tuner_metrics import rl_tuner_metrics

    tokens, _, _ = melodies
    counts = rl_tuner_metrics(tokens)
    lin = target_feature("rl_tuner/leaps_resolved", tokens, 0.92)
    assert same(lin.sum(), counts["num_resolved_leaps"] - 0.92 * counts["num_leap_outcomes"], 1e-6)


def test_unshared_ngrams_depends_on_the_batch(melodies):
    """A melody's unshared share is relative to the other melodies: alone, all its n-grams are its own."""
    tokens, _, _ = melodies
    in_batch = target_feature("unshared_ngrams", tokens)
    alone = np.array([target_feature("unshared_ngrams", t[None, :])[0] for t in tokens[:20]])
    assert (alone >= in_batch[:20]).all() and (alone > in_batch[:20]).any()
    assert TARGETS["unshared_ngrams"].needs == "batch"


def test_unknown_keys_and_missing_inputs_raise():
    tokens = np.zeros((2, 16), dtype=np.int64)
    with pytest.raises(ValueError, match=r"unknown target key 'nope'; valid: rl_tuner/notes_excessively_repeated, "):
        target_feature("nope", tokens)
    with pytest.raises(ValueError, match="measured against a corpus"):
        target_feature("novelty", tokens)
    from rlmusic.music.representation import Vocabulary

    with pytest.raises(ValueError, match="rl_tuner/\\* targets need the vocabulary"):
        target_feature("rl_tuner/notes_not_in_key", np.full((2, 16), 2), vocab=Vocabulary(40, 90))
