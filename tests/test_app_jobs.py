"""The Jobs page (researchers): queue a tuning job from a preset, follow it through a real
worker to its curves, evaluation and rated samples; cancel; refuse missing files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import ROOT, TIMEOUT, app_database, page, texts

import db


@pytest.fixture
def engine(tmp_path, monkeypatch):
    url = app_database(tmp_path, monkeypatch, open_mode=True)  # the open demo: every session a researcher
    yield db.get_engine(url)
    db.dispose_engine(url)


FAST_WORKER = ["worker", "--until-empty", "--threads", "1", "--heartbeat", "0.2", "--report-every", "0",
               "--lost-after", "2"]


@pytest.fixture
def tiny_tuning(tiny_prior, tiny_tune_config) -> tuple[Path, Path]:
    return tiny_prior, tiny_tune_config


def fill_tune_form(at: AppTest, prior: Path, config: Path) -> AppTest:
    at.number_input(key="job_timesteps").set_value(256)
    at.number_input(key="job_steps").set_value(16)
    at.number_input(key="job_n_envs").set_value(4)
    at.text_input(key="job_prior").input(str(prior))
    at.text_input(key="job_config").input(str(config))
    return at


def test_jobs_page_queues_a_tuning_job_and_follows_it_to_rated_samples(engine, tiny_tuning, tmp_path):
    from rlmusic.cli.main import main as cli

    prior, config = tiny_tuning
    at = page("jobs").run()
    assert not at.exception and "No jobs yet" in texts(at.info)
    fill_tune_form(at, prior, config).button[0].click().run()  # the form's submit button
    assert not at.exception and "Queued tuning job 1" in texts(at.success)
    job = db.get_job(engine, 1)
    assert job["status"] == "queued" and job["origin"] == "queue"
    assert job["config"]["argv"][:2] == ["--preset", at.selectbox(key="job_preset").value]
    assert "Job 1: tune, queued" in texts(at.subheader)

    assert cli(FAST_WORKER) == 0  # a real worker runs the real tuning job
    at.run()
    assert not at.exception
    assert "Job 1: tune, succeeded" in texts(at.subheader)
    assert len(at.get("vega_lite_chart")) >= 2  # return and KL curves, drawn from the job's points
    evaluation = at.dataframe[-1].value.set_index("metric")["value"]
    assert evaluation["kl_per_step"] == pytest.approx(db.get_job(engine, 1)["metrics"]["kl_per_step"])
    at.number_input(key="samples_n").set_value(4)
    at.button(key="queue_samples").click().run()
    assert "Queued generation job 2" in texts(at.success)
    assert db.get_job(engine, 2)["config"]["argv"][:2] == ["--model", job["output_dir"]]
    assert cli(FAST_WORKER) == 0
    assert db.get_job(engine, 2)["status"] == "succeeded"
    assert db.stats(engine)["clips_unrated"] == 4  # the tuned model's clips wait for raters
    (model,) = [m for m in db.list_models(engine) if m["directory"] == job["output_dir"]]
    assert model["kind"] == "tuned"


def test_jobs_page_cancels_and_refuses_missing_files(engine, tiny_tuning):
    prior, config = tiny_tuning
    at = page("jobs").run()
    fill_tune_form(at, prior, config)
    at.text_input(key="job_reward_model").input("/no/such/reward_model")
    at.button[0].click().run()
    assert "reward model '/no/such/reward_model' does not exist" in texts(at.error)
    assert db.list_jobs(engine) == []
    at.text_input(key="job_reward_model").input("")
    at.button[0].click().run()
    at.button(key="cancel_job").click().run()
    assert not at.exception and "Job 1 cancelled." in texts(at.success)
    assert db.get_job(engine, 1)["status"] == "cancelled"
    assert "Job 1: tune, cancelled" in texts(at.subheader) and not [b for b in at.button if b.key == "cancel_job"]


def test_navigation_reaches_the_jobs_page(engine):
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=TIMEOUT).run()
    at.switch_page("views/jobs.py").run()
    assert not at.exception and at.title[0].value == "Jobs"


def test_jobs_page_says_whether_a_worker_runs_what_it_queues(engine, tiny_tuning):
    prior, config = tiny_tuning
    at = page("jobs").run()
    assert not at.exception
    warning = texts(at.warning)
    assert "No worker is running: queued jobs wait" in warning and "`rlmusic worker`" in warning
    assert "`make run` starts one beside the app" in warning
    fill_tune_form(at, prior, config).button[0].click().run()
    assert "Queued tuning job 1; no worker is running, so it waits in the queue" in texts(at.success)

    name = "lab:4242:worker-abc123"  # a worker announces itself as `rlmusic worker` does
    db.register_worker(engine, name, host="lab", pid=4242, kinds=["tune", "round", "generate"])
    db.worker_heartbeat(engine, name, 1)
    at.run()
    assert not at.exception and "No worker" not in texts(at.warning)
    assert re.search(rf"Worker `{name}` alive, last seen \d+ s ago, running job 1\.", texts(at.caption))
    at.button[0].click().run()  # queue a second job while the worker runs the first
    assert f"Queued tuning job 2; worker `{name}` will pick it up once its current job (1) ends" in texts(at.success)

    db.worker_heartbeat(engine, name, None)
    at.run()
    assert re.search(rf"Worker `{name}` alive, last seen \d+ s ago, idle\.", texts(at.caption))
    db.worker_stopped(engine, name)
    at.run()
    assert "No worker is running: queued jobs wait" in texts(at.warning)
