"""The corpus containers: ``Piece`` (one normalised melody) and ``Corpus`` (pieces, what
was skipped and adjusted, deterministic splits).

Splits are deterministic from piece ids (a hash), so a piece keeps its split when a
corpus grows or is merged with another.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from rlmusic.music.representation import Vocabulary

SPLIT_NAMES = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)  # train, valid, test


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
    skipped_items: list[dict[str, str]] | None = None  # each skipped item: {"item", "source", "reason"}
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
