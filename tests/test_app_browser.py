"""The listening app in a real browser: `rlmusic app` as a subprocess, Debian's Chromium
driven by Playwright (never `playwright install`), a temporary SQLite database with
invited raters and a blind study: strangers, wrong and revoked invites refused with no
widget; an invited rater rates and compares the study blind (no model name), fails a
gold check, cannot open the Dashboard; a researcher can; two raters at once lose nothing.

Screenshots go to ``$RLMUSIC_TEST_ARTIFACTS`` (default: the test's tmp folder); their
paths are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from processes import stop, wait_served

import db
from rlmusic.audio.render import duration_seconds
from rlmusic.music.gold import broken_melody
from rlmusic.music.representation import DEFAULT_VOCAB as V

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
STEPS = 32
TEMPO = 120.0  # the app plays clips at this tempo (app.common.TEMPO)
STARTUP_S = 90  # a busy CI machine is slow to import streamlit + torch-free rlmusic
ACTION_MS = 45_000


@dataclass
class Server:
    base: str
    engine: object
    tokens: dict[int, list[int]]
    log: Path
    invites: dict[str, str]  # rater -> token of their link
    study: dict  # the blind study: its pairs in order of service


MODEL_NAMES = ("alpha-model-x7", "beta-model-q3")  # never on a rater's screen
RATERS = {"alice": False, "bob": False, "carol": False, "rhea": True, "zed": False}  # name -> researcher


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clip_tokens(i: int) -> list[int]:
    """A distinct real-looking melody of STEPS steps: quarter and eighth notes, a rest."""
    scale = [60, 62, 64, 65, 67, 69, 71, 72]
    tokens: list[int] = []
    k = i
    while len(tokens) < STEPS - 4:
        pitch = scale[(k * 3 + i) % len(scale)]
        length = 4 if k % 3 else 2
        tokens += [V.pitch_to_token(pitch)] + [V.HOLD] * (length - 1)
        k += 1
    return (tokens + [V.REST] * STEPS)[:STEPS]


def seed_database(engine, root: Path) -> tuple[dict, dict, dict]:
    """Clips of two models, a blind study (two pairs and a gold check, sides as drawn
    below), invites for RATERS (zed's revoked): (clip tokens, invites, study)."""
    tokens, ids = {}, {}
    for name in MODEL_NAMES:
        model = db.register_model(engine, name=name, directory=root / name, kind="prior")
        clips = [{"tokens": clip_tokens(i + 10 * (name == MODEL_NAMES[1])), "midi_path": f"{name}/{i}.mid"}
                 for i in range(5)]
        ids[name] = db.enqueue_clips(engine, model, clips)
        tokens.update(zip(ids[name], (c["tokens"] for c in clips)))
    a, b = ids[MODEL_NAMES[0]], ids[MODEL_NAMES[1]]
    broken_tokens = broken_melody(tokens[a[1]], V, np.random.default_rng(0)).tolist()
    [broken] = db.enqueue_clips(engine, db.get_clip(engine, a[1]).model_id,
                                [{"tokens": broken_tokens, "midi_path": "broken.mid", "broken": True}])
    tokens[broken] = broken_tokens
    pairs = [{"clip_a": a[0], "clip_b": b[0], "gold": False, "swap": False, "position": 0},
             {"clip_a": a[1], "clip_b": broken, "gold": True, "swap": True, "position": 1},
             {"clip_a": a[2], "clip_b": b[2], "gold": False, "swap": True, "position": 2}]
    db.create_study(engine, "blind", model_a_id=db.get_clip(engine, a[0]).model_id,
                    model_b_id=db.get_clip(engine, b[0]).model_id, steps=STEPS, seed=0, pairs=pairs)
    invites = {name: db.invite_rater(engine, name, researcher=researcher) for name, researcher in RATERS.items()}
    db.revoke_rater(engine, "zed")
    return tokens, invites, {"pairs": pairs}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: run scripts/setup.sh (Debian chromium)"
    root = tmp_path_factory.mktemp("browser_app")
    url = f"sqlite:///{root / 'rlmusic.db'}"
    db.upgrade(url)
    engine = db.get_engine(url)
    tokens, invites, study = seed_database(engine, root)
    port = free_port()
    env = dict(os.environ, RLMUSIC_HOME=str(root / "home"), RLMUSIC_DATABASE_URL=url)
    env.pop("RLMUSIC_APP_OPEN", None)
    log = root / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlmusic", "app", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
            return r.status == 200

    try:
        wait_served(proc, healthy, STARTUP_S, "rlmusic app", lambda: log.read_text())
        yield Server(base, engine, tokens, log, invites, study)
    finally:
        stop(proc)
        db.dispose_engine(url)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def artifacts(tmp_path) -> Path:
    folder = Path(os.environ.get("RLMUSIC_TEST_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def new_page(browser, server: Server, rater: str | None = None, path: str = "", token: str | None = None):
    """A fresh browser session opening ``path`` with ``rater``'s invite link (or ``token``;
    or none)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(ACTION_MS)
    token = server.invites[rater] if rater else token
    page.goto(f"{server.base}/{path}" + (f"?invite={token}" if token else ""))
    return page


def wait_idle(page) -> None:
    """Until the script has finished its run and no element on screen is stale."""
    page.wait_for_function(
        """() => document.querySelector('[data-testid="stApp"]')
                   ?.getAttribute('data-test-script-state') === 'notRunning'
              && !document.querySelector('[data-stale="true"]')"""
    )


def sign_in(browser, server: Server, rater: str):
    """``rater`` opens their invite link; returns the page once the Rate page is ready."""
    page = new_page(browser, server, rater)
    page.get_by_role("button", name="Submit rating").wait_for()
    wait_idle(page)
    return page


def shown_clip(page) -> int:
    text = page.get_by_text(re.compile(r"^Clip \d+ ·")).inner_text()
    return int(re.match(r"Clip (\d+)", text).group(1))


def audio_durations(page, count: int) -> list[float]:
    """Durations of the page's ``count`` audio elements once their metadata has loaded."""
    handle = page.wait_for_function(
        """(n) => {
             const els = [...document.querySelectorAll('audio')];
             if (els.length !== n) return null;
             if (!els.every(a => a.readyState >= 1 && isFinite(a.duration))) return null;
             return els.map(a => a.duration);
           }""",
        arg=count,
    )
    return handle.json_value()


def rate(page, stars: int) -> int:
    """Give ``stars`` to the clip on screen; returns its id once the app confirms."""
    clip_id = shown_clip(page)
    page.get_by_role("radio", name=f"{stars} out of 5 stars").click()
    page.get_by_role("button", name="Submit rating").click()
    page.get_by_text(f"Saved {stars} stars for clip {clip_id}.").wait_for()
    wait_idle(page)
    return clip_id


def refused(page, says: str) -> None:
    """The friendly page: ``says``, and nothing to act on or hear, no page links."""
    page.get_by_text(says).wait_for()
    wait_idle(page)
    main = page.locator('[data-testid="stMain"]')
    assert main.locator("button, input, audio, [role=radiogroup]").count() == 0
    assert page.get_by_role("link", name="Rate").count() == 0


def test_no_invite_a_wrong_and_a_revoked_one_are_refused(browser, server):
    page = new_page(browser, server)
    refused(page, "This listening app is by invitation.")
    page.goto(f"{server.base}/?invite=this-is-no-invite-token-we-made")
    refused(page, "This invite link is not valid")
    page.goto(f"{server.base}/?invite={server.invites['zed']}")  # revoked
    refused(page, "This invite link is not valid")
    page.goto(f"{server.base}/dashboard")
    refused(page, "This listening app is by invitation.")
    assert "Stars per model" not in page.inner_text("body")
    page.context.close()
    logged = server.log.read_text()
    assert not any(token in logged for token in server.invites.values())  # never logged


def test_an_invited_rater_rates_and_compares_blind(browser, server, artifacts):
    page = sign_in(browser, server, "alice")
    page.get_by_text("Signed in as alice").wait_for()
    assert not any(name in page.inner_text("body") for name in ("bob", "carol", "rhea"))  # only their own name
    clip_id = shown_clip(page)
    [duration] = audio_durations(page, 1)
    assert duration == pytest.approx(duration_seconds(server.tokens[clip_id], TEMPO), abs=0.05)
    rate_shot = artifacts / "rate.png"
    page.screenshot(path=str(rate_shot), full_page=True)

    page.get_by_role("button", name="pleasant").click()
    wait_idle(page)
    assert rate(page, 4) == clip_id
    rows = [r for r in db.star_rows(server.engine) if r["rater"] == "alice"]
    assert [(r["clip_id"], r["stars"], r["tags"]) for r in rows] == [(clip_id, 4, ["pleasant"])]
    assert shown_clip(page) != clip_id  # moved on
    page.get_by_text("1 judgements so far").wait_for()

    # Compare: the study's pairs first, on the sides drawn, no model name anywhere on the page
    first, gold, _ = server.study["pairs"]
    page.get_by_role("link", name="Compare").click()
    page.get_by_role("button", name="A is better").wait_for()
    wait_idle(page)
    assert f"invite={server.invites['alice']}" in page.url  # kept in the address: a reload stays in
    durations = audio_durations(page, 2)
    for d, cid in zip(durations, (first["clip_a"], first["clip_b"])):  # not swapped: A's clip on the left
        assert d == pytest.approx(duration_seconds(server.tokens[cid], TEMPO), abs=0.05)
    html = page.content()
    assert not any(name in html for name in MODEL_NAMES) and "Clip " not in page.inner_text("body")
    compare_shot = artifacts / "compare.png"
    page.screenshot(path=str(compare_shot), full_page=True)
    page.get_by_role("button", name="A is better").click()
    page.get_by_text("Saved: a is better.").wait_for()
    wait_idle(page)
    pairs = [r for r in db.pair_rows(server.engine) if r["rater"] == "alice"]
    assert [(r["clip_a"], r["clip_b"], r["winner"]) for r in pairs] == [(first["clip_a"], first["clip_b"], "a")]

    # the gold check, the broken copy on the left: alice picks it, a gold failure is recorded
    page.reload()  # the session's invite is in the address: still alice
    page.get_by_role("button", name="A is better").wait_for()
    wait_idle(page)
    page.get_by_role("button", name="A is better").click()
    page.get_by_text("Saved: a is better.").wait_for()
    wait_idle(page)
    pairs = [r for r in db.pair_rows(server.engine) if r["rater"] == "alice"]
    assert (pairs[-1]["clip_a"], pairs[-1]["clip_b"]) == (gold["clip_b"], gold["clip_a"])
    report = db.study_report(server.engine, "blind")
    assert report["gold_failures"]["alice"] == 1 and report["excluded_raters"] == ["alice"]

    # a rater has no Dashboard: no link, and its address shows the rater's default page
    assert page.get_by_role("link", name="Dashboard").count() == 0
    page.goto(f"{server.base}/dashboard?invite={server.invites['alice']}")
    page.get_by_role("button", name="Submit rating").wait_for()
    wait_idle(page)
    assert "Stars per model" not in page.inner_text("body")
    print(f"\nscreenshots: {rate_shot} {compare_shot}")
    page.context.close()


def test_two_raters_at_once_lose_nothing(browser, server):
    bob, carol = sign_in(browser, server, "bob"), sign_in(browser, server, "carol")
    given: dict[str, list[tuple[int, int]]] = {"bob": [], "carol": []}
    for round_ in range(2):
        clips = {}
        for name, page, stars in (("bob", bob, 1 + round_), ("carol", carol, 5 - round_)):
            clips[name] = (shown_clip(page), stars)
            page.get_by_role("radio", name=f"{stars} out of 5 stars").click()
        # both submits leave before either answer comes back: two sessions write at once
        bob.get_by_role("button", name="Submit rating").click(no_wait_after=True)
        carol.get_by_role("button", name="Submit rating").click(no_wait_after=True)
        for name, page in (("bob", bob), ("carol", carol)):
            clip_id, stars = clips[name]
            page.get_by_text(f"Saved {stars} stars for clip {clip_id}.").wait_for()
            wait_idle(page)
            given[name].append((clip_id, stars))
    for name in ("bob", "carol"):
        rows = [(r["clip_id"], r["stars"]) for r in db.star_rows(server.engine) if r["rater"] == name]
        assert rows == given[name]
        assert len({c for c, _ in rows}) == 2  # two different clips, none lost or doubled
    carol.get_by_text("2 judgements so far").wait_for()
    # both compare the study's first pair at once, with opposite answers
    for page in (bob, carol):
        page.get_by_role("link", name="Compare").click()
        page.get_by_role("button", name="A is better").wait_for()
        wait_idle(page)
    bob.get_by_role("button", name="A is better").click(no_wait_after=True)
    carol.get_by_role("button", name="B is better").click(no_wait_after=True)
    for page, text in ((bob, "Saved: a is better."), (carol, "Saved: b is better.")):
        page.get_by_text(text).wait_for()
        wait_idle(page)
    first = server.study["pairs"][0]
    stored = {(r["rater"], r["clip_a"], r["clip_b"], r["winner"]) for r in db.pair_rows(server.engine)
              if r["rater"] in ("bob", "carol")}
    assert stored == {("bob", first["clip_a"], first["clip_b"], "a"), ("carol", first["clip_a"], first["clip_b"], "b")}
    bob.context.close()
    carol.context.close()


def test_a_researcher_reads_the_dashboard_with_the_study(browser, server, artifacts):
    """After the raters above: the study's win rate with its interval and agreement, drawn."""
    page = new_page(browser, server, "rhea", path="dashboard")
    page.get_by_text("Stars per model").wait_for()
    page.get_by_text("Blind A/B studies").wait_for()
    page.get_by_text("Dots: share of decided comparisons won by model A").wait_for()  # bob's and carol's
    wait_idle(page)
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    charts.nth(1).wait_for()
    for i in range(charts.count()):  # drawn, not placeholders
        charts.nth(i).locator("canvas, svg").first.wait_for()
    page.set_viewport_size({"width": 1280, "height": 2200})
    dashboard_shot = artifacts / "dashboard.png"
    page.screenshot(path=str(dashboard_shot), full_page=True)
    print(f"\nscreenshot: {dashboard_shot}")
    page.context.close()


def test_jobs_page_in_a_real_browser(browser, server, artifacts):
    page = new_page(browser, server, "rhea")
    page.get_by_role("link", name="Jobs").click()
    page.get_by_role("button", name="Queue tuning job").wait_for()
    wait_idle(page)
    page.get_by_label("Env steps").fill("4096")
    page.get_by_role("button", name="Queue tuning job").click()
    message = page.get_by_text(re.compile(r"Queued tuning job \d+"))
    message.wait_for()
    job_id = int(re.search(r"job (\d+)", message.inner_text()).group(1))
    job = db.get_job(server.engine, job_id)
    assert job["status"] == "queued" and "--timesteps" in job["config"]["argv"]
    assert job["config"]["argv"][job["config"]["argv"].index("--timesteps") + 1] == "4096"
    # a worker takes it and reports two updates, as `rlmusic worker` does
    db.claim_job(server.engine, "browser-test-worker")
    for step, total in ((1024, 3.0), (2048, 4.5)):
        db.report(server.engine, job_id, "browser-test-worker", progress=step / 4096,
                  metrics={"kl/per_step": 0.05}, point=(step, {"reward/total": total, "kl/per_step": step / 1e5}))
    page.get_by_text("50% done").wait_for(timeout=30_000)  # the running job's view redraws itself
    page.get_by_text(f"Job {job_id}: tune, running").wait_for()
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    charts.nth(1).locator("canvas, svg").first.wait_for()  # return and KL curves drawn
    wait_idle(page)
    shot = artifacts / "jobs.png"
    page.set_viewport_size({"width": 1280, "height": 1600})
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    page.get_by_role("button", name="Cancel job").click()
    page.get_by_text(f"Job {job_id} stops at its next rollout and keeps its checkpoint.").wait_for()
    assert db.get_job(server.engine, job_id)["cancel_requested"] is True
    page.context.close()
