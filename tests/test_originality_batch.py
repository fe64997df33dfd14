"""The batched originality code (all melodies in one pass) against the melody-by-melody code."""

import numpy as np

from rlmusic.music.originality import NgramIndex, interval_ngrams, note_pitches, originality_scores
from rlmusic.music.representation import DEFAULT_VOCAB as V
from rlmusic.music.representation import Vocabulary

R = Vocabulary.REST


def copied_span_one_by_one(index: NgramIndex, pitches: np.ndarray) -> int:
    """The longest copied span as first written: n-gram after n-gram of one melody, each
    match's run extended from a match of the n-gram before at the corpus position before."""
    best, prev_refs, prev_run = 0, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    for c in interval_ngrams(pitches, index.span_n):
        lo, hi = np.searchsorted(index.span_codes, [c, c + 1])
        refs = index.span_refs[lo:hi]
        run = np.ones(len(refs), dtype=np.int64)
        if len(prev_refs) and len(refs):
            j = np.searchsorted(prev_refs, refs - 1)
            hit = (j < len(prev_refs)) & (prev_refs[np.minimum(j, len(prev_refs) - 1)] == refs - 1)
            run[hit] += prev_run[j[hit]]
        best = max(best, int(run.max())) if len(run) else best
        prev_refs, prev_run = refs, run
    return best + index.span_n if best else 0


def test_batched_originality_equals_melody_by_melody():
    """``longest_copied_spans`` and ``interval_ngrams_of`` (all melodies in one pass) give what
    the melody-by-melody code gives, on copies, partial copies, random and empty melodies."""
    from rlmusic.music.originality import interval_ngrams_of

    rng = np.random.default_rng(0)
    pieces = [np.cumsum(rng.choice([-2, -1, 1, 2, 3, -3, 0], size=60)) % 24 + 60 for _ in range(30)]
    index = NgramIndex.build([np.array([V.pitch_to_token(int(p)) for p in piece]) for piece in pieces], V)
    melodies = [np.zeros(0, dtype=np.int64), np.array([60]), np.array([60, 62, 64])]
    for _ in range(120):
        piece = pieces[rng.integers(len(pieces))]
        start, length = rng.integers(0, 40), rng.integers(5, 40)
        copy = piece[start:start + length] + rng.integers(-5, 6)  # transposed copy
        noise = rng.integers(55, 80, size=rng.integers(0, 12))
        cut = rng.integers(0, len(copy) + 1)
        melodies.append(np.concatenate([copy[:cut], noise, copy[cut:], noise[::-1]]))
    want = [copied_span_one_by_one(index, p) for p in melodies]
    assert max(want) >= 30 and min(want) == 0
    assert index.longest_copied_spans(melodies, chunk=16).tolist() == want
    for n in (1, 4, 6):
        assert [g.tolist() for g in interval_ngrams_of(melodies, n)] == \
            [interval_ngrams(p, n).tolist() for p in melodies]
    tokens = np.stack([np.array([V.pitch_to_token(int(p)) for p in np.clip(m[:20], 48, 84)] + [R] * (20 - len(m[:20])))
                       for m in melodies])
    scores = originality_scores(tokens, V, index)
    one_by_one = [index.novelty(note_pitches(t)) for t in tokens]
    np.testing.assert_allclose(scores["novelty"], np.nan_to_num(one_by_one, nan=0.0))
