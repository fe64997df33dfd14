"""Ray: a two-trial sweep on a local Ray (2 CPUs) finishes and records both trials;
`generate --executor ray` writes the same melodies, files and manifest as the local path;
the per-chunk seeding that makes that so; the sweep's grid parsing.

One local Ray (2 CPUs, no dashboard, no usage stats) serves the module and is shut down
after it; the commands find it initialised and reuse it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch

import db
from rlmusic.cli.main import main as cli
from rlmusic.jobs.cluster import ray_session
from rlmusic.jobs.distributed import deal
from rlmusic.jobs.sweep import parse_grid
from rlmusic.models.checkpoint import load_model
from rlmusic.models.generate import chunk_seed, read_manifest, sample_chunk, sample_tokens


@pytest.fixture
def prior(tiny_prior) -> Path:
    return tiny_prior


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for the module, shut down after it."""
    import ray

    assert not ray.is_initialized()
    with ray_session(num_cpus=2) as session:
        assert session.cluster_resources()["CPU"] == 2
        yield session
    assert not ray.is_initialized()


def test_chunks_are_seeded_on_their_own(prior):
    model = load_model(prior)
    tokens = sample_tokens(model, 10, 16, seed=3, batch_size=4)  # chunks of 4, 4, 2
    np.testing.assert_array_equal(tokens[4:8], sample_chunk(model, 1, 4, 16, seed=3))
    np.testing.assert_array_equal(tokens[8:], sample_chunk(model, 2, 2, 16, seed=3))
    first = model.sample(4, 16, generator=torch.Generator().manual_seed(3)).numpy()
    np.testing.assert_array_equal(tokens[:4], first)  # chunk 0 is seeded with the seed itself
    assert chunk_seed(3, 1) != chunk_seed(4, 0) and chunk_seed(3, 1) == chunk_seed(3, 1)
    assert len({chunk_seed(s, i) for s in range(5) for i in range(5)}) == 25
    with pytest.raises(ValueError, match="seed=-1"):
        chunk_seed(-1, 0)


def test_deal_cuts_the_plan_into_contiguous_runs():
    assert deal(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert deal([0, 1], 8) == [[0], [1]]


def test_generate_on_ray_equals_local(prior, tmp_path, local_ray):
    common = ["--model", str(prior), "-n", "11", "--steps", "24", "--seed", "9", "--batch-size", "3", "--threads", "1"]
    assert cli(["generate", *common, "--out", str(tmp_path / "local")]) == 0
    assert cli(["generate", *common, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    local, remote = read_manifest(tmp_path / "local"), read_manifest(tmp_path / "ray")
    assert len(local) == 11 and remote == local  # tokens, seeds, scores, file names: all of it
    for row in local:
        assert (tmp_path / "ray" / row["midi"]).read_bytes() == (tmp_path / "local" / row["midi"]).read_bytes()
    assert len({tuple(r["tokens"]) for r in local}) > 1


def test_a_two_trial_sweep_on_local_ray_records_both_trials(prior, tiny_tune_config, tmp_path, monkeypatch,
                                                            local_ray, capsys):
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    db.upgrade(url)
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    out = tmp_path / "sweep"
    try:
        assert cli(["sweep", "--config", str(tiny_tune_config), "--prior", str(prior), "--grid", "beta=0.05,0.5",
                    "--timesteps", "128", "--executor", "ray", "--out", str(out), "--device", "cpu"]) == 0
        engine = db.get_engine(url)
        [sweep] = [j for j in db.list_jobs(engine) if j["kind"] == "sweep"]
        assert sweep["kind"] == "sweep" and sweep["status"] == "succeeded"
        trials = db.list_jobs(engine, parent_id=sweep["id"])
        assert len(trials) == 2
        for trial in trials:
            assert trial["kind"] == "tune" and trial["origin"] == "sweep" and trial["status"] == "succeeded"
            assert trial["worker"].split(":")[1] != str(os.getpid())  # run in a Ray worker process
            assert load_model(trial["output_dir"]).config.hidden_size == load_model(prior).config.hidden_size
            assert db.job_points(engine, trial["id"])  # curves reported from the Ray worker
    finally:
        db.dispose_engine(url)
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["beta"], r["status"]) for r in rows] == [("0.05", "succeeded"), ("0.5", "succeeded")]
    assert {r["job_id"] for r in rows} == {str(t["id"]) for t in trials}
    assert all(float(r["kl_per_step"]) >= 0 and r["theory_reward_per_step"] for r in rows)
    assert (out / "summary.png").stat().st_size > 1000
    assert "2 of 2 trials succeeded" in capsys.readouterr().out


def test_grid_parsing():
    assert parse_grid(["beta=0.1,0.5", "n-envs=4", "eval_corpus=none,\"irish\""]) == {
        "beta": [0.1, 0.5], "n_envs": [4], "eval_corpus": ["none", "irish"]}
    with pytest.raises(ValueError, match="'bogus' is not a tuning config key"):
        parse_grid(["bogus=1"])
    with pytest.raises(ValueError, match="KEY=V1,V2"):
        parse_grid(["beta"])
