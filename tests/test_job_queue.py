"""The job queue in the database, on both backends: claims (also by racing processes),
heartbeats and what they hear back, lost jobs, cancellation, curves and log tails."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

import db
from db.job_queue import CANCEL, LOG_TAIL_LINES, LOST, OK

pytest_plugins = ["db_fixtures"]


def queue(engine, n: int, kind: str = "tune") -> list[int]:
    return [db.create_job(engine, kind, {"argv": [str(i)]}, origin="queue") for i in range(n)]


def test_claims_take_the_oldest_queued_job_of_the_queue_once(engine):
    by_hand = db.create_job(engine, "tune", {}, worker="cli-run")  # a command running itself
    trial = db.create_job(engine, "tune", {}, origin="sweep")  # a sweep's trial: never a worker's
    first, second = queue(engine, 2)
    generate = queue(engine, 1, kind="generate")[0]
    job = db.claim_job(engine, "w1")
    assert job["id"] == first and job["status"] == "running" and job["worker"] == "w1" and job["attempts"] == 1
    assert job["started_at"] is not None and job["heartbeat_at"] is not None
    assert db.claim_job(engine, "w2", kinds=["generate"])["id"] == generate
    assert db.claim_job(engine, "w2")["id"] == second
    assert db.claim_job(engine, "w3") is None
    assert db.get_job(engine, by_hand)["status"] == "running" and db.get_job(engine, by_hand)["attempts"] == 1
    assert db.get_job(engine, trial)["status"] == "queued"
    assert db.claim_job(engine, "trial-process", job_id=trial)["worker"] == "trial-process"
    assert db.claim_job(engine, "again", job_id=trial) is None  # taken already
    with pytest.raises(ValueError, match="non-empty name"):
        db.claim_job(engine, "")


def test_a_queued_job_gets_a_default_output_folder(engine, monkeypatch, tmp_path):
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    job_id = queue(engine, 1)[0]
    assert db.get_job(engine, job_id)["output_dir"] == str(tmp_path / "home" / "jobs" / f"job-{job_id:06d}")
    given = db.create_job(engine, "tune", {}, origin="queue", output_dir="/data/run")
    assert db.get_job(engine, given)["output_dir"] == "/data/run"
    assert db.get_job(engine, db.create_job(engine, "tune", {}))["output_dir"] is None  # a command says its own


def claim_all(url: str, name: str) -> list[int]:
    """A worker process: claim until the queue is empty; the ids it got."""
    engine = db.get_engine(url)
    got = []
    while (job := db.claim_job(engine, name)) is not None:
        got.append(job["id"])
    return got


def test_racing_workers_never_take_one_job_twice(engine, db_url):
    ids = queue(engine, 60)
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        got = [f.result() for f in [pool.submit(claim_all, db_url, f"w{k}") for k in range(4)]]
    taken = [i for ids_ in got for i in ids_]
    assert sorted(taken) == ids  # every job once, none twice
    jobs = db.list_jobs(engine, limit=100)
    assert {j["attempts"] for j in jobs} == {1}
    owner = {i: f"w{k}" for k, ids_ in enumerate(got) for i in ids_}
    assert all(j["worker"] == owner[j["id"]] for j in jobs)


def test_reports_carry_progress_curves_and_logs_and_hear_cancel_and_loss(engine):
    job_id = queue(engine, 1)[0]
    db.claim_job(engine, "w1")
    assert db.report(engine, job_id, "w1", progress=0.25, metrics={"kl/per_step": 0.1},
                     point=(64, {"kl/per_step": 0.1, "reward/total": 1.5}), log=["rollout 1"]) == OK
    db.report(engine, job_id, "w1", progress=0.5, point=(128, {"kl/per_step": 0.2}))
    job = db.get_job(engine, job_id)
    assert job["progress"] == 0.5 and job["metrics"] == {"kl/per_step": 0.1}
    assert job["log_tail"].splitlines()[-1] == "rollout 1"
    assert db.job_points(engine, job_id) == [{"step": 64, "kl/per_step": 0.1, "reward/total": 1.5},
                                             {"step": 128, "kl/per_step": 0.2}]
    assert db.report(engine, job_id, "w2") == LOST  # not w2's job
    assert db.request_cancel(engine, job_id) == "running"
    assert db.report(engine, job_id, "w1") == CANCEL
    assert db.finish_job(engine, job_id, "w2", "cancelled") is False  # only the holder ends it
    assert db.finish_job(engine, job_id, "w1", "cancelled", log=["stopped"]) is True
    job = db.get_job(engine, job_id)
    assert job["status"] == "cancelled" and job["finished_at"] is not None
    assert db.report(engine, job_id, "w1") == LOST
    with pytest.raises(ValueError, match="progress must be in"):
        db.report(engine, job_id, "w1", progress=1.5)


def test_the_log_tail_keeps_the_last_lines(engine):
    job_id = queue(engine, 1)[0]
    db.claim_job(engine, "w1")
    db.report(engine, job_id, "w1", log=[f"line {i}" for i in range(LOG_TAIL_LINES + 50)])
    tail = db.get_job(engine, job_id)["log_tail"].splitlines()
    assert len(tail) == LOG_TAIL_LINES and tail[-1] == f"line {LOG_TAIL_LINES + 49}"


def test_lost_jobs_go_back_to_the_queue_or_fail(engine):
    requeued, exhausted, cancelled, fresh = queue(engine, 4)
    by_hand = db.create_job(engine, "tune", {}, worker="cli-run")
    for _ in range(4):
        db.claim_job(engine, "dead")
    for _ in range(2):  # `exhausted` was claimed and lost twice before
        db.finish_job(engine, exhausted, "dead", "queued")
        db.claim_job(engine, "dead", job_id=exhausted)
    db.request_cancel(engine, cancelled)
    time.sleep(0.3)
    db.report(engine, fresh, "dead")  # this one is alive
    changed = {c["id"]: c for c in db.requeue_lost(engine, lost_after_s=0.2, max_attempts=3)}
    assert set(changed) == {requeued, exhausted, cancelled, by_hand}
    assert "back in the queue" in changed[requeued]["message"]
    status = {i: db.get_job(engine, i) for i in (requeued, exhausted, cancelled, fresh, by_hand)}
    assert status[requeued]["status"] == "queued" and status[requeued]["worker"] is None
    assert status[exhausted]["status"] == "failed" and "failed after 3 attempts" in status[exhausted]["error"]
    assert status[cancelled]["status"] == "cancelled"
    assert status[by_hand]["status"] == "failed" and "sent no heartbeat" in status[by_hand]["error"]
    assert status[fresh]["status"] == "running"
    again = db.claim_job(engine, "next")
    assert again["id"] == requeued and again["attempts"] == 2
    assert "lost: worker dead" in again["log_tail"]
    with pytest.raises(ValueError, match="lost_after_s"):
        db.requeue_lost(engine, 0)


def test_cancel_a_queued_job_at_once_and_refuse_finished_ones(engine):
    job_id = queue(engine, 1)[0]
    assert db.request_cancel(engine, job_id) == "cancelled"
    assert db.claim_job(engine, "w1") is None
    with pytest.raises(ValueError, match=f"job {job_id} is already cancelled"):
        db.request_cancel(engine, job_id)
    with pytest.raises(ValueError, match="job id 999"):
        db.request_cancel(engine, 999)
    with pytest.raises(ValueError, match="origin 'nowhere'"):
        db.create_job(engine, "tune", {}, origin="nowhere")
    with pytest.raises(ValueError, match="parent job id 999"):
        db.create_job(engine, "tune", {}, parent_id=999)
