"""Build a corpus: every item of the sources through ``rlmusic.corpus.encode.encode_item``,
in worker processes, counting what was skipped and adjusted and why."""

from __future__ import annotations

import os
import time
from collections import Counter

from rlmusic.corpus.encode import encode_item
from rlmusic.corpus.pieces import Corpus, Piece
from rlmusic.corpus.sources import (
    corpus_key,
    parse_sources,
    source_items,
    source_label,
    source_slug,
)
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary

# --------------------------------------------------------------------------- build


def build_corpus(
    sources: list[str] | str,
    vocab: Vocabulary = DEFAULT_VOCAB,
    workers: int = 2,
    limit: int | None = None,
    progress: bool = True,
) -> Corpus:
    """Parse and encode ``sources`` (no cache). ``limit`` keeps the first N items of
    each source (tune number, chorale BWV number, MIDI path order) before skipping."""
    srcs = parse_sources(sources)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of pieces per source, got {limit}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    t0 = time.perf_counter()
    items = [it for src in srcs for it in source_items(src, limit)]
    tasks = [(it, vocab) for it in items]
    results: list[tuple[Piece | None, str | None, list[str]]]
    from tqdm import tqdm

    bar = dict(total=len(tasks), desc="corpus " + "+".join(source_slug(s) for s in srcs), unit="piece",
               disable=not progress, dynamic_ncols=True)
    if workers == 1 or len(tasks) < 2:
        results = [encode_item(*t) for t in tqdm(tasks, **bar)]
    else:
        import multiprocessing as mp

        chunk = max(1, min(8, len(tasks) // (workers * 8)))
        with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_encode_star, tasks, chunksize=chunk), **bar))
    pieces, skipped, adjusted = [], Counter(), Counter()
    skipped_items: list[dict[str, str]] = []
    tried = Counter()
    for (src, item_id, payload), (piece, reason, adj) in zip(items, results):
        tried[src] += 1
        if piece is None:
            skipped[f"{source_label(src)}: {reason}"] += 1
            where = str(payload) if src.startswith("midi:") else str(item_id)
            skipped_items.append({"item": where, "source": source_label(src), "reason": str(reason)})
        else:
            pieces.append(piece)
        for a in adj:
            adjusted[f"{source_label(src)}: {a}"] += 1
    for src in srcs:
        if src.startswith("midi:") and not any(p.source == src for p in pieces):
            why = "; ".join(f"{n} {r.split(': ', 1)[1]}" for r, n in skipped.items() if r.startswith(source_label(src)))
            raise ValueError(f"no usable melody in {src[5:]}: tried {tried[src]} MIDI files, skipped {why}")
    return Corpus(
        pieces=pieces,
        vocab=vocab,
        sources=srcs,
        skipped=dict(skipped),
        skipped_items=skipped_items,
        adjusted=dict(adjusted),
        key=corpus_key(srcs, vocab, limit),
        build_seconds=time.perf_counter() - t0,
    )


def _encode_star(args: tuple) -> tuple[Piece | None, str | None, list[str]]:
    return encode_item(*args)
