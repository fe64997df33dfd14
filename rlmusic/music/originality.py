"""Originality of melodies against a corpus and within a batch.

Reads in this order: transposition-invariant interval n-grams -> ``NgramIndex`` (a
corpus's n-grams, built once: novelty and the longest copied span) -> ``batch_diversity``
and the per-melody ``originality_scores`` (novelty, copied notes, copy penalty,
diversity, originality).

Works on note pitches only (``Vocabulary`` decodes the tokens); knows nothing of the
rules or of where a corpus comes from (``rlmusic.corpus.index`` builds the index of a
corpus split). The definitions are in docs/theory.md ("Originality").
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary

# --------------------------------------------------------------------------- interval n-grams


INTERVAL_CLIP = 64  # intervals are clipped to +-64 semitones before coding
_BASE = 2 * INTERVAL_CLIP + 1  # one digit per interval: n-grams of up to 8 intervals fit int64
MAX_NGRAM = 8


def note_pitches(tokens: Sequence[int], vocab: Vocabulary = DEFAULT_VOCAB) -> np.ndarray:
    """(k,) MIDI pitches of the notes of one melody (rests and holds dropped)."""
    p = vocab.pitches(np.asarray(tokens, dtype=np.int64))
    return p[p >= 0]


def interval_ngrams(pitches: np.ndarray, n: int) -> np.ndarray:
    """Transposition-invariant codes of every run of ``n`` consecutive intervals (n + 1
    notes) -> (max(0, k - n),) int64; equal codes <=> equal interval sequences."""
    if not 1 <= n <= MAX_NGRAM:
        raise ValueError(f"n-gram length must be in 1..{MAX_NGRAM} intervals, got {n}")
    d = np.clip(np.diff(np.asarray(pitches, dtype=np.int64)), -INTERVAL_CLIP, INTERVAL_CLIP) + INTERVAL_CLIP
    if len(d) < n:
        return np.zeros(0, dtype=np.int64)
    w = np.lib.stride_tricks.sliding_window_view(d, n)
    return (w * (_BASE ** np.arange(n, dtype=np.int64))).sum(axis=1)


def interval_ngrams_of(pitches: Sequence[np.ndarray], n: int) -> list[np.ndarray]:
    """``interval_ngrams`` of each melody's pitches, computed in one pass over all of them."""
    sizes = np.array([len(p) for p in pitches], dtype=np.int64)
    flat = _concat([np.asarray(p, dtype=np.int64) for p in pitches])
    if len(flat) <= n:
        return [interval_ngrams(p, n) for p in pitches]
    codes = interval_ngrams(flat, n)  # windows across a melody's end are dropped below
    starts = np.cumsum(sizes) - sizes
    return [codes[s : s + max(0, k - n)] for s, k in zip(starts.tolist(), sizes.tolist(), strict=True)]


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------- corpus index


