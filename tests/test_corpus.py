import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rlmusic.cli import main as cli
from rlmusic.corpus.build import build_corpus
from rlmusic.corpus.cache import SHIPPED_DIR, load_corpus
from rlmusic.corpus.encode import encode_item, estimate_key
from rlmusic.corpus.pieces import Corpus, make_splits
from rlmusic.corpus.sources import (
    ADJ_GRACE,
    ADJ_POLY,
    ADJ_REPEATS,
    ADJ_ROUNDED,
    CORPUS_FORMAT_VERSION,
    SKIP_EMPTY,
    SKIP_TUPLET,
    corpus_key,
    parse_sources,
)
from rlmusic.music.representation import DEFAULT_VOCAB, Vocabulary, tokens_to_notes

DATA = Path(__file__).parent / "data"
V = DEFAULT_VOCAB
PITCH_CLASS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def tonic_pc(key: str) -> int:
    """Pitch class of a music21 key name such as "g minor", "B- major", "F# dorian"."""
    name = key.split()[0].lower()
    return (PITCH_CLASS[name[0]] + name.count("#") - name.count("-")) % 12


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("rlmusic_home")
        mp.setenv("RLMUSIC_HOME", str(path))
        yield path


@pytest.fixture(scope="module")
def irish(home):
    t0 = time.perf_counter()
    corpus = load_corpus("irish", limit=20, workers=2, progress=False)
    corpus.seconds = time.perf_counter() - t0
    return corpus


@pytest.fixture(scope="module")
def bach(home):
    return build_corpus(["bach"], limit=5, workers=1, progress=False)


@pytest.fixture()
def midi_dir(tmp_path):
    folder = tmp_path / "midis"
    folder.mkdir()
    shutil.copy(DATA / "melody.mid", folder / "melody.mid")
    shutil.copy(DATA / "chords.mid", folder / "chords.mid")
    return folder


# --------------------------------------------------------------------------- real subsets


def test_irish_subset_pieces_are_valid_tokens(irish):
    assert irish.origin == "built" and irish.sources == ["irish"]
    assert 5 <= len(irish) <= 20
    ids = [p.id for p in irish.pieces]
    assert len(set(ids)) == len(ids) and all(i.startswith("irish:") for i in ids)
    for p in irish.pieces:
        assert p.tokens.dtype == np.int64 and p.tokens.ndim == 1 and len(p.tokens) > 16
        assert p.tokens.min() >= 0 and p.tokens.max() < V.size
        assert V.is_pitch(int(p.tokens[0])), "leading rests are trimmed"
        assert p.mode in ("major", "minor") and p.title
    assert irish.n_tokens == sum(len(p.tokens) for p in irish.pieces)


def test_pieces_are_transposed_to_c_major_or_a_minor(irish, bach):
    pieces = irish.pieces + bach.pieces
    for p in pieces:
        target = 0 if p.mode == "major" else 9
        assert (tonic_pc(p.key) + p.transposed_by) % 12 == target, (p.id, p.key, p.transposed_by)
    first = next(p for p in irish.pieces if p.id == "irish:0001")  # The Enchanted Valley, K:Gm
    assert first.key == "g minor" and first.mode == "minor" and first.transposed_by % 12 == 2
    # independent check: the pooled notes of each mode sound in C major / A minor
    for mode, expected in (("major", "C major"), ("minor", "a minor")):
        notes = [n for p in pieces if p.mode == mode for n in tokens_to_notes(p.tokens, V)]
        assert estimate_key(notes)[0] == expected
        white = sum(n.duration for n in notes if n.pitch % 12 in (0, 2, 4, 5, 7, 9, 11))
        assert white / sum(n.duration for n in notes) > 0.9


def test_decoded_piece_analyses_as_c_major_or_a_minor(irish):
    from music21 import note, stream

    ok = 0
    sample = irish.pieces[:6]
    for p in sample:
        s = stream.Stream()
        for n in tokens_to_notes(p.tokens, V):
            s.insert(n.start / 4, note.Note(n.pitch, quarterLength=n.duration / 4))
        k = s.analyze("key")
        ok += (k.tonic.name, k.mode) in (("C", "major"), ("A", "minor"))
    assert ok >= len(sample) - 2


def test_skips_are_counted_with_reasons(irish):
    # the first 20 tune numbers include triplet tunes (irish:0000, irish:0002)
    assert irish.skipped.get(f"irish: {SKIP_TUPLET}", 0) >= 1
    assert len(irish) + sum(irish.skipped.values()) == 20
    assert irish.adjusted.get(f"irish: {ADJ_GRACE}", 0) >= 1
    text = irish.describe()
    assert "triplets" in text and "grace notes dropped" in text and "irish" in text


