"""Workers announce themselves (SQLite and PostgreSQL): registered, alive while their
heartbeat is recent and they have not stopped, the job they run; `Worker.run` registers,
heartbeats idle and while running a job, and is marked stopped however it ends (also a
SIGTERM to a worker that ignores SIGINT, as a background job of `make run` does)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import db
from rlmusic.jobs.worker import Worker, WorkerConfig

pytest_plugins = ["db_fixtures"]


def test_registered_workers_are_alive_until_stopped_or_silent(engine):
    first = db.register_worker(engine, "h:1:worker-a", host="h", pid=1, kinds=["tune", "generate"])
    db.register_worker(engine, "h:2:worker-b", host="h", pid=2, kinds=["round"])
    alive = db.live_workers(engine)
    assert [w["name"] for w in alive] == ["h:2:worker-b", "h:1:worker-a"]  # the most recently heard first
    a = alive[1]
    assert (a["id"], a["host"], a["pid"], a["kinds"], a["job_id"], a["stopped_at"]) == (
        first, "h", 1, ["tune", "generate"], None, None)
    assert 0 <= a["seen_s_ago"] < 5
    assert [w["name"] for w in db.live_workers(engine, kind="round")] == ["h:2:worker-b"]

    job = db.create_job(engine, "tune", {}, origin="queue")
    assert db.worker_heartbeat(engine, "h:1:worker-a", job) is True
    assert db.get_worker(engine, "h:1:worker-a")["job_id"] == job

    time.sleep(0.4)
    db.worker_heartbeat(engine, "h:1:worker-a", None)  # b falls silent, a goes on (idle now)
    assert [(w["name"], w["job_id"]) for w in db.live_workers(engine, within_s=0.3)] == [("h:1:worker-a", None)]

    assert db.worker_stopped(engine, "h:1:worker-a") is True
    stopped = db.get_worker(engine, "h:1:worker-a")
    assert stopped["stopped_at"] is not None and stopped["job_id"] is None
    assert db.worker_heartbeat(engine, "h:1:worker-a", job) is False  # a stopped worker stays stopped
    assert [w["name"] for w in db.live_workers(engine)] == ["h:2:worker-b"]

    assert db.register_worker(engine, "h:1:worker-a", host="h2", pid=7, kinds=["tune"]) == first  # same name again
    again = db.get_worker(engine, "h:1:worker-a")
    assert (again["host"], again["pid"], again["stopped_at"]) == ("h2", 7, None)
    assert db.get_worker(engine, "nobody") is None
    assert db.worker_heartbeat(engine, "nobody") is False and db.worker_stopped(engine, "nobody") is False


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda e: db.register_worker(e, "", host="h", pid=1, kinds=["tune"]), "worker name"),
        (lambda e: db.register_worker(e, "w", host="h", pid=-1, kinds=["tune"]), "pid"),
        (lambda e: db.register_worker(e, "w", host="h", pid=1, kinds=[]), "at least one job kind"),
        (lambda e: db.live_workers(e, within_s=0), "within_s"),
    ],
)
def test_worker_functions_reject_bad_values(engine, call, match):
    with pytest.raises(ValueError, match=match):
        call(engine)


def test_a_worker_heartbeats_idle_and_with_its_running_job_and_stops(engine):
    """The real loop with a runner that waits until the worker's own row names its job."""
    job_id = db.create_job(engine, "tune", {}, origin="queue")
    seen: list[dict] = []

    def runner(job, recorder, device):
        deadline = time.monotonic() + 10
        while (row := db.get_worker(engine, worker.name))["job_id"] != job["id"] and time.monotonic() < deadline:
            time.sleep(0.05)
        seen.append(row)
        return {"done": 1.0}

    config = WorkerConfig(until_empty=True, heartbeat_s=0.1, poll_s=0.1, lost_after_s=2, report_every_s=0)
    worker = Worker(engine, {"tune": runner}, config, say=lambda line: None)
    assert worker.run() == [(job_id, "succeeded")]
    assert seen[0]["job_id"] == job_id and seen[0]["stopped_at"] is None and seen[0]["pid"] == os.getpid()
    row = db.get_worker(engine, worker.name)
    assert row["stopped_at"] is not None and row["job_id"] is None and row["kinds"] == ["tune"]
    assert db.live_workers(engine) == []