@dataclass
class NgramIndex:
    """Interval n-grams of a corpus, built once: ``codes`` (sorted, unique) of ``n``-interval
    n-grams for novelty, and every ``span_n``-interval n-gram with its (piece, position) for
    the longest copied span."""

    n: int  # intervals per novelty n-gram (n + 1 notes)
    span_n: int  # intervals per n-gram that seeds a copied span
    codes: np.ndarray  # (U,) int64 sorted unique
    span_codes: np.ndarray  # (S,) int64 sorted
    span_refs: np.ndarray  # (S,) int64: piece * 2**32 + note position, same order
    n_pieces: int

    @classmethod
    def build(
        cls,
        sequences: Sequence[np.ndarray],
        vocab: Vocabulary = DEFAULT_VOCAB,
        n: int = 4,
        span_n: int = 6,
    ) -> NgramIndex:
        """Index token sequences (e.g. ``Corpus.split("train")``)."""
        if span_n < 1 or n < 1:
            raise ValueError(f"n and span_n must be >= 1, got n={n}, span_n={span_n}")
        grams, span, refs = [], [], []
        for i, seq in enumerate(sequences):
            p = note_pitches(seq, vocab)
            grams.append(interval_ngrams(p, n))
            s = interval_ngrams(p, span_n)
            span.append(s)
            refs.append(i * 2**32 + np.arange(len(s), dtype=np.int64))
        span_codes, span_refs = _concat(span), _concat(refs)
        order = np.lexsort((span_refs, span_codes))
        return cls(n, span_n, np.unique(_concat(grams)), span_codes[order], span_refs[order], len(sequences))

    def contains(self, codes: np.ndarray) -> np.ndarray:
        """(k,) bool: each n-gram code occurs in the corpus."""
        pos = np.searchsorted(self.codes, codes)
        return (pos < len(self.codes)) & (self.codes[np.minimum(pos, len(self.codes) - 1)] == codes) \
            if len(self.codes) else np.zeros(len(codes), dtype=bool)

    def novelty(self, pitches: np.ndarray) -> float:
        """Share of the melody's n-grams that are not in the corpus (nan without n-grams)."""
        codes = interval_ngrams(pitches, self.n)
        return float(1.0 - self.contains(codes).mean()) if len(codes) else math.nan

    def longest_copied_span(self, pitches: np.ndarray) -> int:
        """Most consecutive notes of the melody that also occur, in a row, in one corpus piece
        (transposed or not); 0 when no run of ``span_n + 1`` notes is copied."""
        return int(self.longest_copied_spans([pitches])[0])

    def longest_copied_spans(self, pitches: Sequence[np.ndarray], chunk: int = 256) -> np.ndarray:
        """``longest_copied_span`` of each melody (N,), all at once. A copied span is a chain
        of matches (melody n-gram j, corpus n-gram r), (j + 1, r + 1), ...; each match's
        predecessor (j - 1, r - 1) is found by arithmetic (each corpus n-gram knows the one
        before it in its piece), and every chain's length by pointer jumping (log2 of the longest chain
        steps), with no Python loop over melodies or n-grams."""
        out = np.zeros(len(pitches), dtype=np.int64)
        for start in range(0, len(pitches), chunk):
            out[start:start + chunk] = self._spans(pitches[start:start + chunk])
        return out

    @cached_property
    def _previous(self) -> tuple[np.ndarray, np.ndarray]:
        """For each span n-gram: the span index of the n-gram one note earlier in its piece
        (-1 at a piece's start) and that n-gram's code."""
        by_position = np.argsort(self.span_refs, kind="stable")  # refs: piece * 2**32 + position
        previous = np.full(len(by_position), -1, dtype=np.int64)
        same_piece = (self.span_refs[by_position[1:]] & 0xFFFFFFFF) > 0
        previous[by_position[1:][same_piece]] = by_position[:-1][same_piece]
        return previous, np.where(previous >= 0, self.span_codes[np.maximum(previous, 0)], -1)

    def _spans(self, pitches: Sequence[np.ndarray]) -> np.ndarray:
        grams = interval_ngrams_of(pitches, self.span_n)
        sizes = np.array([len(g) for g in grams], dtype=np.int64)
        best = np.zeros(len(grams), dtype=np.int64)
        codes = _concat(grams)
        if not len(codes) or not len(self.span_codes):
            return best
        position = np.arange(len(codes)) - np.repeat(np.cumsum(sizes) - sizes, sizes)  # j within its melody
        lo = np.searchsorted(self.span_codes, codes)
        counts = np.searchsorted(self.span_codes, codes + 1) - lo
        total = int(counts.sum())
        if not total:
            return best
        first = np.cumsum(counts) - counts  # each n-gram's first match
        gram = np.repeat(np.arange(len(codes)), counts)  # each match's melody n-gram
        span = lo[gram] + np.arange(total) - first[gram]  # each match's corpus n-gram (span index)
        previous, previous_code = self._previous
        before = gram - 1  # the melody's n-gram before (when position > 0)
        has = (position[gram] > 0) & (previous_code[span] == codes[before])  # (j - 1, r - 1) is a match
        pred = np.where(has, first[before] + previous[span] - lo[before], -1)
        length, jump = np.ones(total, dtype=np.int64), pred
        while (live := jump >= 0).any():  # pointer jumping: length = matches in the chain up to here
            length[live] += length[jump[live]]
            jump = np.where(live, jump[np.maximum(jump, 0)], -1)
        melody_of_match = np.repeat(np.repeat(np.arange(len(grams)), sizes), counts)
        np.maximum.at(best, melody_of_match, length)
        return np.where(best > 0, best + self.span_n, 0)


def _as_index(corpus, vocab: Vocabulary, n: int, span_n: int) -> NgramIndex:
    if corpus is None:
        raise ValueError("originality needs a corpus: an NgramIndex (rlmusic.corpus.index.corpus_index) "
                         "or the token sequences of the corpus")
    if isinstance(corpus, NgramIndex):
        return corpus
    key = (id(corpus), vocab, n, span_n)
    hit = _OBJECT_INDEX_CACHE.get(key)
    if hit is not None and hit[0] is corpus:  # the same sequences object: reuse its index
        return hit[1]
    seqs = [corpus] if isinstance(corpus, np.ndarray) and corpus.ndim == 1 and corpus.dtype != object else corpus
    index = NgramIndex.build(list(seqs), vocab, n, span_n)
    if len(_OBJECT_INDEX_CACHE) >= 8:
        _OBJECT_INDEX_CACHE.pop(next(iter(_OBJECT_INDEX_CACHE)))
    _OBJECT_INDEX_CACHE[key] = (corpus, index)  # keeps the object alive, so its id stays valid
    return index


_OBJECT_INDEX_CACHE: dict[tuple, tuple[Any, NgramIndex]] = {}


# --------------------------------------------------------------------------- scores


def batch_diversity(tokens: np.ndarray, vocab: Vocabulary = DEFAULT_VOCAB, n: int = 4) -> float:
    """Distinct n-grams across all melodies over all n-grams (1.0 when there is none)."""
    allg = _concat(interval_ngrams_of([note_pitches(t, vocab) for t in np.atleast_2d(tokens)], n))
    return float(len(np.unique(allg)) / len(allg)) if len(allg) else 1.0


