"""Who may come in, page by page (Streamlit's AppTest, a temporary SQLite database): only
through a valid, unrevoked invite; raters see Rate and Compare under their own name, never
the researcher pages; a study's pairs come first on Compare, blind; the Dashboard shows
the studies; the open demo mode says so on every page and lets nobody pass as an invited
rater."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest
from test_app import ROOT, TIMEOUT, app_database, enqueue, page, real_clips, texts

import db
from app import common


@pytest.fixture
def engine(tmp_path, monkeypatch):
    url = app_database(tmp_path, monkeypatch, open_mode=False)  # invited raters only
    yield db.get_engine(url)
    db.dispose_engine(url)


def visit(name: str, token: str | None = None) -> AppTest:
    at = page(name) if name != "main" else AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=TIMEOUT)
    if token is not None:
        at.query_params[common.INVITE_PARAM] = token
    return at.run()


def widgets(at: AppTest) -> list:
    """Everything a visitor could act on or hear."""
    return [*at.button, *at.feedback, *at.text_input, *at.selectbox, *at.pills, *at.get("audio")]


def shown_text(at: AppTest) -> str:
    parts = [texts(getattr(at, kind)) for kind in ("title", "header", "subheader", "markdown", "caption", "info",
                                                   "success", "warning", "error")]
    return " ".join(parts + [texts(at.sidebar.markdown), texts(at.sidebar.caption), *(b.label for b in at.button)])


@pytest.mark.parametrize("name", ["rate", "compare", "dashboard", "jobs", "main"])
def test_no_invite_or_a_wrong_one_gets_a_friendly_page_and_no_widget(engine, name):
    enqueue(engine)
    db.invite_rater(engine, "ann")
    at = visit(name)
    assert not at.exception
    assert "by invitation" in texts(at.info) and widgets(at) == []
    at = visit(name, "not-a-real-invite-token-at-all")
    assert "This invite link is not valid" in texts(at.error) and widgets(at) == []
    assert "ann" not in shown_text(at)  # no rater's name shown to a stranger


def test_an_invited_rater_rates_and_compares_as_themself(engine):
    ids = enqueue(engine, n=2, name="prior") + enqueue(engine, n=2, name="tuned")
    token = db.invite_rater(engine, "ann")
    db.get_or_create_rater(engine, "someone else")
    at = visit("rate", token)
    assert not at.exception and "Signed in as **ann**" in texts(at.sidebar.markdown)
    assert at.session_state[common.RATER_KEY] == "ann" and "someone else" not in shown_text(at)
    assert not at.text_input and not at.selectbox  # no name to type or pick
    at.feedback[0].set_value(4)
    at.button(key="submit_rating").click().run()
    assert [(r["rater"], r["clip_id"], r["stars"]) for r in db.star_rows(engine)] == [("ann", ids[0], 5)]
    at = visit("compare", token)
    left, right = at.session_state["compare_pair"]
    at.button(key="prefer_a").click().run()
    assert [(r["rater"], r["clip_a"], r["clip_b"]) for r in db.pair_rows(engine)] == [("ann", left.id, right.id)]


def test_a_revoked_or_replaced_invite_is_out_at_the_next_action(engine):
    enqueue(engine, n=2)
    token = db.invite_rater(engine, "bea")
    at = visit("rate", token)
    assert at.feedback
    db.revoke_rater(engine, "bea")
    at.feedback[0].set_value(2)
    at.button(key="submit_rating").click().run()
    assert "This invite link is not valid" in texts(at.error) and widgets(at) == []
    assert db.star_rows(engine) == []  # nothing stored after the revocation
    assert visit("rate", token).feedback == []  # nor from a fresh visit
    new = db.invite_rater(engine, "bea")
    at = visit("rate", new)
    assert at.feedback
    db.invite_rater(engine, "bea")  # a newer link replaces the one this session came with
    at.run()
    assert widgets(at) == []


def test_a_rater_cannot_open_the_researcher_pages(engine):
    enqueue(engine)
    rater, researcher = db.invite_rater(engine, "cy"), db.invite_rater(engine, "dee", researcher=True)
    at = visit("dashboard", rater)
    assert "Only researchers may open the Dashboard." in texts(at.warning) and not at.metric
    at = visit("jobs", rater)
    assert "Only researchers may open the jobs page." in texts(at.warning)
    assert "Queue a tuning job" not in texts(at.subheader)
    at = visit("main", rater)
    assert at.title[0].value == "Rate a melody"
    with pytest.raises(ValueError, match=r"Known pages: \[.*rate\.py', .*compare\.py', .*studio\.py'\]"):
        at.switch_page("views/dashboard.py")  # not in a rater's navigation
    at = visit("main", researcher)
    at.switch_page("views/dashboard.py").run()
    assert at.title[0].value == "Dashboard"
    at = visit("dashboard", researcher)
    assert not at.exception and "Stars per model" in texts(at.header)
    assert "Signed in as **dee** (researcher)" in texts(at.sidebar.markdown)
    at = visit("jobs", researcher)
    assert not at.exception and "Queue a tuning job" in texts(at.subheader)


def test_explore_is_for_researchers_and_the_studio_for_every_invited_rater(engine):
    enqueue(engine)
    rater, researcher = db.invite_rater(engine, "cy"), db.invite_rater(engine, "dee", researcher=True)
    at = visit("explore", rater)
    assert "Only researchers may open the Explore page." in texts(at.warning) and not at.get("audio")
    with pytest.raises(ValueError, match=r"Known pages: \[.*rate\.py', .*compare\.py', .*studio\.py'\]"):
        visit("main", rater).switch_page("views/explore.py")
    at = visit("explore", researcher)
    assert not at.exception and at.title[0].value == "Explore melodies"
    for token, name in ((rater, "cy"), (researcher, "dee")):  # the Studio: as themself
        at = visit("studio", token)
        assert not at.exception and at.title[0].value == "Studio"
        assert any(b.key == "studio_harmonise" for b in at.button) and "Who is listening?" not in texts(at.subheader)
        assert f"Signed in as **{name}**" in texts(at.sidebar.markdown)
    at = visit("studio")  # no invite: the friendly page, no Studio
    assert not any(b.key == "studio_harmonise" for b in at.button)


def blind_study(engine, gold_swap: bool = True):
    a = db.register_model(engine, name="secret-model-a", directory="/m/secret-a", kind="prior")
    b = db.register_model(engine, name="secret-model-b", directory="/m/secret-b", kind="tuned", parent_id=a)
    ca = db.enqueue_clips(engine, a, real_clips(2))
    cb = db.enqueue_clips(engine, b, real_clips(2)[::-1])
    [broken] = db.enqueue_clips(engine, a, [{**real_clips(3)[2], "broken": True}])
    pairs = [{"clip_a": ca[0], "clip_b": cb[0], "gold": False, "swap": True, "position": 0},
             {"clip_a": ca[1], "clip_b": broken, "gold": True, "swap": gold_swap, "position": 1},
             {"clip_a": ca[1], "clip_b": cb[1], "gold": False, "swap": False, "position": 2}]
    db.create_study(engine, "blind", model_a_id=a, model_b_id=b, steps=32, seed=0, pairs=pairs)
    return ca, cb, broken


def test_compare_serves_the_study_blind_and_records_a_gold_failure(engine):
    enqueue(engine, n=2, name="other")  # clips outside the study come after it
    ca, cb, broken = blind_study(engine)
    token = db.invite_rater(engine, "eve")
    at = visit("compare", token)
    left, right = at.session_state["compare_pair"]
    assert (left.id, right.id) == (cb[0], ca[0])  # the first pair, B on the left as drawn
    text = shown_text(at)
    assert "secret-model" not in text and str(ca[0]) not in text and str(cb[0]) not in text
    at.button(key="prefer_a").click().run()  # prefers model B's clip (on the left)
    left, right = at.session_state["compare_pair"]
    assert (left.id, right.id) == (broken, ca[1])  # the gold check, broken clip on the left
    at.button(key="prefer_a").click().run()  # the broken one: a gold failure
    report = db.study_report(engine, "blind", max_gold_fail=1.0)
    assert report["gold_failures"] == {"eve": 1} and (report["wins_a"], report["wins_b"]) == (0, 1)
    left, right = at.session_state["compare_pair"]
    assert (left.id, right.id) == (ca[1], cb[1])


def completion_codes(at: AppTest) -> list[str]:
    return [m.group(1) for m in (re.search(r"completion code is \*\*([A-Z2-9]{5}-[A-Z2-9]{5})\*\*", e.value)
                                 for e in at.success) if m]


def test_judging_every_study_pair_shows_a_completion_code_kept_for_the_rater(engine, capsys):
    enqueue(engine, n=2, name="other")
    ca, cb, broken = blind_study(engine)
    eve, fay = db.invite_rater(engine, "eve"), db.invite_rater(engine, "fay")
    at = visit("compare", eve)
    for _ in range(2):
        assert completion_codes(at) == []  # not before the last pair
        at.button(key="prefer_b").click().run()
    assert db.study_completions(engine, "blind") == []
    at.button(key="prefer_b").click().run()  # the study's third and last pair
    [code] = completion_codes(at)  # the completion page: the code and nothing to judge
    assert db.completions_of(engine, "eve")[0]["code"] == code
    assert "compare_pair" not in at.session_state and not any(b.key.startswith("prefer_") for b in at.button)
    again = visit("compare", eve)  # eve comes back in a new session: the same code, still nothing to judge
    assert completion_codes(again) == [code] and "compare_pair" not in again.session_state
    again.button(key="compare_more").click().run()  # she chooses to go on: clips outside the study
    left, right = again.session_state["compare_pair"]
    study_pairs = [{ca[0], cb[0]}, {ca[1], broken}, {ca[1], cb[1]}]
    assert {left.id, right.id} not in study_pairs  # the study's pairs are never served again
    assert completion_codes(again) == [code]  # the code stays on the page
    assert completion_codes(visit("compare", fay)) == []  # fay has judged nothing: no code
    [done] = db.study_completions(engine, "blind")
    assert (done["rater"], done["code"]) == ("eve", code)
    from rlmusic.cli.main import main

    assert main(["study", "report", "blind"]) == 0
    out = capsys.readouterr().out
    assert "completed (every pair judged, code shown on the Compare page): 1 raters" in out
    assert re.search(rf"\n  eve  {code}  \d{{4}}-\d\d-\d\d \d\d:\d\d UTC", out)


def test_the_dashboard_shows_each_study(engine):
    ca, cb, broken = blind_study(engine)
    for rater, winners in (("r1", "aab"), ("r2", "bbb")):
        for (x, y), w in zip(((ca[0], cb[0]), (ca[1], broken), (ca[1], cb[1])), winners):
            db.add_comparison(engine, rater, x, y, w)
    token = db.invite_rater(engine, "dee", researcher=True)
    at = visit("dashboard", token)
    assert not at.exception
    table = next(df.value for df in at.dataframe if "win_rate" in df.value)
    row = table.set_index("study").loc["blind"]
    expected = db.study_report(engine, "blind")  # r2 failed the gold check: left out
    assert row["comparisons"] == expected["n_comparisons"] == 2 and row["raters_excluded"] == 1
    assert row["win_rate"] == pytest.approx(expected["win_rate"]) == 0.5
    assert row["ci_low"] == pytest.approx(expected["ci_low"])
    assert len(at.get("vega_lite_chart")) >= 2  # the win rate with its interval, among the charts


@pytest.mark.parametrize("name", ["rate", "compare", "dashboard", "jobs"])
def test_open_mode_says_so_on_every_page(engine, monkeypatch, name):
    monkeypatch.setenv(common.OPEN_ENV, "1")
    enqueue(engine)
    at = visit(name)
    assert not at.exception and "Open demo mode" in texts(at.warning)


def test_open_mode_lets_nobody_pass_as_an_invited_rater(engine, monkeypatch):
    monkeypatch.setenv(common.OPEN_ENV, "1")
    enqueue(engine)
    db.invite_rater(engine, "ann")
    db.get_or_create_rater(engine, "walk-in")
    at = visit("rate")
    assert at.selectbox(key="pick_rater").options == ["walk-in"]
    at.text_input(key="new_rater").input(" ann ")
    at.button(key="start_rating").click().run()
    assert "belongs to an invited rater" in texts(at.error) and common.RATER_KEY not in at.session_state


def test_rlmusic_app_open_says_it_and_tells_the_pages(engine, monkeypatch, capsys):
    from rlmusic.cli import app as launch
    from rlmusic.cli.main import build_parser

    started = []
    monkeypatch.setattr(launch.os, "execv", lambda path, argv: started.append(argv))
    monkeypatch.setenv(common.OPEN_ENV, "0")  # restored after the test: the command sets it for Streamlit
    launch.main(build_parser("app").parse_args(["--port", "8767", "--open"]))
    assert "OPEN demo mode" in capsys.readouterr().out and launch.os.environ[common.OPEN_ENV] == "1"
    launch.main(build_parser("app").parse_args(["--port", "8767"]))
    assert "invited raters only" in capsys.readouterr().out and common.OPEN_ENV not in launch.os.environ
    assert len(started) == 2
