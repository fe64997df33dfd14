"""`make run` runs what the app queues (the acceptance test): `make -s run` on a fresh
RLMUSIC_HOME (the embedded SQLite default), the researcher link it prints opened in
Debian's Chromium (Playwright, never `playwright install`), a tiny tuning job queued on
the Jobs page and run to `succeeded` by the worker `make run` started, with no other
command; then Ctrl-C (SIGINT to make's process group) stops the app and the worker, which
is marked stopped in the workers table.

Measured: 109 s on a busy 2-core machine (about 75 s of it `make run`'s own preamble:
study, clips, evaluation; 9 s the tuning job in the worker).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from test_app_browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_idle

import db

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
STARTUP_S = 300  # make run's preamble (study, 16 clips with audio, an evaluation), then the app
JOB_S = 300  # the tiny job, with the worker's first imports of torch and SB3
STOP_S = 60
ACTION_MS = 45_000
# A tuning config that trains in seconds from the shipped prior: one 64-step rollout per
# 64 env steps, no evaluation on the way, a few melodies at the end.
TINY_TOML = """
n_steps = 16
batch_size = 32
n_epochs = 1
eval_every = 0
eval_melodies = 4
checkpoint_every = 0
eval_corpus = "none"
"""


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def printed(log: Path, pattern: str) -> re.Match | None:
    return re.search(pattern, log.read_text(errors="replace"))


def wait_for_app(proc: subprocess.Popen, log: Path) -> tuple[str, int]:
    """Until make run prints the researcher link and the app answers: (link, worker pid)."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"make run exited with {proc.returncode}:\n{log.read_text()}")
        link = printed(log, r"your researcher link \([^)]*\): (http://\S+)")
        worker = printed(log, r"== worker: pid (\d+) .*; log (\S+)")
        if link and worker:
            try:
                with urllib.request.urlopen(link.group(1).split("?")[0] + "_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return link.group(1), int(worker.group(1))
            except OSError:
                pass
        if time.monotonic() > deadline:
            pytest.fail(f"make run did not serve the app in {STARTUP_S}s:\n{log.read_text()}")
        time.sleep(0.5)


def test_make_run_runs_a_job_queued_in_the_browser_and_stops_its_worker(tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} missing: run scripts/setup.sh (Debian chromium)"
    home, port = tmp_path / "home", free_port()
    config = tmp_path / "tiny.toml"
    config.write_text(TINY_TOML)
    env = dict(os.environ, RLMUSIC_HOME=str(home), PORT=str(port), OMP_NUM_THREADS="1")
    for key in ("RLMUSIC_DATABASE_URL", "RLMUSIC_APP_OPEN"):
        env.pop(key, None)
    url = f"sqlite:///{home / 'rlmusic.db'}"  # the embedded default make run uses
    log = tmp_path / "make_run.log"
    with open(log, "wb") as out:  # its own process group: Ctrl-C at a terminal reaches all of it
        proc = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    worker_pid = None
    try:
        link, worker_pid = wait_for_app(proc, log)
        assert link.startswith(f"http://127.0.0.1:{port}/?invite=")
        engine = db.get_engine(url)
        deadline = time.monotonic() + 60
        while not (workers := db.live_workers(engine)):  # the worker announces itself
            assert alive(worker_pid) and time.monotonic() < deadline, (home / "logs" / "worker.log").read_text()
            time.sleep(0.5)
        (worker,) = workers
        assert worker["pid"] == worker_pid and worker["job_id"] is None

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
            page.set_default_timeout(ACTION_MS)
            page.goto(link)
            page.get_by_role("link", name="Jobs").click()
            page.get_by_role("button", name="Queue tuning job").wait_for()
            page.get_by_text(re.compile(r"Worker .* alive, last seen \d+ s ago, idle")).wait_for()
            wait_idle(page)
            page.get_by_label("Env steps").fill("128")
            page.get_by_label("Melody length (16ths)").fill("16")
            page.get_by_label("Melodies in parallel").fill("4")
            page.get_by_label("Config file (TOML, optional)").fill(str(config))
            page.get_by_role("button", name="Queue tuning job").click()
            message = page.get_by_text(re.compile(r"Queued tuning job \d+; worker .* will pick it up"))
            message.wait_for()
            job_id = int(re.search(r"job (\d+)", message.inner_text()).group(1))
            # the job's own view redraws itself until it is done; no other command runs
            page.get_by_text(f"Job {job_id}: tune, succeeded").wait_for(timeout=JOB_S * 1000)
            page.get_by_text("Evaluation").first.wait_for()
            page.screenshot(path=str(tmp_path / "jobs.png"), full_page=True)
            browser.close()

        job = db.get_job(engine, job_id)
        assert job["status"] == "succeeded" and job["worker"] == worker["name"] and job["attempts"] == 1
        argv = job["config"]["argv"]
        assert argv[argv.index("--timesteps") + 1] == "128" and argv[argv.index("--config") + 1] == str(config)
        assert (Path(job["output_dir"]) / "config.json").is_file()  # the tuned model, under RLMUSIC_HOME
        assert Path(job["output_dir"]).is_relative_to(home)

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        proc.wait(STOP_S)
        deadline = time.monotonic() + 10
        while alive(worker_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(worker_pid), "the worker outlived make run"
        assert not group_alive(proc.pid), "a process of make run's group outlived it"
        stopped = db.get_worker(engine, worker["name"])
        assert stopped["stopped_at"] is not None and db.live_workers(engine) == []
        worker_log = (home / "logs" / "worker.log").read_text()
        assert f"job {job_id} (tune) succeeded" in worker_log and "Traceback" not in worker_log
        assert printed(log, rf"== stopping the worker \(pid {worker_pid}\)")
    finally:
        if group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        if worker_pid is not None and alive(worker_pid):
            try:
                os.killpg(worker_pid, signal.SIGKILL)  # the worker leads a session of its own
            except ProcessLookupError:
                os.kill(worker_pid, signal.SIGKILL)
        proc.wait(10)
        db.dispose_engine(url)
