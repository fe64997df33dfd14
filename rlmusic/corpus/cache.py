"""The corpus cache: ``save_corpus`` / ``read_corpus`` files, ``merge_corpora`` and
``load_corpus`` (cache, else the corpora shipped in ``rlmusic/data/corpus``, else build).

Encoded corpora are cached under ``RLMUSIC_HOME/corpora/<key>.npz`` (+ ``<key>.json``);
``irish`` and ``bach`` are also shipped so that a fresh machine need not parse for minutes.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from rlmusic.corpus.build import build_corpus
from rlmusic.corpus.pieces import SPLIT_NAMES, Corpus, Piece
from rlmusic.corpus.sources import CORPUS_FORMAT_VERSION, corpus_key, parse_sources
from rlmusic.fileio import write_atomic
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary
from rlmusic.runtime import git_commit, home, now_iso

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "data" / "corpus"


def cache_dir() -> Path:
    path = home() / "corpora"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _summary(corpus: Corpus) -> dict:
    by_source = Counter(p.source for p in corpus.pieces)
    return {
        "format": CORPUS_FORMAT_VERSION,
        "key": corpus.key,
        "sources": corpus.sources,
        "vocab": corpus.vocab.to_dict(),
        "n_pieces": len(corpus),
        "n_tokens": corpus.n_tokens,
        "pieces_per_source": {s: by_source.get(s, 0) for s in corpus.sources},
        "splits": {n: len(corpus.splits[n]) for n in SPLIT_NAMES},
        "skipped": corpus.skipped,
        "skipped_items": corpus.skipped_items,
        "adjusted": corpus.adjusted,
        "build_seconds": corpus.build_seconds,
    }


def save_corpus(corpus: Corpus, folder: Path | str, key: str | None = None) -> Path:
    """Write ``<key>.npz`` (uint8 tokens concatenated + offsets + metadata JSON) and a
    ``<key>.json`` summary into ``folder``, each atomically; returns the npz path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = key or corpus.key
    dtype = np.uint8 if corpus.vocab.size <= 256 else np.uint16
    lengths = [len(p.tokens) for p in corpus.pieces]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = (
        np.concatenate([p.tokens for p in corpus.pieces]).astype(dtype) if corpus.pieces else np.zeros(0, dtype)
    )
    summary = _summary(corpus) | {"built_at": now_iso(), "git_commit": git_commit()}
    meta = summary | {
        "pieces": [[p.id, p.source, p.title, p.key, p.mode, p.transposed_by] for p in corpus.pieces]
    }
    meta_bytes = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    path = folder / f"{key}.npz"
    write_atomic(path, lambda f: np.savez_compressed(f, tokens=tokens, offsets=offsets, meta=meta_bytes), fsync=False)
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    write_atomic(folder / f"{key}.json", text, fsync=False)
    return path


def read_corpus(path: Path | str, vocab: Vocabulary | None = None, origin: str = "cache") -> Corpus:
    """Load a ``save_corpus`` file; checks format version and (when given) the vocabulary."""
    with np.load(path, allow_pickle=False) as z:
        tokens, offsets = z["tokens"].astype(np.int64), z["offsets"]
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
    if meta.get("format") != CORPUS_FORMAT_VERSION:
        raise ValueError(f"{path}: corpus format {meta.get('format')}, expected {CORPUS_FORMAT_VERSION}")
    stored = Vocabulary.from_dict(meta["vocab"])
    if vocab is not None:
        vocab.check_same(stored, what=f"corpus {path}")
    pieces = [
        Piece(pid, src, title, tokens[offsets[i] : offsets[i + 1]].copy(), key, mode, int(shift))
        for i, (pid, src, title, key, mode, shift) in enumerate(meta["pieces"])
    ]
    return Corpus(
        pieces=pieces,
        vocab=stored,
        sources=list(meta["sources"]),
        skipped=dict(meta["skipped"]),
        skipped_items=meta.get("skipped_items"),
        adjusted=dict(meta.get("adjusted", {})),
        key=meta["key"],
        build_seconds=meta.get("build_seconds"),
        origin=origin,
    )


def merge_corpora(corpora: list[Corpus]) -> Corpus:
    """Concatenate corpora with the same vocabulary (splits recomputed from ids: unchanged)."""
    if not corpora:
        raise ValueError("nothing to merge")
    vocab = corpora[0].vocab
    for c in corpora[1:]:
        vocab.check_same(c.vocab, what=f"corpus {c.key}")
    if len(corpora) == 1:
        return corpora[0]
    skipped, adjusted = Counter(), Counter()
    items = None if any(c.skipped_items is None for c in corpora) else [i for c in corpora for i in c.skipped_items]
    for c in corpora:
        skipped.update(c.skipped)
        adjusted.update(c.adjusted)
    keys = [c.key.rsplit("-p", 1) for c in corpora]
    origins = sorted({c.origin for c in corpora})
    return Corpus(
        pieces=[p for c in corpora for p in c.pieces],
        vocab=vocab,
        sources=[s for c in corpora for s in c.sources],
        skipped=dict(skipped),
        skipped_items=items,
        adjusted=dict(adjusted),
        key="+".join(k[0] for k in keys) + "-p" + keys[0][1],
        build_seconds=None,
        origin="+".join(origins),
    )


def load_corpus(
    sources: str | list[str],
    vocab: Vocabulary = DEFAULT_VOCAB,
    workers: int = 2,
    limit: int | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> Corpus:
    """The corpus of ``sources``, each source from the cache (``RLMUSIC_HOME/corpora``),
    else the shipped corpora (``rlmusic/data/corpus``), else built and cached.

    ``rebuild=True`` ignores both and rebuilds (and re-caches) every source.
    """
    parts = []
    for src in parse_sources(sources):
        key = corpus_key([src], vocab, limit)
        corpus = None
        if not rebuild:
            for folder, origin in ((cache_dir(), "cache"), (SHIPPED_DIR, "shipped")):
                path = folder / f"{key}.npz"
                if path.exists():
                    try:
                        corpus = read_corpus(path, vocab, origin=origin)
                        break
                    except (ValueError, OSError, KeyError) as exc:
                        warnings.warn(f"ignoring unreadable corpus cache {path}: {exc}", stacklevel=2)
        if corpus is None:
            corpus = build_corpus([src], vocab, workers=workers, limit=limit, progress=progress)
            save_corpus(corpus, cache_dir(), key)
        parts.append(corpus)
    return merge_corpora(parts)
