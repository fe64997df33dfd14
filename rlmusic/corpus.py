"""Melody corpora: sources -> normalised token sequences; cache; splits.

Sources (``SOURCE_NAMES``):

- ``bach``: the soprano line of music21's bundled Bach chorales (the part named
  Soprano, else the first part); key from music21's analysis of the whole chorale;
- ``irish``: music21's bundled O'Neill's 1850 tunes. The files overlap (1556-1624.abc
  and 1556-1576.abc, the ``_bs``/``_mh``/``_ml`` variants), so tunes are deduplicated
  by their number (ABC ``X:``): the first file in name order wins. Key from ``K:``;
- ``midi:DIR``: the top line (``representation.top_line``) of every ``*.mid``/``*.midi``
  under DIR, all non-drum instruments together; key by Krumhansl-Kessler profiles.

Every piece goes through the same pipeline (``encode_events``): repeats expanded
where music21 can (written order kept when it cannot: first and second endings are
then played one after the other, never on top of each other), grace notes dropped,
ties merged (same pitch only: music21's ``stripTies`` also merges ABC slurs written
as ties between different pitches, e.g. ``G3-A``), chords reduced to their top note
and overlapping voices to the top line, then transposed so the tonic is C (major-like
modes: major, mixolydian, lydian) or A (minor-like: minor, dorian, phrygian, locrian),
moved by whole octaves to fit the vocabulary's pitch range and single notes still
outside it folded in by octaves. Pieces with notes off the 16th grid (triplets,
32nd notes) and empty pieces are skipped; every skip is counted by reason
(``Corpus.skipped``) and every change that kept the piece too (``Corpus.adjusted``).

Splits are deterministic from piece ids (a hash), so a piece keeps its split when a
corpus grows or is merged with another. Encoded corpora are cached under
``RLMUSIC_HOME/corpora/<key>.npz`` (+ ``<key>.json``); ``irish`` and ``bach`` are also
shipped in ``rlmusic/data/corpus/`` so that a fresh machine need not parse for minutes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from rlmusic.representation import (
    DEFAULT_VOCAB,
    STEPS_PER_QUARTER,
    MelodyError,
    Note,
    Vocabulary,
    check_monophonic,
    notes_to_tokens,
    top_line,
)

CORPUS_FORMAT_VERSION = 1  # bump when the pipeline changes what a piece encodes to
SOURCE_NAMES = ("bach", "irish", "midi:DIR")
SPLIT_NAMES = ("train", "valid", "test")
SPLIT_FRACTIONS = (0.90, 0.05, 0.05)  # train, valid, test
SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "corpus"
MIDI_SUFFIXES = (".mid", ".midi")

MAJOR_LIKE = ("major", "ionian", "mixolydian", "lydian")
MINOR_LIKE = ("minor", "aeolian", "dorian", "phrygian", "locrian")
PITCH_CLASS_NAMES = ("C", "C#", "D", "E-", "E", "F", "F#", "G", "A-", "A", "B-", "B")

# skip reasons (piece dropped) and adjustments (piece kept), shared by all sources
SKIP_TUPLET = "tuplets (e.g. triplets) cannot be put on the 16th grid"
SKIP_EMPTY = "empty (no notes)"
SKIP_RANGE = "pitch range too narrow to fold notes in by octaves"
SKIP_PARSE = "cannot be parsed"
SKIP_NO_KEY = "no key found"
ADJ_GRACE = "grace notes dropped"
ADJ_CHORD = "chords reduced to their top note"
ADJ_POLY = "overlapping notes reduced to the top line"
ADJ_REPEATS = "repeats not expanded (written order kept)"
ADJ_FOLDED = "notes folded into range by octaves"
ADJ_ROUNDED = "32nd-note rhythms rounded to the 16th grid"
ADJ_LOST = "32nd notes lost in rounding to the 16th grid"


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


# --------------------------------------------------------------------------- sources


def parse_sources(sources: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"irish+bach"`` or ``["irish", "midi:/x"]`` -> validated list (midi dirs made absolute)."""
    if isinstance(sources, str):
        # "+" joins names; a midi path may itself hold "+", so split only before a name
        parts = re.split(r"\+(?=bach\b|irish\b|midi:)", sources) if sources else []
    else:
        parts = list(sources)
    if not parts:
        raise ValueError(f"no corpus source given; valid: {', '.join(SOURCE_NAMES)}")
    out = []
    for src in parts:
        src = str(src).strip()
        if src in ("bach", "irish"):
            out.append(src)
        elif src.startswith("midi:"):
            path = Path(src[5:]).expanduser()
            if not src[5:]:
                raise ValueError("midi source needs a folder: midi:DIR")
            if not path.exists():
                raise FileNotFoundError(f"MIDI folder {path} does not exist (source {src!r})")
            if not path.is_dir():
                raise FileNotFoundError(f"MIDI source {path} is not a folder (source {src!r})")
            out.append("midi:" + str(path.resolve()))
        else:
            raise ValueError(f"unknown corpus source {src!r}; valid: {', '.join(SOURCE_NAMES)}")
    if len(set(out)) != len(out):
        raise ValueError(f"corpus source given twice: {out}")
    return out


