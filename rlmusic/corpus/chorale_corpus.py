"""The four-voice chorale corpus: every bundled Bach chorale through
``rlmusic.corpus.chorales.encode_chorale_item``, what was skipped and why, splits that
keep a tune on one side, and the cache (``load_chorales``: the cache under
``RLMUSIC_HOME/corpora``, else the copy shipped in ``rlmusic/data/corpus``, else built).

Splits: Bach set many tunes more than once (``bwv244.15``, ``.17`` and ``.44`` carry the
same soprano). Exact copies of a four-voice chorale are skipped as duplicates; chorales
whose sopranos have the same pitch sequence form one tune and go to one split, drawn
from the hash of the tune's first id (``make_splits``), so no held-out soprano has a
twin in training.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rlmusic.corpus.cache import SHIPPED_DIR, cache_dir
from rlmusic.corpus.chorales import CHORALE_VOCAB, Chorale, encode_chorale_item
from rlmusic.corpus.pieces import SPLIT_NAMES, make_splits
from rlmusic.corpus.sources import source_items
from rlmusic.fileio import write_atomic
from rlmusic.music.representation import Vocabulary
from rlmusic.runtime import git_commit, now_iso

CHORALE_FORMAT_VERSION = 1  # bump when rlmusic.corpus.chorales changes what a chorale encodes to
SKIP_DUPLICATE = "duplicate of another chorale (all four voices)"


@dataclass
class ChoraleCorpus:
    """Encoded four-voice chorales, what was skipped and adjusted, and the splits."""

    chorales: list[Chorale]
    vocab: Vocabulary
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> chorales
    skipped_items: list[dict[str, str]] = field(default_factory=list)  # {"item", "reason"}
    adjusted: dict[str, int] = field(default_factory=dict)  # change -> chorales kept
    splits: dict[str, list[int]] = field(default_factory=dict)  # indices into chorales
    build_seconds: float | None = None  # wall time of the build this corpus came from
    origin: str = "built"  # "built", "cache" or "shipped"

    def __post_init__(self) -> None:
        if not self.splits:
            self.splits = tune_splits(self.chorales)

    def __len__(self) -> int:
        return len(self.chorales)

    @property
    def key(self) -> str:
        return chorale_key(self.vocab)

    def split(self, name: str) -> list[Chorale]:
        """The chorales of one split ("train", "valid" or "test")."""
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; valid: {', '.join(SPLIT_NAMES)}")
        return [self.chorales[i] for i in self.splits[name]]

    def describe(self) -> str:
        v = self.vocab
        frames = sum(c.steps for c in self.chorales)
        lines = [f"chorales {self.key} ({self.origin}): {len(self):,} four-voice chorales, {frames:,} frames "
                 f"(16th steps; pitches {v.min_pitch}..{v.max_pitch}, {v.size} tokens a voice), "
                 f"{sum(c.mode == 'minor' for c in self.chorales)} minor",
                 "  splits (by tune): " + ", ".join(f"{n} {len(self.splits[n])}" for n in SPLIT_NAMES)]
        for title, counts in (("skipped", self.skipped), ("adjusted (kept)", self.adjusted)):
            lines.append(f"  {title}: {sum(counts.values())} chorales" + (":" if counts else ""))
            lines += [f"    {n:4d}  {r}" for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        return "\n".join(lines)


def tune_of(chorale: Chorale, vocab: Vocabulary = CHORALE_VOCAB) -> bytes:
    """What makes two chorales one tune: the soprano's pitch sequence (rhythm ignored)."""
    pitches = vocab.pitches(chorale.tokens[0])
    return pitches[pitches >= 0].astype(np.int16).tobytes()


def tune_splits(chorales: list[Chorale]) -> dict[str, list[int]]:
    """Train/valid/test indices with every tune on one side (hash of its first id)."""
    groups: dict[bytes, list[int]] = {}
    for i, c in enumerate(chorales):
        groups.setdefault(tune_of(c), []).append(i)
    members = list(groups.values())
    which = make_splits([min(chorales[i].id for i in group) for group in members])
    return {name: sorted(i for g in which[name] for i in members[g]) for name in SPLIT_NAMES}


# --------------------------------------------------------------------------- build


