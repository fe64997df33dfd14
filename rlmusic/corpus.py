"""Melody corpora: the ``Corpus``/``Piece`` containers, splits, cache and the CLI.

Reads in this order: the containers (``Piece``, ``Corpus``, ``describe``) ->
deterministic splits -> ``build_corpus`` (every item of the sources through
``rlmusic.sources.encode_item``, in worker processes) -> the cache (``corpus_key``,
``save_corpus``, ``read_corpus``), ``merge_corpora`` and ``load_corpus`` -> the
``rlmusic corpus`` command.

What each source is and how one piece becomes tokens (parsing, key, transposition,
quantisation, ties, skip and adjustment reasons) is in ``rlmusic.sources``; its
public names are importable from here too.

Splits are deterministic from piece ids (a hash), so a piece keeps its split when a
corpus grows or is merged with another. Encoded corpora are cached under
``RLMUSIC_HOME/corpora/<key>.npz`` (+ ``<key>.json``); ``irish`` and ``bach`` are also
shipped in ``rlmusic/data/corpus/`` so that a fresh machine need not parse for minutes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlmusic.representation import DEFAULT_VOCAB, Vocabulary
from rlmusic.sources import (  # noqa: F401  (names defined there, re-exported: see __all__)
    ADJ_CHORD,
    ADJ_FOLDED,
    ADJ_GRACE,
    ADJ_LOST,
    ADJ_POLY,
    ADJ_REPEATS,
    ADJ_ROUNDED,
    MAJOR_LIKE,
    MIDI_SUFFIXES,
    MINOR_LIKE,
    PITCH_CLASS_NAMES,
    SKIP_EMPTY,
    SKIP_NO_KEY,
    SKIP_PARSE,
    SKIP_RANGE,
    SKIP_TUPLET,
    SOURCE_NAMES,
    Event,
    SkipPiece,
    encode_events,
    encode_item,
    estimate_key,
    midi_files,
    parse_sources,
    source_items,
)

CORPUS_FORMAT_VERSION = 1  # bump when the pipeline (rlmusic.sources) changes what a piece encodes to
SPLIT_NAMES = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)  # train, valid, test
SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "corpus"


# --------------------------------------------------------------------------- data


@dataclass
class Piece:
    """One normalised melody: tokens of the corpus vocabulary, in C major / A minor."""

    id: str  # "irish:0001", "bach:bwv269", "midi:<folder>/<relative path>"
    source: str  # "irish", "bach" or "midi:DIR"
    title: str
    tokens: np.ndarray  # (T,) int64, one token per 16th note
    key: str  # original key, music21 spelling: "g minor", "D major", "A dorian"
    mode: str  # "major" or "minor" (modes grouped as in MAJOR_LIKE / MINOR_LIKE)
    transposed_by: int  # semitones applied to the whole piece (key + octave moves)


@dataclass
class Corpus:
    """Encoded pieces plus what was skipped and the deterministic splits."""

    pieces: list[Piece]
    vocab: Vocabulary
    sources: list[str]
    skipped: dict[str, int] = field(default_factory=dict)  # "source: reason" -> pieces
    splits: dict[str, list[int]] = field(default_factory=dict)  # indices into pieces
    adjusted: dict[str, int] = field(default_factory=dict)  # "source: change" -> pieces kept
    key: str = ""  # cache key (see corpus_key)
    build_seconds: float | None = None  # wall time of the build this corpus came from
    origin: str = "built"  # "built", "cache" or "shipped"

    def __post_init__(self) -> None:
        if not self.splits:
            self.splits = make_splits([p.id for p in self.pieces])

    def __len__(self) -> int:
        return len(self.pieces)

    @property
    def n_tokens(self) -> int:
        return int(sum(len(p.tokens) for p in self.pieces))

    def split(self, name: str) -> list[np.ndarray]:
        """Token arrays of one split ("train", "valid" or "test")."""
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; valid: {', '.join(SPLIT_NAMES)}")
        return [self.pieces[i].tokens for i in self.splits[name]]

    def describe(self) -> str:
        """Counts per source, tokens, splits, skipped and adjusted pieces by reason."""
        v = self.vocab
        lines = [
            f"corpus {self.key or '+'.join(self.sources)} ({self.origin}): {len(self):,} pieces, "
            f"{self.n_tokens:,} tokens (pitches {v.min_pitch}..{v.max_pitch}, {v.size} tokens)"
        ]
        by_source: dict[str, list[Piece]] = {}
        for p in self.pieces:
            by_source.setdefault(p.source, []).append(p)
        width = max([len(s) for s in self.sources] + [6])
        for src in self.sources:
            ps = by_source.get(src, [])
            n_tok = sum(len(p.tokens) for p in ps)
            minor = sum(p.mode == "minor" for p in ps)
            mean = n_tok / len(ps) if ps else 0.0
            lines.append(
                f"  {src.ljust(width)}  {len(ps):6,} pieces  {n_tok:10,} tokens  "
                f"mean {mean:6.1f} steps  {minor:,} minor"
            )
        lines.append("  splits: " + ", ".join(f"{n} {len(self.splits[n]):,}" for n in SPLIT_NAMES))
        for title, counts in (("skipped", self.skipped), ("adjusted (kept)", self.adjusted)):
            total = sum(counts.values())
            lines.append(f"  {title}: {total:,} pieces" + (":" if total else ""))
            for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
                lines.append(f"    {n:6,}  {reason}")
        if self.build_seconds is not None:
            lines.append(f"  build time: {self.build_seconds:.1f} s")
        return "\n".join(lines)


def make_splits(ids: list[str], fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> dict[str, list[int]]:
    """Deterministic train/valid/test indices from a hash of each id.

    A piece's split depends only on its id, so it never moves when pieces are added.
    With >= 3 pieces every split gets at least one: an empty split takes the piece
    of the largest split whose hash lies nearest to the empty split's interval.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"split fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    u = np.array([_unit_hash(i) for i in ids], dtype=np.float64)
    edges = np.cumsum(fractions)[:2]
    which = np.searchsorted(edges, u, side="right")  # 0 train, 1 valid, 2 test
    if len(ids) >= 3:
        for s in range(3):
            if not (which == s).any():
                counts = np.bincount(which, minlength=3)
                donor = int(counts.argmax())
                lo = 0.0 if s == 0 else edges[s - 1]
                hi = 1.0 if s == 2 else edges[s]
                cand = np.flatnonzero(which == donor)
                dist = np.minimum(np.abs(u[cand] - lo), np.abs(u[cand] - hi))
                which[cand[int(dist.argmin())]] = s
    return {name: np.flatnonzero(which == s).tolist() for s, name in enumerate(SPLIT_NAMES)}