def _music21_corpus_dir() -> Path:
    import music21

    return Path(music21.__file__).resolve().parent / "corpus"


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _irish_items(limit: int | None) -> list[tuple]:
    """One item per O'Neill tune number (first file in name order wins)."""
    tunes: dict[int, str] = {}
    for path in sorted((_music21_corpus_dir() / "oneills1850").glob("*.abc")):
        for chunk in re.split(r"(?m)^(?=X:)", _read_text(path)):
            m = re.match(r"X:\s*(\d+)", chunk)
            if m and int(m.group(1)) not in tunes:
                tunes[int(m.group(1))] = chunk
    numbers = sorted(tunes)[:limit] if limit is not None else sorted(tunes)
    return [("irish", f"irish:{n:04d}", tunes[n]) for n in numbers]


def _bach_items(limit: int | None) -> list[tuple]:
    """One item per chorale file stem (.mxl preferred over .xml over .krn)."""
    rank = {".mxl": 0, ".xml": 1, ".krn": 2}
    best: dict[str, Path] = {}
    for path in (_music21_corpus_dir() / "bach").iterdir():
        if path.suffix in rank and path.stem.startswith("bwv"):
            if path.stem not in best or rank[path.suffix] < rank[best[path.stem].suffix]:
                best[path.stem] = path

    def order(stem: str):
        nums = [int(x) for x in re.findall(r"\d+", stem)]
        return (nums, stem)

    stems = sorted(best, key=order)[:limit] if limit is not None else sorted(best, key=order)
    return [("bach", f"bach:{s}", str(best[s])) for s in stems]


def _midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def _midi_items(source: str, limit: int | None) -> list[tuple]:
    folder = Path(source[5:])
    files = _midi_files(folder)
    if not files:
        raise ValueError(f"no MIDI files ({', '.join('*' + s for s in MIDI_SUFFIXES)}) in {folder}")
    files = files[:limit] if limit is not None else files
    return [(source, f"midi:{folder.name}/{p.relative_to(folder).as_posix()}", str(p)) for p in files]


def _items(source: str, limit: int | None) -> list[tuple]:
    if source == "irish":
        return _irish_items(limit)
    if source == "bach":
        return _bach_items(limit)
    return _midi_items(source, limit)


# --------------------------------------------------------------------------- one piece


