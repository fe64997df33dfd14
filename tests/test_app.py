"""The listening app's pages, driven by Streamlit's AppTest against a temporary SQLite DB."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import db
from app import common
from rlmusic.audio.render import render, render_to_file
from rlmusic.music.representation import load_midi, midi_to_tokens

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
TIMEOUT = 30  # seconds per AppTest run (the first render loads the soundfont)
STEPS = 32


def real_clips(n: int, steps: int = STEPS) -> list[dict]:
    """``n`` clips cut from the test melody (real tokens), all ``steps`` long."""
    tokens = midi_to_tokens(load_midi(DATA / "melody.mid")).tolist()
    clips = []
    for i in range(n):
        start = (i * 8) % max(1, len(tokens) - steps)
        window = (tokens * 4)[start : start + steps]
        clips.append({"tokens": window, "midi_path": f"clips/{i:04d}.mid", "seed": i})
    return clips


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    """A SQLite file migrated to head once per module; tests copy it."""
    path = tmp_path_factory.mktemp("template") / "rlmusic.db"
    url = f"sqlite:///{path}"
    db.upgrade(url)
    db.dispose_engine(url)
    return path


def app_database(tmp_path: Path, monkeypatch, *, open_mode: bool, template: Path | None = None) -> str:
    """A SQLite database at the newest schema under ``tmp_path`` (a copy of ``template`` when
    given, else migrated here), with RLMUSIC_DATABASE_URL and RLMUSIC_HOME pointing at it;
    ``open_mode``: free names (`rlmusic app --open`), else invited raters only."""
    path = tmp_path / "rlmusic.db"
    url = f"sqlite:///{path}"
    if template is not None:
        shutil.copy(template, path)
    else:
        db.upgrade(url)
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    if open_mode:
        monkeypatch.setenv(common.OPEN_ENV, "1")
    else:
        monkeypatch.delenv(common.OPEN_ENV, raising=False)
    return url


@pytest.fixture
def url(tmp_path, template_db, monkeypatch) -> str:
    url = app_database(tmp_path, monkeypatch, open_mode=True, template=template_db)  # invites: test_app_invites.py
    yield url
    db.dispose_engine(url)


@pytest.fixture
def engine(url):
    return db.get_engine(url)


def enqueue(engine, n: int = 3, name: str = "prior", steps: int = STEPS) -> list[int]:
    model = db.register_model(engine, name=name, directory=f"/models/{name}", kind="prior")
    return db.enqueue_clips(engine, model, real_clips(n, steps))


def page(name: str) -> AppTest:
    return AppTest.from_file(str(ROOT / "app" / "views" / f"{name}.py"), default_timeout=TIMEOUT)


def sign_in(at: AppTest, name: str) -> AppTest:
    at.run()
    at.text_input(key="new_rater").input(name)
    return at.button(key="start_rating").click().run()


def texts(elements) -> str:
    return " ".join(str(e.value) for e in elements)


# --------------------------------------------------------------------------- Rate


def test_rate_asks_for_a_name_first_and_plays_nothing(engine):
    enqueue(engine)
    at = page("rate").run()
    assert not at.exception
    assert "Who is listening?" in texts(at.subheader)
    assert not at.get("audio") and not at.feedback
    at.button(key="start_rating").click().run()  # no name given
    assert "Please give a name" in texts(at.error)
    assert RATER_NOT_SET(at)
    assert db.stats(engine)["raters"] == 0


def RATER_NOT_SET(at: AppTest) -> bool:  # noqa: N802 - reads as a condition
    return common.RATER_KEY not in at.session_state


def test_rate_stores_stars_and_tags_of_the_served_clip_then_moves_on(engine):
    ids = enqueue(engine)
    at = sign_in(page("rate"), "  alice ")
    assert not at.exception
    served = at.session_state["rate_clip"]
    assert served.id == ids[0]
    assert at.session_state[common.RATER_KEY] == "alice"
    assert len(at.get("audio")) == 1 and len(at.get("image")) == 1
    # rendered on demand, cached under RLMUSIC_HOME and recorded in the database
    stored = db.get_clip(engine, served.id).audio_path
    assert stored and Path(stored).is_file() and Path(stored).read_bytes()[:4] == b"OggS"

    at.feedback[0].set_value(3)  # the 4th star (st.feedback counts from 0)
    at.pills[0].set_value(["surprising", "pleasant"])
    at.button(key="submit_rating").click().run()
    assert not at.exception
    rows = db.star_rows(engine)
    assert [(r["clip_id"], r["rater"], r["stars"], sorted(r["tags"])) for r in rows] == [
        (ids[0], "alice", 4, ["pleasant", "surprising"])
    ]
    assert "Saved 4 stars" in texts(at.success)
    assert at.session_state["rate_clip"].id == ids[1]  # the next clip
    assert "1 judgements so far" in texts(at.sidebar.caption)


def test_rate_without_stars_warns_and_stores_nothing(engine):
    enqueue(engine)
    at = sign_in(page("rate"), "bob")
    at.button(key="submit_rating").click().run()
    assert "Pick 1 to 5 stars" in texts(at.warning)
    assert db.star_rows(engine) == []


@pytest.fixture
def served(monkeypatch) -> list[tuple[int, bytes]]:
    """(clip id, audio bytes) of every clip a page played, in order."""
    played: list[tuple[int, bytes]] = []
    real_play = common.play

    def play(clip, audio):
        played.append((clip.id, audio))
        real_play(clip, audio)

    monkeypatch.setattr(common, "play", play)
    return played


def test_rate_uses_stored_audio_when_present(engine, tmp_path, served):
    home = tmp_path / "home"  # RLMUSIC_HOME of these tests
    ogg = render_to_file(real_clips(1)[0]["tokens"], home / "clips" / "pre.ogg", sample_rate=22050)
    model = db.register_model(engine, name="m", directory="/models/m", kind="prior")
    [clip_id] = db.enqueue_clips(engine, model, [{**real_clips(1)[0], "audio_path": str(ogg)}])
    at = sign_in(page("rate"), "carol")
    assert not at.exception and len(at.get("audio")) == 1
    assert db.get_clip(engine, clip_id).audio_path == str(ogg)  # not re-rendered
    assert served[-1] == (clip_id, ogg.read_bytes())
    assert not (home / "audio").exists()


def decoded(data: bytes):
    import io

    import soundfile

    samples, _ = soundfile.read(io.BytesIO(data))
    return samples


def test_a_path_outside_home_is_never_served(engine, served):
    """A clip whose audio path names /etc/passwd (with that file's own hash) plays its
    tokens, rendered under RLMUSIC_HOME: the page never reads a file outside it."""
    passwd = Path("/etc/passwd")
    model = db.register_model(engine, name="m", directory="/models/m", kind="prior")
    [clip_id] = db.enqueue_clips(engine, model, [{**real_clips(1)[0], "audio_path": str(passwd),
                                                  "audio_sha256": db.sha256_file(passwd)}])
    at = sign_in(page("rate"), "eve")
    assert not at.exception
    (played_id, audio), = served
    assert played_id == clip_id and audio[:4] == b"OggS" and passwd.read_bytes() not in audio
    stored = db.get_clip(engine, clip_id)
    assert db.under_home(stored.audio_path) and stored.audio_sha256 == db.sha256_bytes(audio)


def test_audio_changed_under_its_clip_is_rendered_from_the_tokens(engine, tmp_path, served):
    """Another run wrote a different melody over a queued clip's audio file: the rater
    hears the clip's own tokens, the melody the rating is stored against."""
    home = tmp_path / "home"
    mine, other = real_clips(2)
    ogg = render_to_file(mine["tokens"], home / "clips" / "0000.ogg")
    model = db.register_model(engine, name="m", directory="/models/m", kind="prior")
    [clip_id] = db.enqueue_clips(engine, model, [{**mine, "audio_path": str(ogg)}])
    render_to_file(other["tokens"], ogg)  # same name, new melody
    at = sign_in(page("rate"), "finn")
    assert not at.exception
    (_, audio), = served
    import numpy as np

    def similarity(x: bytes, y: bytes) -> float:  # lossy encodings of one melody: close to 1
        return float(np.corrcoef(decoded(x), decoded(y))[0, 1])

    assert similarity(audio, render(mine["tokens"])) > 0.95
    assert similarity(audio, ogg.read_bytes()) < 0.5  # not the melody written over it
    assert db.get_clip(engine, clip_id).audio_sha256 == db.sha256_bytes(audio)
    at.run()  # a rerun plays the recorded file, unchanged
    assert served[-1][1] == audio


def test_empty_queue_says_how_to_fill_it(engine):
    at = sign_in(page("rate"), "dave")
    assert not at.exception
    assert "rlmusic generate -n 16 --enqueue" in texts(at.info)
    assert not at.get("audio")


def test_rating_everything_ends_with_the_empty_queue_message(engine):
    ids = enqueue(engine, n=2)
    at = sign_in(page("rate"), "erin")
    for stars in (0, 4):
        at.feedback[0].set_value(stars)
        at.button(key="submit_rating").click().run()
    assert sorted((r["clip_id"], r["stars"]) for r in db.star_rows(engine)) == [(ids[0], 1), (ids[1], 5)]
    assert "rlmusic generate -n 16 --enqueue" in texts(at.info)


def test_existing_rater_can_pick_their_name(engine):
    enqueue(engine)
    db.get_or_create_rater(engine, "frank")
    at = page("rate").run()
    at.selectbox(key="pick_rater").select("frank")
    at.button(key="start_rating").click().run()
    assert at.session_state[common.RATER_KEY] == "frank"
    assert len(at.get("audio")) == 1


def test_blank_or_overlong_names_are_refused(engine):
    enqueue(engine)
    at = sign_in(page("rate"), "   ")
    assert "Please give a name" in texts(at.error) and RATER_NOT_SET(at)
    at = sign_in(page("rate"), "x" * 80)  # past the widget's (and the DB's) 64 characters
    assert at.error and RATER_NOT_SET(at)
    assert db.list_raters(engine) == []


def test_two_sessions_rate_as_themselves(engine):
    ids = enqueue(engine)
    alice, bob = sign_in(page("rate"), "alice"), sign_in(page("rate"), "bob")
    for at, stars in ((alice, 1), (bob, 2)):
        at.feedback[0].set_value(stars)
        at.button(key="submit_rating").click().run()
    rows = {(r["rater"], r["clip_id"], r["stars"]) for r in db.star_rows(engine)}
    assert rows == {("alice", ids[0], 2), ("bob", ids[0], 3)}


def test_change_rater_forgets_the_session(engine):
    enqueue(engine)
    at = sign_in(page("rate"), "gina")
    at.sidebar.button(key="change_rater").click().run()
    assert RATER_NOT_SET(at) and "rate_clip" not in at.session_state
    assert "Who is listening?" in texts(at.subheader)


def test_schema_behind_says_to_upgrade(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    at = page("rate").run()
    assert "rlmusic db upgrade" in texts(at.error)
    assert not at.get("audio") and not at.text_input
    db.dispose_engine(url)


# --------------------------------------------------------------------------- Compare


def test_compare_stores_the_served_pair(engine):
    enqueue(engine, n=2, name="prior")
    enqueue(engine, n=2, name="tuned")
    at = sign_in(page("compare"), "alice")
    assert not at.exception
    a, b = at.session_state["compare_pair"]
    assert a.id != b.id and len(at.get("audio")) == 2
    at.button(key="prefer_b").click().run()
    rows = db.pair_rows(engine)
    assert [(r["clip_a"], r["clip_b"], r["rater"], r["winner"]) for r in rows] == [
        (a.id, b.id, "alice", "b")
    ]
    a2, b2 = at.session_state["compare_pair"]
    assert {a2.id, b2.id} != {a.id, b.id}
    at.button(key="prefer_tie").click().run()
    assert [r["winner"] for r in db.pair_rows(engine)] == ["b", "tie"]


def test_compare_with_one_clip_says_how_to_fill_the_queue(engine):
    enqueue(engine, n=1)
    at = sign_in(page("compare"), "alice")
    assert "rlmusic generate -n 16 --enqueue" in texts(at.info)
    assert [b.key for b in at.button if b.key and b.key.startswith("prefer_")] == []


# --------------------------------------------------------------------------- Dashboard, navigation


def test_dashboard_shows_figures_and_charts(engine):
    ids = enqueue(engine, n=3, name="prior") + enqueue(engine, n=3, name="tuned")
    for rater, stars in (("alice", [1, 2, 3, 4, 5, 4]), ("bob", [2, 2, 3, 5, 5, 4])):
        for clip_id, s in zip(ids, stars):
            db.add_rating(engine, rater, clip_id, s)
    db.add_comparison(engine, "alice", ids[0], ids[3], "b")
    job = db.create_job(engine, "tune", {"timesteps": 1000})
    db.update_job(engine, job, status="running")
    at = page("dashboard").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Ratings"] == "12" and metrics["Comparisons"] == "1" and metrics["Raters"] == "2"
    assert metrics["Queue (unrated clips)"] == "0"
    charts = at.get("vega_lite_chart")
    assert len(charts) >= 4  # stars per model, over time, agreement, jobs
    frames = [df.value for df in at.dataframe]
    per_model = frames[0].set_index("model_name")
    assert per_model.loc["prior", "n"] == 6 and per_model.loc["prior", "mean"] == pytest.approx(13 / 6)
    assert per_model.loc["tuned", "ci_low"] < per_model.loc["tuned", "mean"] < per_model.loc["tuned", "ci_high"]
    agreement = frames[1]
    assert list(agreement[["rater_a", "rater_b", "shared"]].iloc[0]) == ["alice", "bob", 6]
    assert "running" in set(frames[2]["status"])


def test_dashboard_on_an_empty_database(engine):
    at = page("dashboard").run()
    assert not at.exception
    assert "rlmusic generate -n 16 --enqueue" in texts(at.info)
    assert "No star ratings yet." in texts(at.info)


def test_navigation_opens_on_rate_and_switches_pages(engine):
    enqueue(engine)
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.title[0].value == "Rate a melody"
    at.switch_page("views/dashboard.py").run()
    assert at.title[0].value == "Dashboard"


def test_a_served_clip_that_disappeared_is_reported_not_crashed(engine):
    from sqlalchemy import text

    ids = enqueue(engine, n=2)
    at = sign_in(page("rate"), "hana")
    assert at.session_state["rate_clip"].id == ids[0]
    with engine.begin() as conn:  # another tool removed the clip while it was on screen
        conn.execute(text("DELETE FROM clips WHERE id = :id"), {"id": ids[0]})
    at.feedback[0].set_value(2)
    at.button(key="submit_rating").click().run()
    assert not at.exception
    assert "Could not save this rating" in texts(at.error)
    assert db.star_rows(engine) == []
    at.button(key="skip_clip").click().run()
    assert at.session_state["rate_clip"].id == ids[1]


def test_audio_removed_from_the_cache_is_rendered_again(engine):
    enqueue(engine, n=1)
    at = sign_in(page("rate"), "ivan")
    first = Path(at.session_state["rate_clip"].audio_path)
    first.unlink()
    at.run()
    assert not at.exception and len(at.get("audio")) == 1
    assert first.is_file()  # same cache name: same clip, same settings
    assert db.get_clip(engine, at.session_state["rate_clip"].id).audio_path == str(first)
