"""No rating lost or mislabelled, on both backends: concurrent imports that all succeed,
writes that wait a bounded time, imports in batches that never stall a rater, schema
changes that queue and ask before they drop data, clip files checked by their hash."""

from __future__ import annotations

import multiprocessing
import random
import re
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select, text

import db
from db.models import Clip

pytest_plugins = ["db_fixtures"]

def counters(engine) -> dict[int, tuple[int, int]]:
    with db.session_scope(engine) as session:
        return {i: (r, c) for i, r, c in session.execute(select(Clip.id, Clip.n_ratings, Clip.n_comparisons))}


# ----------------------------------------------------------------------------- concurrent imports


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return path


def _import_command(args: list[str]) -> tuple[int, str, str]:
    """``rlmusic ratings import ARGS`` in this (forked) process: exit code, stdout, stderr."""
    import contextlib
    import io

    from rlmusic.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["ratings", "import", *args])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_sixteen_concurrent_imports_sharing_new_raters_all_succeed(engine, db_url, two_models, make_clips, tmp_path):
    """16 ``rlmusic ratings import`` processes at once (10 star files, 6 pairwise files)
    whose rows share 6 new raters and 40 clips in shuffled order, some rows in two files:
    all succeed, every judgement is stored once, every counter is exact."""
    prior, tuned = two_models
    clips = db.enqueue_clips(engine, prior, make_clips(20, seed=1)) + db.enqueue_clips(
        engine, tuned, make_clips(20, seed=2))
    rng = random.Random(0)
    raters = [f"new rater {k}" for k in range(6)]
    stars = {(r, c): rng.randint(1, 5) for r in raters for c in clips}
    pairs = {(r, a, b): rng.choice("ab") for r in raters for a, b in zip(clips[::2], clips[1::2])}
    files = []
    star_keys = list(stars)
    rng.shuffle(star_keys)
    for k in range(10):
        part = star_keys[k::10] + rng.sample(star_keys, 12)  # 12 rows also in another file
        part = list(dict.fromkeys(part))
        rng.shuffle(part)
        files.append(write_csv(tmp_path / f"stars{k}.csv", "clip_id,rater,stars",
                               [f"{c},{r},{stars[(r, c)]}" for r, c in part]))
    pair_keys = list(pairs)
    rng.shuffle(pair_keys)
    for k in range(6):
        part = pair_keys[k::6]
        rng.shuffle(part)
        rows = [f"{a},{b},{r},{pairs[(r, a, b)]}" if rng.random() < 0.5 else
                f"{b},{a},{r},{'b' if pairs[(r, a, b)] == 'a' else 'a'}" for r, a, b in part]
        files.append(write_csv(tmp_path / f"pairs{k}.csv", "clip_a,clip_b,rater,winner", rows))

    with multiprocessing.get_context("fork").Pool(len(files)) as pool:  # 16 processes at once
        results = pool.map(_import_command, [[str(f), "--url", db_url] for f in files])
    for code, out, err in results:
        assert code == 0, err
        assert err == "" and " rows: " in out

    rows = db.star_rows(engine)
    assert Counter((r["rater"], r["clip_id"]) for r in rows) == Counter(stars.keys())  # each once
    assert {(r["rater"], r["clip_id"]): r["stars"] for r in rows} == stars
    stored_pairs = db.pair_rows(engine)
    assert len(stored_pairs) == len(pairs)
    for p in stored_pairs:
        lo, hi = sorted((p["clip_a"], p["clip_b"]))
        winner_lo = (p["winner"] == "a") == (p["clip_a"] == lo)
        assert winner_lo == (pairs[(p["rater"], lo, hi)] == "a")
    assert db.stats(engine)["raters"] == len(raters)
    expected_pairs = Counter()
    for _, a, b in pairs:
        expected_pairs.update((a, b))
    assert counters(engine) == {c: (len(raters), expected_pairs[c]) for c in clips}


# ----------------------------------------------------------------------------- bounded waits