def test_an_idle_worker_heartbeats_and_is_marked_stopped_when_it_ends(engine):
    config = WorkerConfig(heartbeat_s=0.1, poll_s=0.1, lost_after_s=2)
    worker = Worker(engine, {"tune": lambda job, recorder, device: {}}, config, say=lambda line: None)
    failed: list[BaseException] = []

    def run():
        try:
            worker.run()
        except KeyboardInterrupt as exc:  # what Ctrl-C raises in an idle worker
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not (row := db.get_worker(engine, worker.name)) and time.monotonic() < deadline:
            time.sleep(0.05)
        beat = row["heartbeat_at"]
        time.sleep(0.5)
        assert db.get_worker(engine, worker.name)["heartbeat_at"] > beat  # idle, still beating
        assert [w["name"] for w in db.live_workers(engine)] == [worker.name]
    finally:
        worker.stopping = True  # the loop ends at its next look
        thread.join(10)
    assert not thread.is_alive() and not failed
    assert db.get_worker(engine, worker.name)["stopped_at"] is not None


def test_sigterm_stops_a_background_worker_that_ignores_sigint(db_url, tmp_path):
    """`make run` starts the worker as a script's background job: SIGINT ignored. SIGTERM
    still stops it, and it is marked stopped."""
    db.upgrade(db_url)
    engine = db.get_engine(db_url)
    env = dict(os.environ, RLMUSIC_DATABASE_URL=db_url, RLMUSIC_HOME=str(tmp_path / "home"))
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlmusic", "worker", "--threads", "1", "--heartbeat", "0.2", "--poll", "0.2"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        deadline = time.monotonic() + 60
        while not db.live_workers(engine):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        (worker,) = db.live_workers(engine)
        assert worker["pid"] == proc.pid and worker["job_id"] is None
        proc.send_signal(signal.SIGINT)  # ignored, as by a background job
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert db.get_worker(engine, worker["name"])["stopped_at"] is not None, log.read_text()
    assert db.live_workers(engine) == []
    assert "Traceback" not in log.read_text()


def test_sigterm_hands_a_running_tuning_job_back_with_its_checkpoint(tmp_path, monkeypatch, capsys, tiny_prior,
                                                                     tiny_tune_config):
    """What `make run` does when stopped mid-job: one SIGTERM to its worker (its own
    session, SIGINT ignored); the tuning job stops at its next env step, keeps its
    checkpoint and goes back to the queue; the worker ends marked stopped."""
    from rlmusic.cli.main import main as cli

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    db.upgrade(url)
    engine = db.get_engine(url)
    out = tmp_path / "run"
    assert cli(["jobs", "submit", "tune", "--prior", str(tiny_prior), "--config", str(tiny_tune_config),
                "--timesteps", "100000", "--out", str(out)]) == 0
    job_id = int(capsys.readouterr().out.strip().splitlines()[-1])
    log = tmp_path / "worker.log"
    with open(log, "wb") as stdout:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rlmusic", "worker", "--threads", "1", "--heartbeat", "0.2", "--poll", "0.2",
             "--report-every", "0"],
            env=dict(os.environ, OMP_NUM_THREADS="1"), stdout=stdout, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        deadline = time.monotonic() + 120
        while not any((out / "checkpoints").glob("step_*.json")):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        (worker,) = db.live_workers(engine)
        assert worker["job_id"] == job_id
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
        job = db.get_job(engine, job_id)
        assert job["status"] == "queued" and job["worker"] is None, log.read_text()
        assert "back in the queue" in job["log_tail"]
        assert any((out / "checkpoints").glob("step_*.zip")) and not (out / "model.safetensors").exists()
        assert db.get_worker(engine, worker["name"])["stopped_at"] is not None
        assert "Traceback" not in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        db.dispose_engine(url)