class SkipPiece(MelodyError):
    """A piece the pipeline drops; ``reason`` is the counted (short) reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Event:
    """One note as read from a score, before quantisation (quarter lengths)."""

    offset: Fraction
    duration: Fraction
    pitches: tuple[int, ...]  # MIDI pitches (a chord has several)
    tie: str | None = None  # "start", "continue", "stop" or None
    grace: bool = False
    tuplet: bool = False


def encode_events(
    events: list[Event], tonic_pc: int, mode: str, vocab: Vocabulary, adjusted: Counter
) -> tuple[np.ndarray, int]:
    """The shared pipeline: quantise, merge ties, one line, transpose, fold -> (tokens, shift).

    Raises ``SkipPiece``; adds what it changed (and kept) to ``adjusted``.
    """
    if any(e.grace for e in events):
        adjusted[ADJ_GRACE] += 1
        events = [e for e in events if not e.grace]
    events = [e for e in events if e.pitches and e.duration > 0]
    if not events:
        raise SkipPiece(SKIP_EMPTY)
    notes: list[Note] = []
    open_ties: dict[int, int] = {}  # pitch -> index in notes of a note whose tie continues
    starts: set[int] = set()
    chord = rounded = lost = False
    for e in sorted(events, key=lambda e: (e.offset, -max(e.pitches))):
        on, off = e.offset * STEPS_PER_QUARTER, (e.offset + e.duration) * STEPS_PER_QUARTER
        pitch = max(e.pitches)
        chord |= len(e.pitches) > 1
        if on.denominator != 1 or off.denominator != 1:
            if e.tuplet:
                raise SkipPiece(SKIP_TUPLET, f"note at quarter {float(e.offset):g}")
            # sub-16th rhythms (dotted 16th + 32nd, 32nd runs): round half down, so a
            # dotted pair straightens to two 16ths; a note rounding onto an onset is lost
            rounded = True
            start, end = _round_half_down(on), _round_half_down(off)
            if start in starts:
                lost = True
                continue
            end = max(end, start + 1)
        else:
            start, end = int(on), int(off)
        j = open_ties.pop(pitch, None)
        if j is not None and notes[j].end == start:  # a tie continues the same pitch
            notes[j] = Note(notes[j].start, notes[j].duration + end - start, pitch)
        else:
            j = len(notes)
            notes.append(Note(start, end - start, pitch))
            starts.add(start)
        if e.tie in ("start", "continue"):
            open_ties[pitch] = j
    if rounded:
        adjusted[ADJ_ROUNDED] += 1
        # rounding may push a note's end past the next onset: cut it there
        notes.sort()
        notes = [
            Note(a.start, min(a.end, b.start) - a.start, a.pitch) if b.start > a.start else a
            for a, b in zip(notes, notes[1:])
        ] + notes[-1:]
    if lost:
        adjusted[ADJ_LOST] += 1
    if chord:
        adjusted[ADJ_CHORD] += 1
    try:
        check_monophonic(notes)
    except MelodyError:
        adjusted[ADJ_POLY] += 1
        notes = top_line(notes)
    first = min(n.start for n in notes)  # leading rests (before a pickup) are dropped
    notes = [Note(n.start - first, n.duration, n.pitch) for n in notes]

    target = 0 if mode == "major" else 9  # C or A
    shift = (target - tonic_pc) % 12
    shift = shift - 12 if shift > 5 else shift
    pitches = np.array([n.pitch for n in notes]) + shift
    best = min(
        range(-5, 6),
        key=lambda k: (
            int(((pitches + 12 * k < vocab.min_pitch) | (pitches + 12 * k > vocab.max_pitch)).sum()),
            abs(k),
        ),
    )
    shift += 12 * best
    pitches = pitches + 12 * best
    outside = (pitches < vocab.min_pitch) | (pitches > vocab.max_pitch)
    if outside.any():
        if vocab.n_pitches < 12:
            raise SkipPiece(SKIP_RANGE, f"range {vocab.min_pitch}..{vocab.max_pitch}")
        adjusted[ADJ_FOLDED] += 1
        pitches = np.where(
            pitches < vocab.min_pitch, pitches + 12 * -((pitches - vocab.min_pitch) // 12), pitches
        )
        pitches = np.where(
            pitches > vocab.max_pitch, pitches - 12 * ((pitches - vocab.max_pitch + 11) // 12), pitches
        )
    notes = [Note(n.start, n.duration, int(p)) for n, p in zip(notes, pitches)]
    return notes_to_tokens(notes, vocab), int(shift)


def _round_half_down(x: Fraction) -> int:
    return math.ceil(x - Fraction(1, 2))


def _mode_group(mode: str | None) -> str | None:
    mode = (mode or "").lower()
    if mode in MAJOR_LIKE:
        return "major"
    if mode in MINOR_LIKE:
        return "minor"
    return None


def _music21_events(part) -> tuple[list[Event], bool]:
    """Events of a music21 part after expanding repeats; bool: repeats expanded."""
    expanded = True
    try:
        part = part.expandRepeats()
    except Exception:  # music21 raises several types for repeats it cannot follow
        expanded = False
    events = []
    for n in part.flatten().notes:
        pitches = tuple(int(p.midi) for p in n.pitches)
        tie = n.tie.type if n.tie is not None else None
        d = n.duration
        events.append(
            Event(Fraction(n.offset), Fraction(d.quarterLength), pitches, tie, d.isGrace, bool(d.tuplets))
        )
    return events, expanded


def _music21_key(stream, analyse) -> tuple[str, int, str]:
    """(key name, tonic pitch class, "major"/"minor"): the first Key with a mode, else analysis."""
    from music21 import key as m21key

    if not analyse:
        for k in stream.recurse().getElementsByClass(m21key.Key):
            group = _mode_group(k.mode)
            if group is not None:
                return str(k), k.tonic.pitchClass, group
    k = stream.analyze("key")
    return str(k), k.tonic.pitchClass, _mode_group(k.mode) or "major"


def _encode_music21(item: tuple, vocab: Vocabulary, adjusted: Counter) -> Piece:
    from music21 import converter, corpus

    source, piece_id, payload = item
    try:
        if source == "irish":
            score = converter.parse(payload, format="abc")
        else:
            score = corpus.parse(payload) if not os.path.isabs(payload) else converter.parse(payload)
    except Exception as exc:
        raise SkipPiece(SKIP_PARSE, str(exc)) from exc
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    part = next((p for p in parts if "soprano" in (p.partName or "").lower()), parts[0])
    title = (score.metadata.title if score.metadata is not None else None) or piece_id.split(":", 1)[1]
    try:
        key_name, tonic, mode = _music21_key(score if source == "bach" else part, analyse=source == "bach")
    except Exception as exc:
        raise SkipPiece(SKIP_NO_KEY, str(exc)) from exc
    events, expanded = _music21_events(part)
    if not expanded:
        adjusted[ADJ_REPEATS] += 1
    tokens, shift = encode_events(events, tonic, mode, vocab, adjusted)
    return Piece(piece_id, source, str(title), tokens, key_name, mode, shift)


# Krumhansl-Kessler key profiles (C major, C minor), for MIDI files
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def estimate_key(notes: list[Note]) -> tuple[str, int, str]:
    """(key name, tonic pitch class, mode) of notes, by duration-weighted Krumhansl-Kessler."""
    hist = np.zeros(12)
    for n in notes:
        hist[n.pitch % 12] += n.duration
    if not hist.any():
        raise SkipPiece(SKIP_EMPTY)
    best = (-2.0, 0, "major")
    for mode, profile in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(hist, np.roll(profile, tonic))[0, 1]) if hist.std() > 0 else 0.0
            if r > best[0]:
                best = (r, tonic, mode)
    _, tonic, mode = best
    name = PITCH_CLASS_NAMES[tonic]
    return (f"{name.lower() if mode == 'minor' else name} {mode}", tonic, mode)


def _encode_midi(item: tuple, vocab: Vocabulary, adjusted: Counter) -> Piece:
    from rlmusic.representation import EmptyMelodyError, load_midi, midi_to_notes

    source, piece_id, path = item
    try:
        pm = load_midi(path)
    except MelodyError as exc:
        raise SkipPiece("unreadable MIDI file", str(exc)) from exc
    n_tracks = sum(1 for i in pm.instruments if not i.is_drum and i.notes)
    if n_tracks == 0:
        raise SkipPiece(SKIP_EMPTY)
    notes: list[Note] = []
    for i in range(n_tracks):
        try:
            notes += midi_to_notes(pm, instrument=i)
        except EmptyMelodyError as exc:
            raise SkipPiece(SKIP_EMPTY) from exc
        except ValueError as exc:  # off-grid onsets: triplets, swing, unquantised playing
            raise SkipPiece("onsets off the 16th grid (triplets, swing, unquantised)", str(exc)) from exc
    key_name, tonic, mode = estimate_key(notes)
    step = Fraction(1, STEPS_PER_QUARTER)
    events = [Event(n.start * step, n.duration * step, (n.pitch,)) for n in notes]
    tokens, shift = encode_events(events, tonic, mode, vocab, adjusted)
    return Piece(piece_id, source, Path(path).stem, tokens, key_name, mode, shift)


def encode_item(item: tuple, vocab: Vocabulary = DEFAULT_VOCAB) -> tuple[Piece | None, str | None, list[str]]:
    """One source item -> (piece or None, skip reason or None, adjustments). Never raises
    for a bad piece: the pipeline counts it instead (worker entry point)."""
    adjusted: Counter = Counter()
    source = item[0]
    try:
        if source.startswith("midi:"):
            piece = _encode_midi(item, vocab, adjusted)
        else:
            piece = _encode_music21(item, vocab, adjusted)
    except SkipPiece as exc:
        return None, exc.reason, sorted(adjusted)
    except MelodyError as exc:  # e.g. EmptyMelodyError from notes_to_tokens
        return None, type(exc).__name__, sorted(adjusted)
    return piece, None, sorted(adjusted)


def _encode_star(args: tuple) -> tuple[Piece | None, str | None, list[str]]:
    return encode_item(*args)


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
    items = [it for src in srcs for it in _items(src, limit)]
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


# --------------------------------------------------------------------------- cache


def _label(source: str) -> str:
    return "midi" if source.startswith("midi:") else source


def _slug(source: str) -> str:
    """File-name-safe form of one source; a midi folder is named by path and content."""
    if not source.startswith("midi:"):
        return source
    folder = Path(source[5:])
    h = hashlib.sha1(str(folder).encode())
    for p in _midi_files(folder):
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
