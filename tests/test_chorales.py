"""The four-voice chorale corpus: real chorales from music21, on the 16th grid, in C major
/ A minor, split by tune, skips counted; the shipped copy is what a build gives."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from rlmusic.corpus.chorale_corpus import (
    SKIP_DUPLICATE,
    build_chorales,
    load_chorales,
    read_chorales,
    save_chorales,
    tune_of,
)
from rlmusic.corpus.chorales import CHORALE_VOCAB as V
from rlmusic.corpus.chorales import SKIP_OFF_GRID, SKIP_VOICES, bar_positions, encode_chorale_item
from rlmusic.corpus.sources import source_items
from rlmusic.music.representation import Vocabulary, check_monophonic, tokens_to_notes


@pytest.fixture(scope="module")
def corpus():
    return load_chorales(progress=False)


def test_the_shipped_corpus_loads_without_parsing(corpus):
    assert corpus.origin in ("shipped", "cache")
    assert len(corpus) == 400 and corpus.vocab == V
    assert corpus.skipped == {SKIP_OFF_GRID: 5, SKIP_DUPLICATE: 4, SKIP_VOICES: 1}
    assert sum(len(ids) for ids in corpus.splits.values()) == len(corpus)


def test_every_chorale_is_four_voices_in_their_registers(corpus):
    for c in corpus.chorales[:60]:
        assert c.tokens.shape == (4, c.steps) and c.tokens.min() >= 0 and c.tokens.max() < V.size
        means = []
        for row in c.tokens:
            notes = tokens_to_notes(row, V)
            check_monophonic(notes)
            means.append(np.mean([n.pitch for n in notes]))
        assert means == sorted(means, reverse=True), c.id  # soprano above alto above tenor above bass
        assert c.mode in ("major", "minor") and -6 <= c.transposed_by <= 5


def test_chorales_are_in_c_major_or_a_minor(corpus):
    for c in corpus.chorales[:60]:
        pitches = V.pitches(c.tokens)
        hist = np.bincount(pitches[pitches >= 0] % 12, minlength=12)
        tonic = 0 if c.mode == "major" else 9
        assert hist[tonic] > 0 and hist[(tonic + 7) % 12] > 0
        assert hist[[1, 3, 6, 8, 10]].sum() < hist[[0, 2, 4, 5, 7, 9, 11]].sum() / 2  # mostly white keys


def test_splits_keep_a_tune_on_one_side(corpus):
    side = {i: name for name, ids in corpus.splits.items() for i in ids}
    tunes: dict[bytes, set[str]] = {}
    for i, c in enumerate(corpus.chorales):
        tunes.setdefault(tune_of(c), set()).add(side[i])
    assert all(len(sides) == 1 for sides in tunes.values())
    assert sum(len(t) > 0 for t in tunes) < len(corpus)  # Bach set some tunes twice
    assert min(len(corpus.splits[n]) for n in ("valid", "test")) >= 10


def test_bar_positions_follow_the_pickup():
    assert bar_positions(6, 16, 12).tolist() == [12, 13, 14, 15, 0, 1]
    assert bar_positions(4, 12).tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="bar"):
        bar_positions(4, 16, 16)


def test_a_build_gives_what_is_shipped(corpus, tmp_path):
    built = build_chorales(workers=1, limit=3, progress=False)
    assert built.skipped == {} and [c.id for c in built.chorales] == [c.id for c in corpus.chorales[:3]]
    for b, s in zip(built.chorales, corpus.chorales):
        assert (b.tokens == s.tokens).all() and (b.key, b.bar_steps, b.phase) == (s.key, s.bar_steps, s.phase)
    back = read_chorales(save_chorales(built, tmp_path), origin="cache")
    assert [(c.id, c.tokens.tobytes()) for c in back.chorales] == [(c.id, c.tokens.tobytes()) for c in built.chorales]


def test_a_chorale_with_triplets_is_skipped_with_its_reason(corpus):
    item = next(it for it in source_items("bach", None) if it[1] in
                {s["item"] for s in corpus.skipped_items if s["reason"] == SKIP_OFF_GRID})
    chorale, reason, _ = encode_chorale_item(item)
    assert chorale is None and reason == SKIP_OFF_GRID


def test_a_narrow_vocabulary_refuses_the_basses():
    item = source_items("bach", 1)[0]
    chorale, reason, _ = encode_chorale_item(item, Vocabulary(55, 86))
    assert chorale is None and "outside the four-voice vocabulary" in reason


def test_skipped_items_name_the_chorale(corpus):
    reasons = Counter(s["reason"] for s in corpus.skipped_items)
    assert reasons == Counter(corpus.skipped)
    assert all(s["item"].startswith("bach:bwv") for s in corpus.skipped_items)