def test_bach_takes_the_soprano(bach):
    assert len(bach) == 5 and all(p.id.startswith("bach:bwv") for p in bach.pieces)
    soprano = np.concatenate([V.pitches(p.tokens) for p in bach.pieces])
    soprano = soprano[soprano >= 0]
    assert 60 <= np.median(soprano) <= 76  # a soprano line, not the bass


def test_limit_takes_the_first_pieces_deterministically(irish, home):
    again = build_corpus("irish", limit=20, workers=1, progress=False)
    assert [p.id for p in again.pieces] == [p.id for p in irish.pieces]
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(again.pieces, irish.pieces))
    assert again.skipped == irish.skipped and again.splits == irish.splits


# --------------------------------------------------------------------------- pipeline cases


def abc(body: str, key: str = "G", length: str = "1/8") -> tuple:
    return ("irish", "irish:9999", f"X: 9999\nT: Test\nM: 4/4\nL: {length}\nK:{key}\n{body}\n")


def test_triplet_tune_is_skipped_with_reason():
    piece, reason, _ = encode_item(abc("GABc (3dcB A2 | G8 |]"))
    assert piece is None and reason == SKIP_TUPLET


def test_grace_notes_are_dropped_and_counted():
    piece, reason, adjusted = encode_item(abc("G2 {A}B2 c2 d2 | G8 |]"))
    assert reason is None and ADJ_GRACE in adjusted
    assert [n.duration for n in tokens_to_notes(piece.tokens)] == [4, 4, 4, 4, 16]


def test_ties_merge_same_pitch_only():
    # ABC "-" between different pitches (a slur in O'Neill's) must not merge them
    piece, _, _ = encode_item(abc("G3-A B2-B2 | c8 |]"))
    notes = tokens_to_notes(piece.tokens)
    assert [n.duration for n in notes] == [6, 2, 8, 16]
    assert [n.pitch - notes[0].pitch for n in notes] == [0, 2, 4, 5]  # G A B c, moved to C


def test_dotted_32nd_rhythm_is_rounded_onto_the_grid():
    # "G>A" at L:1/16 is a dotted 16th + a 32nd: straightened to two 16ths
    piece, reason, adjusted = encode_item(abc("G>A B2 c4 | d8 |]", length="1/16"))
    assert reason is None and ADJ_ROUNDED in adjusted
    notes = tokens_to_notes(piece.tokens)
    assert [n.duration for n in notes] == [1, 1, 2, 4, 8]
    assert [n.start for n in notes] == [0, 1, 2, 4, 8]


def test_repeats_with_endings_are_expanded_without_overlap():
    piece, _, adjusted = encode_item(abc("|: G2 A2 B2 c2 |1 d8 :|2 e8 |]"))
    assert ADJ_REPEATS not in adjusted
    notes = tokens_to_notes(piece.tokens)
    rel = [n.pitch - notes[0].pitch for n in notes]
    assert rel == [0, 2, 4, 5, 7, 0, 2, 4, 5, 9]  # first ending, repeat, second ending
    assert all(a.end <= b.start for a, b in zip(notes, notes[1:]))


def test_chords_in_the_line_keep_the_top_note():
    piece, _, adjusted = encode_item(abc("[GB]2 [Ac]2 d4 | G8 |]"))
    assert "chords reduced to their top note" in adjusted
    notes = tokens_to_notes(piece.tokens)
    assert [n.pitch - notes[0].pitch for n in notes] == [0, 1, 3, -4]  # B c d, then G below B


def test_empty_piece_is_skipped():
    piece, reason, _ = encode_item(abc("z8 | z8 |]"))
    assert piece is None and reason == SKIP_EMPTY


# --------------------------------------------------------------------------- splits


def test_splits_are_deterministic_disjoint_and_cover(irish):
    ids = [p.id for p in irish.pieces]
    assert irish.splits == make_splits(ids) == make_splits(list(ids))
    parts = [set(irish.splits[n]) for n in ("train", "valid", "test")]
    assert all(parts) and not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(range(len(irish)))
    assert sum(len(s) for s in (irish.split(n) for n in ("train", "valid", "test"))) == len(irish)
    with pytest.raises(ValueError, match="train, valid, test"):
        irish.split("dev")


def test_split_of_a_piece_depends_on_its_id_only():
    ids = [f"irish:{i:04d}" for i in range(1000)]
    big, small = make_splits(ids), make_splits(ids[:500])
    which = {i: name for name, idx in big.items() for i in idx}
    assert all(which[i] == name for name, idx in small.items() for i in idx)
    assert 0.85 < len(big["train"]) / 1000 < 0.95
    tiny = make_splits(["a", "b", "c"])
    assert sorted(len(v) for v in tiny.values()) == [1, 1, 1]


