"""The listening app in a real browser: `rlmusic app` as a subprocess, Debian's Chromium
driven by Playwright (never `playwright install`), a temporary SQLite database.

Screenshots go to ``$RLMUSIC_TEST_ARTIFACTS`` (default: the test's tmp folder); their
paths are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

import db
from rlmusic.audio.render import duration_seconds
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: run scripts/setup.sh (Debian chromium)"
    root = tmp_path_factory.mktemp("browser_app")
    url = f"sqlite:///{root / 'rlmusic.db'}"
    db.upgrade(url)
    engine = db.get_engine(url)
    tokens = {}
    for name in ("prior", "tuned"):
        model = db.register_model(engine, name=name, directory=root / name, kind="prior")
        clips = [
            {"tokens": clip_tokens(i + 10 * (name == "tuned")), "midi_path": f"{name}/{i}.mid"}
            for i in range(5)
        ]
        for clip_id, clip in zip(db.enqueue_clips(engine, model, clips), clips):
            tokens[clip_id] = clip["tokens"]
    port = free_port()
    env = dict(os.environ, RLMUSIC_HOME=str(root / "home"), RLMUSIC_DATABASE_URL=url)
    log = root / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlmusic", "app", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"rlmusic app exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"rlmusic app did not answer in {STARTUP_S}s:\n{log.read_text()}")
            time.sleep(0.25)
        yield Server(base, engine, tokens, log)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
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


def new_page(browser, server: Server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(ACTION_MS)
    page.goto(server.base)
    return page


def wait_idle(page) -> None:
    """Until the script has finished its run and no element on screen is stale."""
    page.wait_for_function(
        """() => document.querySelector('[data-testid="stApp"]')
                   ?.getAttribute('data-test-script-state') === 'notRunning'
              && !document.querySelector('[data-stale="true"]')"""
    )


def sign_in(page, name: str) -> None:
    page.get_by_label("or a new name").fill(name)
    page.get_by_role("button", name="Start").click()
    page.get_by_role("button", name="Submit rating").wait_for()
    wait_idle(page)


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


def test_rate_and_compare_in_a_real_browser(browser, server, artifacts):
    page = new_page(browser, server)
    page.get_by_text("Who is listening?").wait_for()
    sign_in(page, "alice")

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

    page.get_by_role("link", name="Compare").click()
    page.get_by_role("button", name="A is better").wait_for()
    wait_idle(page)
    durations = audio_durations(page, 2)
    shown = [int(m) for m in re.findall(r"Clip (\d+)", page.inner_text('[data-testid="stMain"]'))]
    assert len(shown) == 2 and shown[0] != shown[1]
    for d, cid in zip(durations, shown):
        assert d == pytest.approx(duration_seconds(server.tokens[cid], TEMPO), abs=0.05)
    compare_shot = artifacts / "compare.png"
    page.screenshot(path=str(compare_shot), full_page=True)
    page.get_by_role("button", name="A is better").click()
    page.get_by_text("Saved: a is better.").wait_for()
    wait_idle(page)
    pairs = [r for r in db.pair_rows(server.engine) if r["rater"] == "alice"]
    assert [(r["clip_a"], r["clip_b"], r["winner"]) for r in pairs] == [(shown[0], shown[1], "a")]

    page.get_by_role("link", name="Dashboard").click()
    page.get_by_text("Stars per model").wait_for()
    wait_idle(page)
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    charts.nth(1).wait_for()  # stars per model with CIs, judgements over time
    for i in range(charts.count()):  # drawn, not placeholders
        charts.nth(i).locator("canvas, svg").first.wait_for()
    page.set_viewport_size({"width": 1280, "height": 1800})
    dashboard_shot = artifacts / "dashboard.png"
    page.screenshot(path=str(dashboard_shot), full_page=True)
    print(f"\nscreenshots: {rate_shot} {compare_shot} {dashboard_shot}")
    page.context.close()


def test_two_sessions_rating_at_once_lose_nothing(browser, server):
    bob, carol = new_page(browser, server), new_page(browser, server)
    sign_in(bob, "bob")
    sign_in(carol, "carol")
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
    bob.context.close()
    carol.context.close()


def test_jobs_page_in_a_real_browser(browser, server, artifacts):
    page = new_page(browser, server)
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
