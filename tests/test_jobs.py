"""Jobs end to end: `rlmusic jobs submit` + `rlmusic worker` run real tiny tuning and
generation jobs; two workers never run one job twice (SQLite and PostgreSQL); a worker
killed mid-job leaves the job to the next worker, which resumes it from its checkpoint;
cancel; `rlmusic tune` recording itself, or saying in one line that it is not recorded."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import db
from rlmusic.cli.main import main as cli
from rlmusic.models.checkpoint import load_model

pytest_plugins = ["db_fixtures"]

FAST = ["--heartbeat", "0.2", "--report-every", "0", "--lost-after", "2", "--poll", "0.2"]


@pytest.fixture
def tiny(tiny_prior, tiny_tune_config) -> tuple[Path, Path]:
    """A tiny prior and a tiny tuning config (conftest)."""
    return tiny_prior, tiny_tune_config


@pytest.fixture
def sqlite_db(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    db.upgrade(url)
    yield url
    db.dispose_engine(url)


def submit(capsys, *argv) -> int:
    assert cli(["jobs", "submit", *map(str, argv)]) == 0
    return int(capsys.readouterr().out.strip().splitlines()[-1])  # the last line is the id


def test_two_tiny_tune_jobs_run_by_one_worker(sqlite_db, tiny, tmp_path, capsys):
    prior, config = tiny
    first = submit(capsys, "tune", "--prior", prior, "--config", config, "--out", tmp_path / "a")
    second = submit(capsys, "tune", "--prior", prior, "--config", config, "--seed", 5)
    assert cli(["worker", "--until-empty", "--threads", "1", *FAST]) == 0
    out = capsys.readouterr().out
    assert f"job {first} (tune) succeeded" in out and f"job {second} (tune) succeeded" in out
    engine = db.get_engine(sqlite_db)
    for job_id, folder in ((first, tmp_path / "a"), (second, tmp_path / "home" / "jobs" / f"job-{second:06d}")):
        job = db.get_job(engine, job_id)
        assert job["status"] == "succeeded" and job["progress"] == 1.0 and job["attempts"] == 1
        assert job["output_dir"] == str(folder) and job["metrics"]["model"] == str(folder)
        assert job["metrics"]["timesteps"] == 256 and job["metrics"]["kl_per_step"] >= 0
        assert load_model(folder).vocab.size == load_model(prior).vocab.size  # a loadable tuned model
        assert len(db.job_points(engine, job_id)) >= 3  # a curve point after every update
    assert cli(["jobs", "show", str(first)]) == 0
    shown = capsys.readouterr().out
    for part in (f"job {first}: tune succeeded", "progress      100%", f"output        {tmp_path / 'a'}",
                 "kl_per_step", "claimed by", "tune: wrote the tuned model"):
        assert part in shown
    assert cli(["jobs", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in listed[1:3]] == [[str(second), "tune", "succeeded"],
                                                          [str(first), "tune", "succeeded"]]


def run_worker(url: str, home: str) -> None:
    """A worker process (forked): the real `rlmusic worker` until the queue is empty."""
    os.environ["RLMUSIC_DATABASE_URL"], os.environ["RLMUSIC_HOME"] = url, home
    code = cli(["worker", "--until-empty", "--threads", "1", *FAST])
    os._exit(code)


def test_two_workers_at_once_never_run_one_job_twice(db_url, tiny, tmp_path, monkeypatch, capsys):
    prior, _ = tiny
    db.upgrade(db_url)
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", db_url)
    ids = [submit(capsys, "generate", "--model", prior, "-n", 3, "--steps", 16, "--seed", k,
                  "--out", tmp_path / f"g{k}") for k in range(8)]
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=run_worker, args=(db_url, str(tmp_path / "home"))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    engine = db.get_engine(db_url)
    for job_id in ids:
        job = db.get_job(engine, job_id)
        assert job["status"] == "succeeded" and job["attempts"] == 1
        assert job["log_tail"].count("claimed by") == 1  # run once, by one worker
        assert job["metrics"]["clips"] == 3


def wait_for(predicate, timeout: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_a_killed_workers_job_is_resumed_by_the_next_worker(sqlite_db, tiny, tmp_path, capsys):
    prior, config = tiny
    out = tmp_path / "long"
    job_id = submit(capsys, "tune", "--prior", prior, "--config", config, "--timesteps", 2048, "--out", out)
    log = open(tmp_path / "worker1.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "rlmusic", "worker", "--until-empty", "--threads", "1", *FAST],
                            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        wait_for(lambda: any((out / "checkpoints").glob("step_*.json")) or proc.poll() is not None,
                 what="the first checkpoint")
        proc.send_signal(signal.SIGKILL)  # no goodbye: its heartbeat just stops
        proc.wait(30)
    finally:
        log.close()
        if proc.poll() is None:
            proc.kill()
    engine = db.get_engine(sqlite_db)
    killed = db.get_job(engine, job_id)
    assert killed["status"] == "running" and not (out / "model.safetensors").exists(), \
        (tmp_path / "worker1.log").read_text()
    checkpoint = json.loads(sorted((out / "checkpoints").glob("step_*.json"))[-1].read_text())
    wait_for(lambda: (time.time() - db.get_job(engine, job_id)["heartbeat_at"].timestamp()) > 2.2, 30,
             "the heartbeat to go stale")
    assert cli(["worker", "--until-empty", "--threads", "1", *FAST]) == 0
    said = capsys.readouterr().out
    assert f"job {job_id} lost: worker" in said and f"job {job_id} (tune, attempt 2) started" in said
    job = db.get_job(engine, job_id)
    assert job["status"] == "succeeded" and job["attempts"] == 2
    assert "resuming the run" in job["log_tail"] and job["metrics"]["timesteps"] == 2048
    assert load_model(out).config.hidden_size == load_model(prior).config.hidden_size
    rows = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [r["timesteps"] for r in rows] == sorted({r["timesteps"] for r in rows})  # no repeats
    assert checkpoint["num_timesteps"] < 2048


def test_cancel_stops_a_running_job_at_its_next_rollout_and_keeps_its_checkpoint(sqlite_db, tiny, tmp_path,
                                                                                  capsys):
    prior, config = tiny
    out = tmp_path / "cancelled"
    job_id = submit(capsys, "tune", "--prior", prior, "--config", config, "--timesteps", 100_000, "--out", out)
    waiting = submit(capsys, "tune", "--prior", prior, "--config", config)
    assert cli(["jobs", "cancel", str(waiting)]) == 0
    assert "cancelled (it had not started)" in capsys.readouterr().out
    engine = db.get_engine(sqlite_db)
    worker = threading.Thread(target=cli, args=(["worker", "--until-empty", "--threads", "1", *FAST],))
    worker.start()
    wait_for(lambda: (db.get_job(engine, job_id)["progress"] or 0) > 0, what="the first update")
    assert cli(["jobs", "cancel", str(job_id)]) == 0
    assert "stops at its next rollout" in capsys.readouterr().out
    worker.join(120)
    assert not worker.is_alive()
    job = db.get_job(engine, job_id)
    assert job["status"] == "cancelled" and job["progress"] < 1
    assert "cancel requested" in job["log_tail"]
    steps = json.loads(sorted((out / "checkpoints").glob("step_*.json"))[-1].read_text())["num_timesteps"]
    assert 0 < steps < 100_000 and not (out / "model.safetensors").exists()
    assert db.get_job(engine, waiting)["status"] == "cancelled" and db.get_job(engine, waiting)["attempts"] == 0
    assert cli(["jobs", "cancel", str(job_id)]) == 1
    assert f"job {job_id} is already cancelled" in capsys.readouterr().err


def test_tune_records_itself_as_a_job(sqlite_db, tiny, tmp_path, capsys):
    prior, config = tiny
    out = tmp_path / "by-hand"
    assert cli(["tune", "--prior", str(prior), "--config", str(config), "--out", str(out), "--no-progress",
                "--device", "cpu"]) == 0
    assert "tune: recorded as job 1" in capsys.readouterr().err
    job = db.get_job(db.get_engine(sqlite_db), 1)
    assert job["kind"] == "tune" and job["origin"] == "cli" and job["status"] == "succeeded"
    assert job["output_dir"] == str(out) and job["progress"] == 1.0 and job["metrics"]["model"] == str(out)
    assert job["config"]["tune"]["timesteps"] == 256 and job["config"]["options"]["config"] == str(config)


@pytest.mark.parametrize("setup", ["behind", "unreachable"])
def test_tune_without_a_database_runs_and_says_so_in_one_line(tiny, tmp_path, monkeypatch, capsys, setup):
    prior, config = tiny
    url = f"sqlite:///{tmp_path / 'old.db'}"
    if setup == "behind":
        db.upgrade(url, "0002")
    else:
        url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    try:
        assert cli(["tune", "--prior", str(prior), "--config", str(config), "--out", str(tmp_path / "t"),
                    "--no-progress", "--device", "cpu"]) == 0
    finally:
        db.dispose_engine(url)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "not recorded" in line]
    assert len(lines) == 1 and lines[0].startswith("tune: not recorded in the jobs table: ")
    assert ("rlmusic db upgrade" in lines[0]) if setup == "behind" else ("cannot reach" in lines[0])
    assert (tmp_path / "t" / "model.safetensors").is_file()


def test_a_round_job_records_itself_in_its_own_row(sqlite_db, tmp_path, capsys):
    """A queued round runs through the worker and `rlmusic round`'s own code; with no
    ratings yet its reward model cannot be fitted: the job fails with that one line."""
    job_id = submit(capsys, "round", "--out", tmp_path / "round", "--no-audio")
    assert cli(["worker", "--until-empty", "--threads", "1", *FAST]) == 0
    jobs = db.list_jobs(db.get_engine(sqlite_db))
    assert [j["id"] for j in jobs] == [job_id]  # the round recorded into the worker's job, not a new one
    job = jobs[0]
    assert job["status"] == "failed" and job["attempts"] == 1 and job["output_dir"] == str(tmp_path / "round")
    assert "too few ratings to fit a reward model" in job["error"] and "\n" not in job["error"]
    assert f"job {job_id} (round) failed" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["tune", "--bogus"], "rlmusic jobs submit tune: unrecognized arguments: --bogus"),
    (["tune", "--print-config"], "--print-config prints a config and runs nothing"),
    (["tune", "--timesteps", "0"], "timesteps"),
    (["generate", "-n", "0"], "need n >= 1"),
    (["round", "--preset", "nope"], "unknown preset 'nope'"),
    (["generate", "--executor", "ray", "--address", "auto", "--ray-cpus", "2"], "--ray-cpus sizes a local Ray"),
])
def test_submit_checks_options_before_queueing(sqlite_db, capsys, argv, message):
    assert cli(["jobs", "submit", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlmusic jobs: error: ") and message in err and err.count("\n") == 1
    assert db.list_jobs(db.get_engine(sqlite_db)) == []
