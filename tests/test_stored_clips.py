"""Stored clips are what was stored: every command that reads a MIDI file checks, when the
file is a stored clip's, that its bytes still hash to the SHA-256 recorded when the clip
was queued, and does not use it otherwise (docs/reliability.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

import db
from db.files import stored_midi
from rlmusic.cli.main import main

pytest_plugins = ["db_fixtures"]

DATA = Path(__file__).parent / "data"


# ----------------------------------------------------------------------------- the database


def test_stored_midi_says_which_files_are_clips_and_which_changed(engine, db_url, two_models, tmp_path):
    """On both backends: an unchanged clip, a changed one (found also through a symlinked
    spelling of its folder), one stored under a symlinked spelling, one stored with no hash
    (unchecked, not changed), a file that is no clip's (absent)."""
    prior, _ = two_models
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    files = [real / f"{i}.mid" for i in range(3)]
    for i, f in enumerate(files):
        f.write_bytes(b"MThd clip %d" % i)
    stored = [str(files[0].resolve()), str(files[1].resolve()), str(tmp_path / "link" / "2.mid"),
              str(real / "later.mid")]  # later.mid: no file when stored, so no hash recorded
    ids = db.enqueue_clips(engine, prior, [{"tokens": [3] * 16, "midi_path": p} for p in stored])
    (real / "later.mid").write_bytes(b"written after it was queued")
    files[1].write_bytes(b"MThd another melody")
    other = real / "other.mid"
    other.write_bytes(b"MThd no clip")

    asked = [files[0], files[1], tmp_path / "link" / "2.mid", real / "later.mid", other]
    found = {Path(e.path).name: e for e in stored_midi(engine, asked)}
    assert [e.clip_id for e in found.values()] == ids  # in the order asked
    assert not found["0.mid"].changed and found["0.mid"].checked
    assert found["1.mid"].changed and found["1.mid"].recorded_sha256 == db.sha256_bytes(b"MThd clip 1")
    assert found["1.mid"].sha256 == db.sha256_bytes(b"MThd another melody")
    assert not found["2.mid"].changed  # stored and asked as link/2.mid
    assert not found["later.mid"].checked and not found["later.mid"].changed
    assert "other.mid" not in found
    assert stored_midi(engine, [tmp_path / "link" / "1.mid"])[0].changed  # stored resolved, asked through the link


def test_stored_midi_reads_a_database_of_any_revision(db_url, tmp_path):
    """No tables: nothing is stored. Revision 0003 (no hash column): clips are unchecked."""
    engine = db.get_engine(db_url)
    midi = tmp_path / "0000.mid"
    midi.write_bytes(b"MThd")
    assert stored_midi(engine, [midi]) == []
    db.upgrade(db_url, "0003")
    now = {"t": "2026-01-01 00:00:00+00:00"}
    with engine.begin() as connection:  # the tables as they were at 0003
        model = connection.scalar(text("INSERT INTO models (name, kind, directory, created_at) "
                                       "VALUES ('p', 'prior', '/p', :t) RETURNING id"), now)
        connection.execute(text("INSERT INTO clips (model_id, tokens, steps, midi_path, created_at) "
                                "VALUES (:m, '[3]', 1, :p, :t)"), {"m": model, "p": str(midi.resolve()), **now})
    [entry] = stored_midi(engine, [midi])
    assert not entry.checked and not entry.changed


# ----------------------------------------------------------------------------- the commands


@pytest.fixture(scope="module")
def queue(tmp_path_factory):
    """Four clips of the shipped prior queued on SQLite, then clip 2's MIDI file written
    over with another valid melody."""
    root = tmp_path_factory.mktemp("stored")
    env = {"RLMUSIC_HOME": str(root / "home"), "RLMUSIC_DATABASE_URL": f"sqlite:///{root / 'rlmusic.db'}"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        db.upgrade()
        out = root / "home" / "clips"
        assert main(["generate", "-n", "4", "--steps", "32", "--enqueue", "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    changed = out / rows[1]["midi"]
    shutil.copyfile(DATA / "melody.mid", changed)
    yield {"env": env, "out": out, "rows": rows, "changed": changed, "clip": rows[1]["clip_id"],
           "unchanged": out / rows[0]["midi"]}
    db.dispose_engine(env["RLMUSIC_DATABASE_URL"])


@pytest.fixture
def stored(queue, monkeypatch):
    for k, v in queue["env"].items():
        monkeypatch.setenv(k, v)
    return queue


def one_error_line(capsys, command: str, clip: int, path: Path) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"rlmusic {command}: error: ")
    assert f"clip {clip}'s MIDI file {path} has changed since the clip was stored (SHA-256 now " in err
    assert f"not used, as it is no longer the melody stored as clip {clip} " in err
    return err


def test_evaluate_midi_skips_exactly_the_changed_clip_and_names_it(stored, tmp_path, capsys):
    report = tmp_path / "table.json"
    assert main(["evaluate", "--midi", str(stored["out"]), "--corpus", "none", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert (f"evaluate: skipped clip {stored['clip']}'s MIDI file {stored['changed']}: it has changed since the "
            "clip was stored (SHA-256 now ") in out
    assert "read 3 MIDI file(s)" in out
    assert "skipped 1 MIDI file(s): 1 x changed since it was stored as a clip (SHA-256 differs)" in out
    table = json.loads(report.read_text())
    assert table["n"] == 3 and table["skipped_files"] == 1 and table["skipped_changed_clips"] == [stored["clip"]]


@pytest.mark.parametrize("command", [
    ["harmonize", "{f}", "--out", "{tmp}/o.mid"],
    ["revise", "{f}", "--steps", "0:8", "--out", "{tmp}/o.mid"],
    ["vae", "vary", "{f}", "--out", "{tmp}/v"],
    ["vae", "interpolate", "{ok}", "{f}", "--out", "{tmp}/v"],
    ["generate", "--primer", "{f}", "-n", "1", "--out", "{tmp}/g"],
])
def test_a_changed_clip_is_one_error_line_and_nothing_is_written(stored, tmp_path, capsys, command):
    args = [a.format(f=stored["changed"], ok=stored["unchanged"], tmp=tmp_path) for a in command]
    assert main(args) == 1
    one_error_line(capsys, command[0], stored["clip"], stored["changed"])
    assert list(tmp_path.iterdir()) == []


def test_an_unchanged_clip_and_a_file_that_is_no_clip_are_read_as_before(stored, tmp_path, capsys):
    fast = ["--steps", "0:8", "--candidates", "4"]
    assert main(["revise", str(stored["unchanged"]), *fast, "--out", str(tmp_path / "a.mid")]) == 0
    copy = tmp_path / "copy.mid"  # the changed file, copied elsewhere: no clip's, so used as it is
    shutil.copyfile(stored["changed"], copy)
    assert main(["revise", str(copy), *fast, "--out", str(tmp_path / "b.mid")]) == 0
    assert capsys.readouterr().err == ""


def test_with_no_database_nothing_is_checked_and_none_is_created(stored, tmp_path, monkeypatch, capsys):
    url = tmp_path / "none.db"
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", f"sqlite:///{url}")
    assert main(["evaluate", "--midi", str(stored["out"]), "--corpus", "none"]) == 0
    assert "read 4 MIDI file(s)" in capsys.readouterr().out
    assert main(["revise", str(stored["changed"]), "--steps", "0:8", "--candidates", "4",
                 "--out", str(tmp_path / "a.mid")]) == 0
    assert not url.exists()