def test_a_write_waits_at_most_its_timeout_then_says_busy(engine, db_url, two_models, make_clips, long_writer):
    prior, _ = two_models
    [clip] = db.enqueue_clips(engine, prior, make_clips(1))
    with long_writer(db_url, clip):
        start = time.monotonic()
        with pytest.raises(db.DatabaseBusyError, match="database is busy.*nothing was written, try again"):
            db.add_rating(engine, "ann", clip, 4, timeout_s=0.5)
        waited = time.monotonic() - start
    assert 0.4 < waited < 5
    assert db.star_rows(engine) == [] and counters(engine)[clip] == (0, 0)
    assert db.stats(engine)["raters"] == 0
    db.add_rating(engine, "ann", clip, 4, timeout_s=0.5)  # the same judgement, submitted again
    assert [(r["rater"], r["stars"]) for r in db.star_rows(engine)] == [("ann", 4)]


def test_an_import_in_batches_lets_an_app_rating_in_before_it_ends(engine, db_url, two_models, make_clips, tmp_path):
    """While a long import runs (40 batches), a rating with a 5-second bound is committed
    before the import has finished: the importer never holds the lock for long."""
    prior, _ = two_models
    clips = db.enqueue_clips(engine, prior, make_clips(400))
    rows = [f"{c},rater{k},{1 + (c + k) % 5}" for k in range(20) for c in clips]
    source = write_csv(tmp_path / "big.csv", "clip_id,rater,stars", rows)
    first_batch, finished = threading.Event(), threading.Event()
    failures = []

    def run_import():
        try:
            db.import_ratings(engine, source, batch_rows=200, progress=lambda done, total: first_batch.set())
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            finished.set()

    worker = threading.Thread(target=run_import)
    worker.start()
    assert first_batch.wait(60)
    db.add_rating(engine, "listener", clips[-1], 5, timeout_s=5.0)
    import_still_running = not finished.is_set()
    worker.join()
    assert not failures
    assert import_still_running
    assert db.stats(engine)["ratings"] == len(rows) + 1
    assert counters(engine)[clips[-1]] == (21, 0)
    assert {n for n, _ in counters(engine).values()} == {20, 21}


def test_a_stopped_import_leaves_whole_batches_and_running_it_again_finishes(
        engine, two_models, make_clips, tmp_path):
    prior, _ = two_models
    clips = db.enqueue_clips(engine, prior, make_clips(30))
    rows = [f"{c},r{k},{1 + (c * k) % 5}" for k in range(10) for c in clips]
    source = write_csv(tmp_path / "ratings.csv", "clip_id,rater,stars", rows)

    def stop_after_two(done, total):
        if done == 100:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) after the second batch

    with pytest.raises(KeyboardInterrupt):
        db.import_ratings(engine, source, batch_rows=50, progress=stop_after_two)
    assert db.stats(engine)["ratings"] == 100  # two whole batches, nothing of the third
    assert sum(n for n, _ in counters(engine).values()) == 100
    counts = db.import_ratings(engine, source, batch_rows=50)
    assert (counts["inserted"], counts["unchanged"]) == (200, 100)
    assert db.stats(engine)["ratings"] == 300
    assert {n for n, _ in counters(engine).values()} == {10}
    assert db.import_ratings(engine, source, batch_rows=0)["unchanged"] == 300  # one transaction


def test_a_batch_that_fails_after_others_says_how_far_it_got(engine, two_models, make_clips, tmp_path):
    prior, _ = two_models
    clips = db.enqueue_clips(engine, prior, make_clips(4))
    source = write_csv(tmp_path / "r.csv", "clip_id,rater,stars", [f"{c},ann,3" for c in clips])

    def remove_the_last_clip(done, total):  # another tool deletes a clip mid-import
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM clips WHERE id = :c"), {"c": clips[-1]})

    with pytest.raises(db.ImportIncompleteError, match=r"stopped after 2 of 4 rows .*import the same file again"):
        db.import_ratings(engine, source, batch_rows=2, progress=remove_the_last_clip)
    assert db.stats(engine)["ratings"] == 2


# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("name, what", [
    ("alice\nbob", "U+000A"),
    ("a\u200bnn", "U+200B"),  # zero-width space: looks like "ann"
    ("\u202eevil", "U+202E"),  # right-to-left override
    ("ann\u2028", "U+2028"),  # line separator
    ("\u0301\u0301", "no visible character"),
])
def test_invisible_or_multiline_rater_names_are_refused(engine, name, what):
    with pytest.raises(ValueError, match=re.escape(what)):
        db.get_or_create_rater(engine, name)
    assert db.stats(engine)["raters"] == 0


def test_names_that_look_alike_are_one_rater(engine, two_models, make_clips):
    prior, _ = two_models
    [clip] = db.enqueue_clips(engine, prior, make_clips(1))
    first = db.get_or_create_rater(engine, "Zoe\u0301 Smith")  # e + combining accent
    assert db.get_or_create_rater(engine, "Zo\u00e9  Smith") == first  # precomposed, two spaces
    assert db.get_or_create_rater(engine, "Zo\u00e9\u00a0Smith") == first  # no-break space
    db.add_rating(engine, "Zo\u00e9 Smith", clip, 3)
    assert db.rater_count(engine, "Zoe\u0301 Smith") == 1


@pytest.mark.parametrize("clip_id", [10**23, 2**31, 0, -1])
def test_clip_ids_beyond_the_column_are_value_errors(engine, clip_id):
    with pytest.raises(ValueError, match="is not a clip id"):
        db.add_rating(engine, "ann", clip_id, 3)
    with pytest.raises(ValueError, match="is not a clip id"):
        db.add_comparison(engine, "ann", 1, clip_id, "a")


def test_non_utf8_and_oversized_fields_name_the_file_and_line(engine, two_models, make_clips, tmp_path, state):
    prior, _ = two_models
    a, b = db.enqueue_clips(engine, prior, make_clips(2))
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(f"clip_id,rater,stars\n{a},ann,4\n{b},Zo\xe9,3\n".encode("latin-1"))
    before = state()
    with pytest.raises(db.RatingsImportError) as info:
        db.import_ratings(engine, latin)
    assert info.value.problems[0][0] == 3 and str(latin) in str(info.value)
    assert "not UTF-8 text (byte 0xe9" in str(info.value)
    huge = write_csv(tmp_path / "huge.csv", "clip_id,rater,stars", [f"{a},ann,4", f'{b},"{"x" * 200_000}",3'])
    with pytest.raises(db.RatingsImportError, match="line 3: not readable as CSV: field larger than field limit"):
        db.import_ratings(engine, huge)
    assert state() == before


# ----------------------------------------------------------------------------- clip files


def test_clip_files_are_hashed_when_stored_and_served_only_unchanged_under_home(
        engine, two_models, tmp_path, monkeypatch):
    prior, _ = two_models
    home = tmp_path / "home"
    monkeypatch.setenv("RLMUSIC_HOME", str(home))
    (home / "clips").mkdir(parents=True)
    midi, audio = home / "clips" / "0000.mid", home / "clips" / "0000.ogg"
    midi.write_bytes(b"MThd-one")
    audio.write_bytes(b"OggS-one")
    [clip] = db.enqueue_clips(engine, prior, [{"tokens": [3, 1, 1, 5], "midi_path": str(midi),
                                               "audio_path": str(audio)}])
    info = db.get_clip(engine, clip)
    assert info.midi_sha256 == db.sha256_bytes(b"MThd-one") and info.audio_sha256 == db.sha256_bytes(b"OggS-one")
    assert db.verified_bytes(info.audio_path, info.audio_sha256) == b"OggS-one"
    audio.write_bytes(b"OggS-two")  # replaced by another run
    assert db.verified_bytes(info.audio_path, info.audio_sha256) is None
    # a path outside RLMUSIC_HOME is never read, even with the right hash
    passwd = Path("/etc/passwd")
    assert db.verified_bytes(passwd, db.sha256_file(passwd)) is None
    (home / "clips" / "link.ogg").symlink_to(passwd)  # nor through a link inside it
    assert db.verified_bytes(home / "clips" / "link.ogg", db.sha256_file(passwd)) is None
    assert db.set_clip_audio(engine, clip, audio) == db.sha256_bytes(b"OggS-two")