def _unit_hash(text: str) -> float:
    digest = hashlib.sha1(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


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

    bar = dict(total=len(tasks), desc="corpus " + "+".join(_slug(s) for s in srcs), unit="piece",
               disable=not progress, dynamic_ncols=True)
    if workers == 1 or len(tasks) < 2:
        results = [encode_item(*t) for t in tqdm(tasks, **bar)]
    else:
        import multiprocessing as mp

        chunk = max(1, min(8, len(tasks) // (workers * 8)))
        with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_encode_star, tasks, chunksize=chunk), **bar))
    pieces, skipped, adjusted = [], Counter(), Counter()
    tried = Counter()
    for (src, _, _), (piece, reason, adj) in zip(items, results):
        tried[src] += 1
        if piece is None:
            skipped[f"{_label(src)}: {reason}"] += 1
        else:
            pieces.append(piece)
        for a in adj:
            adjusted[f"{_label(src)}: {a}"] += 1
    for src in srcs:
        if src.startswith("midi:") and not any(p.source == src for p in pieces):
            why = "; ".join(f"{n} {r.split(': ', 1)[1]}" for r, n in skipped.items() if r.startswith(_label(src)))
            raise ValueError(f"no usable melody in {src[5:]}: tried {tried[src]} MIDI files, skipped {why}")
    return Corpus(
        pieces=pieces,
        vocab=vocab,
        sources=srcs,
        skipped=dict(skipped),
        adjusted=dict(adjusted),
        key=corpus_key(srcs, vocab, limit),
        build_seconds=time.perf_counter() - t0,
    )


def _encode_star(args: tuple) -> tuple[Piece | None, str | None, list[str]]:
    return encode_item(*args)


# --------------------------------------------------------------------------- cache


def _label(source: str) -> str:
    return "midi" if source.startswith("midi:") else source


