"""The n-gram index of a corpus split (novelty and copied spans), built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from rlmusic.corpus.cache import load_corpus
from rlmusic.music.originality import NgramIndex
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary


@dataclass(frozen=True)
class _IndexKey:
    sources: str
    split: str | None
    vocab: Vocabulary
    n: int
    span_n: int


_INDEX_CACHE: dict[_IndexKey, NgramIndex] = {}


def corpus_index(
    sources: str = "irish",
    split: str | None = "train",
    vocab: Vocabulary = DEFAULT_VOCAB,
    n: int = 4,
    span_n: int = 6,
) -> NgramIndex:
    """The n-gram index of a corpus split (``load_corpus``), built once per
    process and cached. ``split=None`` indexes every piece."""
    key = _IndexKey(sources, split, vocab, n, span_n)
    if key not in _INDEX_CACHE:
        corpus = load_corpus(sources, vocab=vocab, progress=False)
        seqs = corpus.split(split) if split else [p.tokens for p in corpus.pieces]
        _INDEX_CACHE[key] = NgramIndex.build(seqs, vocab, n, span_n)
    return _INDEX_CACHE[key]