def _only_mine(ngrams: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per melody (its n-grams): its distinct n-grams and, for each, whether no other melody has it."""
    grams = [np.unique(g) for g in ngrams]
    allg = np.concatenate(grams) if grams else np.zeros(0, dtype=np.int64)
    _, inverse, counts = np.unique(allg, return_inverse=True, return_counts=True)
    only_mine = np.split(counts[inverse] == 1, np.cumsum([len(g) for g in grams])[:-1]) if grams else []
    return list(zip(grams, only_mine, strict=True))


def _unshared(ngrams: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([mine.mean() if len(g) else 0.0 for g, mine in _only_mine(ngrams)])


class RecentNgrams:
    """The distinct n-grams of the last ``size`` melodies, counted, for a diversity that looks
    beyond one batch: ``unshared(pitches)`` is ``unshared_ngrams`` of a batch in which a gram
    also counts as shared when a remembered melody has it; ``add`` then remembers the batch
    (the oldest melodies leave first)."""

    def __init__(self, size: int, n: int = 4):
        if size < 0:
            raise ValueError(f"memory size must be >= 0, got {size}")
        self.size, self.n = size, n
        self.melodies: deque[np.ndarray] = deque()
        self.counts: dict[int, int] = {}

    def unshared(self, pitches: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        for grams, mine in _only_mine(interval_ngrams_of(pitches, self.n)):
            seen = np.fromiter((g in self.counts for g in grams.tolist()), bool, len(grams))
            out.append(float((mine & ~seen).mean()) if len(grams) else 0.0)
        return np.array(out)

    def add(self, pitches: Sequence[np.ndarray]) -> None:
        for p in pitches:
            grams = np.unique(interval_ngrams(p, self.n))
            self.melodies.append(grams)
            for g in grams.tolist():
                self.counts[g] = self.counts.get(g, 0) + 1
        while len(self.melodies) > self.size:
            for g in self.melodies.popleft().tolist():
                self.counts[g] -= 1
                if not self.counts[g]:
                    del self.counts[g]


def unshared_ngrams(tokens: np.ndarray, vocab: Vocabulary = DEFAULT_VOCAB, n: int = 4) -> np.ndarray:
    """Per melody, the share of its distinct ``n``-interval n-grams found in no other melody of
    the batch (0 for a melody without one): (N, T) -> (N,). The per-melody ``diversity`` of
    ``originality_scores`` and of the tuning reward. Unlike ``batch_diversity`` it does not
    fall when a melody repeats its own material, only when melodies share theirs."""
    return _unshared(interval_ngrams_of([note_pitches(t, vocab) for t in np.atleast_2d(tokens)], n))


def originality_scores(
    tokens: np.ndarray,
    vocab: Vocabulary = DEFAULT_VOCAB,
    corpus: NgramIndex | Sequence[np.ndarray] | None = None,
    *,
    n: int = 4,
    span_n: int = 6,
    max_copied_notes: int = 16,
) -> dict[str, np.ndarray]:
    """Per-melody originality of N melodies (N, T) -> name -> (N,):

    - ``novelty``: share of the melody's ``n``-interval n-grams absent from the corpus
      (0 for a melody with fewer than n + 1 notes);
    - ``copied_notes``: longest run of notes copied from one corpus piece (0 below
      ``span_n + 1``); ``copy_penalty`` = min(1, max(0, copied - max) / max);
    - ``diversity``: share of the melody's n-grams found in no other melody of the batch
      (a batch collapsed to one tune scores 0);
    - ``originality`` = novelty * (1 - copy_penalty), in [0, 1].

    ``corpus``: an ``NgramIndex`` (reuse it; ``rlmusic.corpus.index.corpus_index`` caches
    one per corpus split) or token sequences (indexed here, cached by object).
    """
    if max_copied_notes < 1:
        raise ValueError(f"max_copied_notes must be >= 1, got {max_copied_notes}")
    index = _as_index(corpus, vocab, n, span_n)
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    pitches = [note_pitches(t, vocab) for t in tokens]
    grams = interval_ngrams_of(pitches, index.n)
    sizes = np.array([len(g) for g in grams], dtype=np.int64)
    known = np.concatenate([[0], np.cumsum(index.contains(_concat(grams)))])  # n-grams in the corpus, so far
    ends = np.cumsum(sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        novelty = np.where(sizes > 0, 1.0 - (known[ends] - known[ends - sizes]) / sizes, math.nan)
    copied = index.longest_copied_spans(pitches).astype(np.float64)
    penalty = np.minimum(1.0, np.maximum(0.0, copied - max_copied_notes) / max_copied_notes)
    diversity = _unshared(grams)  # the same n-grams as novelty's
    novelty = np.nan_to_num(novelty, nan=0.0)
    return {"novelty": novelty, "copied_notes": copied, "copy_penalty": penalty,
            "diversity": diversity, "originality": novelty * (1.0 - penalty)}
