"""The Studio page, driven by Streamlit's AppTest against a temporary SQLite database: a
clip of the queue harmonised, a span regenerated, versions side by side, a version rated
and stored as a harmony clip that the melody queues never serve."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest
from test_app import TIMEOUT, engine, enqueue, page, sign_in, template_db, texts, url  # noqa: F401

import db
from app import harmonies
from rlmusic.music.representation import tokens_to_notes

ROOT = Path(__file__).resolve().parent.parent


def test_studio_asks_who_is_listening_first(engine):  # noqa: F811
    enqueue(engine, n=2)
    at = page("studio").run()
    assert not at.exception and "Who is listening?" in texts(at.subheader)
    assert not at.get("audio")


def test_harmonise_regenerate_compare_and_rate(engine):  # noqa: F811
    ids = enqueue(engine, n=2)
    at = sign_in(page("studio"), "ada")
    assert not at.exception
    at.selectbox(key="studio_clip").select_index(1)
    at.button(key="studio_harmonise").click().run()
    assert not at.exception, at.exception
    versions = at.session_state["studio_versions"]
    assert len(versions) == 1 and f"clip {ids[0]}" in versions[0].label
    h = versions[0].harmony
    assert (h.tokens.shape[0], h.steps) == (4, 32)
    clip = db.get_clip(engine, ids[0])
    assert [n.pitch + h.placement.shift for n in harmonies.clip_notes(clip)] == \
        [n.pitch for n in tokens_to_notes(h.tokens[0], h.vocab)]  # the melody is the soprano
    assert len(at.get("audio")) == 2 and "Version 1 ready" in texts(at.success)

    at.selectbox(key="studio_voice").select("tenor")
    at.slider(key="studio_span").set_value((2, 6))
    at.button(key="studio_revise").click().run()
    assert not at.exception, at.exception
    versions = at.session_state["studio_versions"]
    assert len(versions) == 2 and "tenor beats 2-6" in versions[1].label
    first, second = versions[0].harmony.tokens, versions[1].harmony.tokens
    changed = (first != second).any(axis=0)
    assert (first[[0, 1, 3]] == second[[0, 1, 3]]).all() and changed.any()
    assert not changed[:8].any() and not changed[25:].any()  # beats 2-6 are steps 8..23 (+ a restrike at 24)

    at.feedback(key="studio_stars_right_2").set_value(3)
    at.button(key="studio_rate_right").click().run()
    assert not at.exception, at.exception
    [stored] = db.list_clips(engine, "harmony")
    assert stored.voices == second.tolist() and Path(stored.midi_path).is_file()
    assert Path(stored.audio_path).read_bytes()[:4] == b"OggS"
    assert [(r["clip_id"], r["rater"], r["stars"]) for r in db.star_rows(engine, kind="harmony")] == \
        [(stored.id, "ada", 4)]
    assert db.star_rows(engine) == []  # the melody reward model never sees it
    assert at.session_state["studio_versions"][1].clip_id == stored.id

    at.feedback(key="studio_stars_right_2").set_value(1)  # rating the same version again
    at.button(key="studio_rate_right").click().run()
    assert len(db.list_clips(engine, "harmony")) == 1
    assert [r["stars"] for r in db.star_rows(engine, kind="harmony")] == [2]
    assert db.next_clip(engine, "ada").kind == "melody"


def test_no_clip_says_how_to_fill_the_queue(engine):  # noqa: F811
    at = sign_in(page("studio"), "bo")
    assert "rlmusic generate -n 16 --enqueue" in texts(at.info)
    assert at.button(key="studio_harmonise").disabled


def test_studio_is_in_the_navigation(engine):  # noqa: F811
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=TIMEOUT).run()
    at.switch_page("views/studio.py").run()
    assert not at.exception and at.title[0].value == "Studio"
