"""Blind studies of harmonisations (`rlmusic study create --harmonizers A B --melodies SRC`):
both sides of every pair share their soprano note for note, Bach's side is Bach's own
excerpt, gold checks keep the soprano and break the rest, a folder's unusable melodies are
counted, mistakes are one line, the report equals a recount, and the Compare page plays
a harmony pair as it plays any other (four voices, rendered afresh when the file changed)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import soundfile
from streamlit.testing.v1 import AppTest
from test_harmonize import write_notes

import db
from app import common
from rlmusic.audio.render import render
from rlmusic.cli.main import main
from rlmusic.corpus.chorale_corpus import load_chorales
from rlmusic.corpus.chorales import CHORALE_VOCAB as CV
from rlmusic.harmony.checkpoint import build_harmonizer, save_harmonizer
from rlmusic.harmony.study_clips import harmony_of_clip
from rlmusic.music.gold import melody_scale
from rlmusic.music.representation import DEFAULT_VOCAB as V
from rlmusic.music.representation import Note, notes_to_tokens

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ROOT = Path(__file__).resolve().parent.parent
STEPS = 32


@pytest.fixture
def home(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'rlmusic.db'}"
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    monkeypatch.setenv(common.OPEN_ENV, "1")
    db.upgrade(url)
    yield db.get_engine(url)
    db.dispose_engine(url)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rlmusic study: error: ") and err.count("\n") == 1, err
    return err


def create(name: str, *extra: str) -> int:
    return main(["study", "create", name, "--steps", str(STEPS), "--no-progress", "--threads", "1", *extra])


def manifest(folder: Path, side: str) -> list[dict]:
    return [json.loads(x) for x in (folder / side / "manifest.jsonl").read_text().splitlines()]


def test_a_harmony_study_shares_each_soprano_and_its_report_is_a_recount(home, tmp_path):
    assert create("h", "--harmonizers", "shipped", "bach", "--melodies", "chorales", "--clips", "3",
                  "--gold", "2", "--seed", "2") == 0
    study = db.get_study(home, "h")
    assert (study["n_pairs"], study["n_gold"], study["model_a"], study["model_b"]) == (3, 2, "shipped-harmony", "bach")
    folder = Path(study["folder"])
    chorales = {c.id: c for c in load_chorales(progress=False).split("test")}
    for row in manifest(folder, "b"):  # Bach's side: his own four voices of that excerpt
        clip = db.get_clip(home, row["clip_id"])
        bach = chorales[row["source"]].tokens[:, row["start"] : row["start"] + STEPS]
        assert (np.array(clip.voices)[:, 1:] == bach[:, 1:]).all()  # step 0 may re-strike a held note
    for side in ("a", "b", "gold"):
        for row in manifest(folder, side):
            clip = db.get_clip(home, row["clip_id"])
            assert clip.kind == "harmony" and clip.audio_sha256 == db.sha256_file(folder / side / row["audio"])
            pm = pretty_midi.PrettyMIDI(str(folder / side / row["midi"]))
            assert [i.program for i in pm.instruments] == [52] * 4  # the choir, four parts
            soprano = [n for n in pm.instruments[0].notes]
            assert [n.pitch for n in soprano] == [V.token_to_pitch(t) for t in clip.tokens if V.is_pitch(t)]
    pairs = db.study_pairs(home, "h")
    for p in pairs:
        a, b = db.get_clip(home, p["clip_a"]), db.get_clip(home, p["clip_b"])
        assert a.tokens == b.tokens and a.voices[0] == b.voices[0] and a.steps == b.steps == STEPS
        if p["gold"]:  # the broken version: the same soprano, alto, tenor and bass off their keys
            for va, vb in zip(a.voices[1:], b.voices[1:]):
                onsets = [CV.token_to_pitch(t) for t in vb if CV.is_pitch(t)]
                scale = set(melody_scale(np.array(va), CV))
                assert onsets and all(pitch % 12 not in scale for pitch in onsets)
        else:
            assert (a.model_name, b.model_name) == ("shipped-harmony", "bach")
            assert a.voices[1:] != b.voices[1:]

    # two raters judge every pair; the report must be the recount of what they said
    said = {"a": 0, "b": 0, "tie": 0}
    for rater, choice in (("ann", ("a", "b", "tie")), ("bob", ("b", "b", "a"))):
        study_pairs = [p for p in pairs if not p["gold"]]
        for p, winner in zip(study_pairs, choice):
            db.add_comparison(home, rater, p["clip_a"], p["clip_b"], winner)
            said[winner] += 1
        for p in pairs:
            if p["gold"]:
                db.add_comparison(home, rater, p["clip_a"], p["clip_b"], "a")  # the intact one
    assert main(["study", "report", "h", "--json", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["wins_a"], report["wins_b"], report["ties"]) == (said["a"], said["b"], said["tie"])
    assert report["win_rate"] == pytest.approx(said["a"] / (said["a"] + said["b"]))
    assert report["gold_failures"] == {"ann": 0, "bob": 0} and report["n_raters"] == 2


def test_a_folder_of_melodies_counts_what_it_skips_and_keeps_the_soprano_as_written(home, tmp_path, capsys):
    melodies = tmp_path / "melodies"
    melodies.mkdir()
    tune = [(67, 0, 0.5), (69, 0.5, 1), (71, 1, 2), (72, 2, 3), (74, 3, 3.5), (71, 3.5, 4), (72, 4, 6)]
    write_notes(melodies / "0_tune.mid", tune)  # 6 s = 48 steps: cut to 32
    write_notes(melodies / "1_chords.mid", [(60, 0, 1), (64, 0, 1)])
    write_notes(melodies / "2_empty.mid", [])
    write_notes(melodies / "3_low.mid", [(m, i * 0.5, i * 0.5 + 0.5) for i, m in enumerate((50, 52, 53, 55))])
    (melodies / "notes.txt").write_text("not a melody")
    feedforward = save_harmonizer(build_harmonizer("feedforward", {"window": STEPS, "hidden": [16]}),
                                  tmp_path / "ff")
    assert create("f", "--harmonizers", "shipped", str(feedforward), "--melodies", str(melodies),
                  "--clips", "4") == 0
    out = capsys.readouterr().out
    assert "skipped 1 melodies: not one line" in out and "skipped 1 melodies: no notes" in out
    assert "2 sopranos, not the 4 asked for" in out
    pairs = db.study_pairs(home, "f")
    assert len(pairs) == 2
    expected = notes_to_tokens([Note(int(s * 8), int((min(e, 4) - s) * 8), p) for p, s, e in tune if s < 4], V, STEPS)
    first = db.get_clip(home, manifest(Path(db.get_study(home, "f")["folder"]), "a")[0]["clip_id"])
    assert first.tokens == expected.tolist()  # the melody as written (not moved to C), cut to 32 steps
    for p in pairs:
        a, b = db.get_clip(home, p["clip_a"]), db.get_clip(home, p["clip_b"])
        assert a.tokens == b.tokens and a.voices[0] == b.voices[0]
    low = db.get_clip(home, manifest(Path(db.get_study(home, "f")["folder"]), "b")[1]["clip_id"])
    assert [V.token_to_pitch(t) for t in low.tokens if V.is_pitch(t)] == [50, 52, 53, 55]


def test_harmony_study_mistakes_are_one_line_and_write_nothing(home, tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    cases = [
        (["--harmonizers", "shipped", "bach", "--melodies", str(empty)], "'bach' harmonised only his own chorales"),
        (["--harmonizers", "shipped", str(tmp_path / "nope"), "--melodies", "chorales"],
         "is not a harmony model directory, 'shipped' or 'bach'"),
        (["--harmonizers", "shipped", "shipped"], "--harmonizers needs --melodies"),
        (["--harmonizers", "shipped", "shipped", "--melodies", str(empty)], "no .mid or .midi file in it"),
        (["--harmonizers", "shipped", "shipped", "--melodies", "chorale"], "is neither a folder of MIDI melodies"),
        (["--models", "prior", "prior", "--melodies", "chorales"], "--melodies goes with --harmonizers"),
    ]
    for extra, says in cases:
        assert create("bad", *extra) == 1
        assert says in one_line_error(capsys)
        assert not (tmp_path / "home" / "studies" / "bad").exists()
    assert db.list_studies(home) == []


def samples(data: bytes) -> np.ndarray:
    return soundfile.read(io.BytesIO(data))[0]


def similarity(x: bytes, y: bytes) -> float:
    a, b = samples(x), samples(y)
    n = min(len(a), len(b))
    return float(np.corrcoef(a[:n], b[:n])[0, 1])


def test_the_compare_page_plays_a_harmony_pair_and_renders_four_voices_when_the_file_changed(home, monkeypatch):
    rolls = []
    real_roll = common.harmony_roll_png
    monkeypatch.setattr(common, "harmony_roll_png", lambda *a: rolls.append(a) or real_roll(*a))
    assert create("c", "--harmonizers", "shipped", "bach", "--melodies", "chorales", "--clips", "1") == 0
    [pair] = db.study_pairs(home, "c")
    at = AppTest.from_file(str(ROOT / "app" / "views" / "compare.py"), default_timeout=60).run()
    at.text_input(key="new_rater").input("ann")
    at = at.button(key="start_rating").click().run()
    assert not at.exception
    served = at.session_state["compare_pair"]
    assert {c.id for c in served} == {pair["clip_a"], pair["clip_b"]} and len(at.get("audio")) == 2
    assert sorted(tuple(map(list, voices)) for voices, _ in rolls) == sorted(tuple(c.voices) for c in served)
    at.button(key="prefer_a").click().run()
    assert [(r["rater"], r["winner"]) for r in db.pair_rows(home, kind="harmony")] == [("ann", "a")]

    clip = db.get_clip(home, pair["clip_b"])  # Bach's version, its file overwritten with the melody alone
    melody_only = render(clip.tokens)
    Path(clip.audio_path).write_bytes(melody_only)
    _, audio = common.with_audio(home, clip)
    four = render(harmony_of_clip(clip.tokens, clip.voices).midi("choir"), instrument=None)
    assert similarity(audio, four) > 0.95 and similarity(audio, melody_only) < 0.5
    assert db.get_clip(home, clip.id).audio_sha256 == db.sha256_bytes(audio)
