"""The listening app on a busy database, on both backends: a submit while another writer
holds the lock waits a few seconds at most, says so in one line, keeps the clip and the
chosen answer, and the same judgement submitted again is stored. Never dropped silently,
never a traceback."""

from __future__ import annotations

import pytest
from test_app import enqueue, page, sign_in, texts

import db
from app import common

pytest_plugins = ["db_fixtures"]


@pytest.fixture
def app_engine(engine, db_url, tmp_path, monkeypatch):
    """``engine`` as the app's database, with a short write bound."""
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", db_url)
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(common, "WRITE_TIMEOUT_S", 0.5)
    monkeypatch.setenv(common.OPEN_ENV, "1")  # free names: sign_in types one
    return engine


def test_a_rating_during_a_long_writer_is_kept_for_a_retry(app_engine, db_url, long_writer):
    ids = enqueue(app_engine, n=2)
    at = sign_in(page("rate"), "rosa")
    assert at.session_state["rate_clip"].id == ids[0]
    at.feedback[0].set_value(3)
    with long_writer(db_url, ids[0]):  # e.g. an import holding the clip (or SQLite's lock)
        at.button(key="submit_rating").click().run()
        assert not at.exception
        assert "database is busy" in texts(at.warning) and "press the button again" in texts(at.warning)
        assert at.session_state["rate_clip"].id == ids[0]  # still on screen
        assert db.star_rows(app_engine) == []
    at.button(key="submit_rating").click().run()  # the same judgement, once the writer is done
    assert not at.exception
    assert [(r["clip_id"], r["rater"], r["stars"]) for r in db.star_rows(app_engine)] == [(ids[0], "rosa", 4)]
    assert "Saved 4 stars" in texts(at.success)
    assert at.session_state["rate_clip"].id == ids[1]


def test_a_comparison_during_a_long_writer_is_kept_for_a_retry(app_engine, db_url, long_writer):
    ids = enqueue(app_engine, n=2)
    at = sign_in(page("compare"), "sam")
    a, b = at.session_state["compare_pair"]
    with long_writer(db_url, min(a.id, b.id)):
        at.button(key="prefer_b").click().run()
        assert not at.exception and "database is busy" in texts(at.warning)
        assert [c.id for c in at.session_state["compare_pair"]] == [a.id, b.id]
    at.button(key="prefer_b").click().run()
    rows = db.pair_rows(app_engine)
    assert [(r["clip_a"], r["clip_b"], r["winner"]) for r in rows] == [(a.id, b.id, "b")]
    assert sorted(ids) == sorted((a.id, b.id))