def build_chorales(vocab: Vocabulary = CHORALE_VOCAB, workers: int = 2, limit: int | None = None,
                   progress: bool = True) -> ChoraleCorpus:
    """Parse and encode music21's bundled chorales (no cache); ``limit``: the first N."""
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    t0 = time.perf_counter()
    items = source_items("bach", limit)
    bar = dict(total=len(items), desc="chorales", unit="chorale", disable=not progress, dynamic_ncols=True)
    tasks = [(it, vocab) for it in items]
    if workers == 1 or len(tasks) < 2:
        results = [encode_chorale_item(*t) for t in tqdm(tasks, **bar)]
    else:
        import multiprocessing as mp

        with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_encode_star, tasks, chunksize=4), **bar))
    chorales, skipped, adjusted, skipped_items = [], Counter(), Counter(), []
    seen: dict[bytes, str] = {}
    for (_, item_id, _), (chorale, reason, adj) in zip(items, results):
        if chorale is not None and (twin := seen.get(chorale.tokens.tobytes())) is not None:
            chorale, reason = None, SKIP_DUPLICATE
            item_id = f"{item_id} (= {twin})"
        if chorale is None:
            skipped[reason] += 1
            skipped_items.append({"item": item_id, "reason": str(reason)})
            continue
        seen[chorale.tokens.tobytes()] = chorale.id
        chorales.append(chorale)
        adjusted.update(adj)
    return ChoraleCorpus(chorales, vocab, dict(skipped), skipped_items, dict(adjusted),
                         build_seconds=time.perf_counter() - t0)


def _encode_star(args: tuple):
    return encode_chorale_item(*args)


# --------------------------------------------------------------------------- files and cache


def chorale_key(vocab: Vocabulary = CHORALE_VOCAB, limit: int | None = None) -> str:
    lim = "all" if limit is None else f"n{limit}"
    return f"chorales-p{vocab.min_pitch}-{vocab.max_pitch}-{lim}-v{CHORALE_FORMAT_VERSION}"


def save_chorales(corpus: ChoraleCorpus, folder: Path | str, key: str | None = None) -> Path:
    """Write ``<key>.npz`` (uint8 (4, frames) tokens + offsets + metadata) atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = np.concatenate([c.tokens for c in corpus.chorales], axis=1).astype(np.uint8)
    offsets = np.concatenate([[0], np.cumsum([c.steps for c in corpus.chorales])]).astype(np.int64)
    meta = {"format": CHORALE_FORMAT_VERSION, "vocab": corpus.vocab.to_dict(), "skipped": corpus.skipped,
            "skipped_items": corpus.skipped_items, "adjusted": corpus.adjusted, "splits": corpus.splits,
            "build_seconds": corpus.build_seconds, "built_at": now_iso(), "git_commit": git_commit(),
            "chorales": [[c.id, c.title, c.key, c.mode, c.transposed_by, c.bar_steps, c.phase]
                         for c in corpus.chorales]}
    blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    path = folder / f"{key or corpus.key}.npz"
    write_atomic(path, lambda f: np.savez_compressed(f, tokens=tokens, offsets=offsets, meta=blob), fsync=False)
    return path


def read_chorales(path: Path | str, origin: str = "cache") -> ChoraleCorpus:
    """Load a ``save_chorales`` file (checks its format version)."""
    with np.load(path, allow_pickle=False) as z:
        tokens, offsets = z["tokens"].astype(np.int64), z["offsets"]
        meta = json.loads(z["meta"].tobytes().decode("utf-8"))
    if meta.get("format") != CHORALE_FORMAT_VERSION:
        raise ValueError(f"{path}: chorale format {meta.get('format')}, expected {CHORALE_FORMAT_VERSION}")
    chorales = [Chorale(cid, title, tokens[:, offsets[i]: offsets[i + 1]].copy(), key, mode, int(shift),
                        int(bar_steps), int(phase))
                for i, (cid, title, key, mode, shift, bar_steps, phase) in enumerate(meta["chorales"])]
    return ChoraleCorpus(chorales, Vocabulary.from_dict(meta["vocab"]), dict(meta["skipped"]),
                         list(meta["skipped_items"]), dict(meta["adjusted"]),
                         {k: list(v) for k, v in meta["splits"].items()}, meta.get("build_seconds"), origin)


def load_chorales(rebuild: bool = False, workers: int = 2, progress: bool = True) -> ChoraleCorpus:
    """The four-voice corpus: cache, else shipped, else built (and cached)."""
    key = chorale_key()
    if not rebuild:
        for folder, origin in ((cache_dir(), "cache"), (SHIPPED_DIR, "shipped")):
            path = folder / f"{key}.npz"
            if path.exists():
                try:
                    return read_chorales(path, origin)
                except (ValueError, OSError, KeyError) as exc:
                    warnings.warn(f"ignoring unreadable chorale cache {path}: {exc}", stacklevel=2)
    corpus = build_chorales(workers=workers, progress=progress)
    save_chorales(corpus, cache_dir(), key)
    return corpus