def _slug(source: str) -> str:
    """File-name-safe form of one source; a midi folder is named by path and content."""
    if not source.startswith("midi:"):
        return source
    folder = Path(source[5:])
    h = hashlib.sha1(str(folder).encode())
    for p in midi_files(folder):
        st = p.stat()
        h.update(f"\0{p.relative_to(folder).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name)[:40] or "root"
    return f"midi-{name}-{h.hexdigest()[:10]}"


def corpus_key(sources: list[str] | str, vocab: Vocabulary = DEFAULT_VOCAB, limit: int | None = None) -> str:
    """Cache key: sources, pitch range, limit and ``CORPUS_FORMAT_VERSION``."""
    srcs = parse_sources(sources)
    lim = "all" if limit is None else f"n{limit}"
    return f"{'+'.join(_slug(s) for s in srcs)}-p{vocab.min_pitch}-{vocab.max_pitch}-{lim}-v{CORPUS_FORMAT_VERSION}"


def cache_dir() -> Path:
    from rlmusic.runtime import home

    path = home() / "corpora"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; caches and shipped data are readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        "adjusted": corpus.adjusted,
        "build_seconds": corpus.build_seconds,
    }


def save_corpus(corpus: Corpus, folder: Path | str, key: str | None = None) -> Path:
    """Write ``<key>.npz`` (uint8 tokens concatenated + offsets + metadata JSON) and a
    ``<key>.json`` summary into ``folder``, each atomically; returns the npz path."""
    from rlmusic.runtime import git_commit, now_iso

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
    _atomic_write(path, lambda f: np.savez_compressed(f, tokens=tokens, offsets=offsets, meta=meta_bytes))
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    _atomic_write(folder / f"{key}.json", lambda f: f.write(text.encode("utf-8")))
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


# --------------------------------------------------------------------------- CLI


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="corpus_command", required=True, metavar="{build,info}")
    for name, help_text in (
        ("build", "parse sources into a cached token corpus (uses the cache unless --rebuild)"),
        ("info", "print the summary of a corpus (built first when not cached)"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--source", action="append", default=None,
            help="corpus source, repeatable: bach, irish or midi:DIR; 'irish+bach' also works (default: irish)",
        )
        p.add_argument("--limit", type=int, default=None, help="first N pieces of each source (default: all)")
        p.add_argument("--min-pitch", type=int, default=DEFAULT_VOCAB.min_pitch, help="lowest MIDI pitch of the vocabulary")
        p.add_argument("--max-pitch", type=int, default=DEFAULT_VOCAB.max_pitch, help="highest MIDI pitch of the vocabulary")
        p.add_argument("--workers", type=int, default=2, help="parallel parser processes (when building)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        if name == "build":
            p.add_argument("--rebuild", action="store_true", help="ignore cached and shipped corpora and parse again")
            p.add_argument("--out", type=Path, default=None,
                           help="also write <key>.npz/.json into this folder (e.g. rlmusic/data/corpus to ship)")


def main(args) -> int:
    sources = [s for arg in (args.source or ["irish"]) for s in parse_sources(arg)]
    vocab = Vocabulary(args.min_pitch, args.max_pitch)
    corpus = load_corpus(
        sources, vocab, workers=args.workers, limit=args.limit,
        rebuild=getattr(args, "rebuild", False), progress=not args.quiet,
    )
    print(corpus.describe())
    if getattr(args, "out", None) is not None:
        print(f"wrote {save_corpus(corpus, args.out)}")
    return 0


__all__ = [
    # containers, splits, build, cache, CLI
    "CORPUS_FORMAT_VERSION", "SPLIT_NAMES", "SPLIT_FRACTIONS", "SHIPPED_DIR", "Piece", "Corpus",
    "make_splits", "build_corpus", "corpus_key", "cache_dir", "save_corpus", "read_corpus",
    "merge_corpora", "load_corpus", "add_arguments", "main",
    # rlmusic.sources
    "SOURCE_NAMES", "MIDI_SUFFIXES", "MAJOR_LIKE", "MINOR_LIKE", "PITCH_CLASS_NAMES",
    "SKIP_TUPLET", "SKIP_EMPTY", "SKIP_RANGE", "SKIP_PARSE", "SKIP_NO_KEY", "ADJ_GRACE",
    "ADJ_CHORD", "ADJ_POLY", "ADJ_REPEATS", "ADJ_FOLDED", "ADJ_ROUNDED", "ADJ_LOST",
    "parse_sources", "midi_files", "source_items", "SkipPiece", "Event", "encode_events",
    "estimate_key", "encode_item",
]