def test_generating_into_a_used_folder_never_changes_a_queued_clip(engine, db_url, tmp_path, monkeypatch, capsys):
    """``generate --enqueue --out D`` then ``--seed 1`` into the same D: the second run is
    refused before it writes, and every queued clip's MIDI and audio still hold its tokens."""
    import torch

    from rlmusic.cli.main import main
    from rlmusic.models.checkpoint import save_model
    from rlmusic.models.lstm import MelodyLSTM, ModelConfig
    from rlmusic.music.representation import (
        DEFAULT_VOCAB as vocab,
    )
    from rlmusic.music.representation import (
        load_midi,
        midi_to_tokens,
        notes_to_tokens,
        tokens_to_notes,
    )

    monkeypatch.setenv("RLMUSIC_DATABASE_URL", db_url)
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    model = save_model(MelodyLSTM(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1)), tmp_path / "model")
    out = tmp_path / "home" / "clips"
    args = ["generate", "--model", str(model), "-n", "4", "--steps", "32", "--enqueue", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([*args, "--seed", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not empty" in err and "choose a new folder" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not one byte written
    with db.session_scope(engine) as session:
        ids = list(session.scalars(select(Clip.id)))
    assert len(ids) == 4
    for clip in (db.get_clip(engine, i) for i in ids):
        midi = load_midi(clip.midi_path)
        expected = notes_to_tokens(tokens_to_notes(clip.tokens, vocab), vocab, steps=clip.steps)
        assert list(midi_to_tokens(midi, vocab, steps=clip.steps)) == list(expected)
        assert db.sha256_file(clip.midi_path) == clip.midi_sha256
        assert db.verified_bytes(clip.audio_path, clip.audio_sha256) is not None  # served as stored
    assert main([*args[:-1], str(tmp_path / "home" / "clips2"), "--seed", "1"]) == 0  # a new folder


# ----------------------------------------------------------------------------- schema changes


def _upgrade(url: str) -> str:
    try:
        db.upgrade(url)
        return "ok"
    except Exception as exc:  # reported by the test
        return f"{type(exc).__name__}: {exc}"


def test_concurrent_upgrades_queue_instead_of_failing(db_url):
    with multiprocessing.get_context("fork").Pool(4) as pool:
        assert pool.map(_upgrade, [db_url] * 4) == ["ok"] * 4
    assert db.current_revision(db.get_engine(db_url)) == db.head_revision()


def test_downgrade_asks_first_and_backs_up_sqlite(engine, db_url, two_models, make_clips, capsys):
    from rlmusic.cli.main import main

    prior, _ = two_models
    [clip] = db.enqueue_clips(engine, prior, make_clips(1))
    db.add_rating(engine, "ann", clip, 5)
    assert main(["db", "downgrade", "base", "--url", db_url]) == 1  # no terminal, no --yes
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "every rating, comparison and clip" in err and "pass --yes" in err
    assert db.stats(engine)["ratings"] == 1  # nothing dropped
    assert main(["db", "downgrade", "base", "--yes", "--url", db_url]) == 0
    out = capsys.readouterr().out
    assert db.current_revision(db.get_engine(db_url)) is None
    path = db.sqlite_path(db_url)
    if path is not None:
        backup = Path(out.split(" to ", 1)[1].split("\n", 1)[0])
        assert backup.is_file() and backup.name.startswith("rlmusic.db.backup-")
        with sqlite3.connect(backup) as conn:
            assert conn.execute("SELECT stars FROM ratings").fetchall() == [(5,)]
    else:
        assert "pg_dump --format=custom" in out and "--schema=" in out


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_db_backup_runs_pg_dump_on_postgresql(engine, db_url, two_models, make_clips, tmp_path, capsys):
    from rlmusic.cli.main import main

    prior, _ = two_models
    [clip] = db.enqueue_clips(engine, prior, make_clips(1))
    db.add_rating(engine, "ann", clip, 2)
    dump = tmp_path / "ratings.dump"
    assert main(["db", "backup", "--out", str(dump), "--url", db_url]) == 0
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True).stdout
    assert "TABLE DATA" in listing and " ratings " in listing