# --------------------------------------------------------------------------- midi:DIR


def test_midi_folder_gives_top_lines(midi_dir):
    (midi_dir / "broken.mid").write_bytes(b"not a midi file")
    corpus = build_corpus([f"midi:{midi_dir}"], workers=1, progress=False)
    assert sorted(p.id for p in corpus.pieces) == ["midi:midis/chords.mid", "midi:midis/melody.mid"]
    assert corpus.skipped == {"midi: unreadable MIDI file": 1}
    assert corpus.adjusted.get(f"midi: {ADJ_POLY}") == 1  # chords.mid: its top line
    for p in corpus.pieces:
        notes = tokens_to_notes(p.tokens, V)
        assert all(a.end <= b.start for a, b in zip(notes, notes[1:]))
        assert (tonic_pc(p.key) + p.transposed_by) % 12 == (0 if p.mode == "major" else 9)


def test_midi_folder_without_usable_files_says_why(tmp_path):
    (tmp_path / "a.mid").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"tried 1 MIDI files.*unreadable"):
        build_corpus([f"midi:{tmp_path}"], workers=1, progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no MIDI files"):
        build_corpus([f"midi:{empty}"], progress=False)


def test_bad_sources_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=r"'jazz'.*bach, irish, midi:DIR"):
        parse_sources("jazz")
    with pytest.raises(ValueError, match="bach, irish, midi:DIR"):
        build_corpus(["irish", "bach2"], progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_corpus(f"midi:{tmp_path / 'nowhere'}", progress=False)
    assert parse_sources("irish+bach") == ["irish", "bach"]
    assert parse_sources(["bach", f"midi:{tmp_path}"])[1] == f"midi:{tmp_path.resolve()}"


# --------------------------------------------------------------------------- cache


def test_second_load_hits_the_cache(irish, home):
    key = corpus_key("irish", V, 20)
    assert key == irish.key and f"v{CORPUS_FORMAT_VERSION}" in key and "p48-84" in key and "n20" in key
    assert (home / "corpora" / f"{key}.npz").exists()
    sidecar = json.loads((home / "corpora" / f"{key}.json").read_text())
    assert sidecar["skipped"] == irish.skipped and sidecar["n_pieces"] == len(irish)
    t0 = time.perf_counter()
    again = load_corpus("irish", limit=20, progress=False)
    assert again.origin == "cache" and time.perf_counter() - t0 < irish.seconds / 3
    assert [p.id for p in again.pieces] == [p.id for p in irish.pieces]
    assert all(np.array_equal(a.tokens, b.tokens) and a.tokens.dtype == np.int64
               for a, b in zip(again.pieces, irish.pieces))
    assert [(p.title, p.key, p.mode, p.transposed_by) for p in again.pieces] == [
        (p.title, p.key, p.mode, p.transposed_by) for p in irish.pieces
    ]
    assert again.skipped == irish.skipped and again.adjusted == irish.adjusted
    assert again.splits == irish.splits


def test_cache_key_separates_vocabularies_and_limits():
    keys = {corpus_key("irish"), corpus_key("irish", limit=20), corpus_key("irish", Vocabulary(40, 90))}
    assert len(keys) == 3


def test_merged_sources_keep_each_piece_split(irish, home):
    merged = load_corpus("irish+bach", limit=20, workers=2, progress=False)
    assert merged.sources == ["irish", "bach"] and isinstance(merged, Corpus)
    assert Counter(p.source for p in merged.pieces)["irish"] == len(irish)
    test_ids = {merged.pieces[i].id for i in merged.splits["test"]}
    assert {irish.pieces[i].id for i in irish.splits["test"]} <= test_ids


@pytest.mark.skipif(not (SHIPPED_DIR / f"{corpus_key('irish')}.npz").exists(), reason="not shipped yet")
def test_shipped_corpora_load_without_parsing(home):
    total = sum(f.stat().st_size for f in SHIPPED_DIR.iterdir())
    assert total < 2_000_000
    corpus = load_corpus("irish", progress=False)
    assert corpus.origin == "shipped" and len(corpus) > 1000
    assert all(len(corpus.splits[n]) > 0 for n in ("train", "valid", "test"))


# --------------------------------------------------------------------------- CLI


def test_cli_build_and_info(midi_dir, home, capsys):
    assert cli.main(["corpus", "build", "--source", f"midi:{midi_dir}", "--workers", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 pieces" in out and "skipped: 0 pieces" in out
    assert cli.main(["corpus", "info", "--source", f"midi:{midi_dir}", "--quiet"]) == 0
    assert "(cache)" in capsys.readouterr().out
    assert cli.main(["corpus", "build", "--source", "jazz"]) == 1
    assert "valid: bach, irish, midi:DIR" in capsys.readouterr().err
