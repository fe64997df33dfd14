"""Fine-tuning jobs, rounds of the loop, and the dashboard figures, on both backends."""

from __future__ import annotations

import math

import pytest

import db
from db.dashboard import spearman
from db.jobs import from_ranges, to_ranges

pytest_plugins = ["db_fixtures"]


# ----------------------------------------------------------------------------- jobs


def test_job_lifecycle_stamps_times_and_keeps_metrics(engine):
    job = db.create_job(engine, "tune", {"beta": 0.1, "timesteps": 1000})
    fresh = db.get_job(engine, job)
    assert fresh["status"] == "queued"
    assert fresh["started_at"] is None and fresh["finished_at"] is None
    assert fresh["config"] == {"beta": 0.1, "timesteps": 1000}

    db.update_job(engine, job, status="running")
    running = db.get_job(engine, job)
    assert running["started_at"] >= fresh["created_at"]
    db.update_job(engine, job, metrics={"reward/theory": 0.5})
    db.update_job(engine, job, status="running")  # a second "running" keeps the start
    assert db.get_job(engine, job)["started_at"] == running["started_at"]

    db.update_job(engine, job, status="failed", error="Traceback: boom")
    done = db.get_job(engine, job)
    assert done["status"] == "failed"
    assert done["metrics"] == {"reward/theory": 0.5}
    assert done["error"] == "Traceback: boom"
    assert done["finished_at"] >= done["started_at"]


def test_list_jobs_newest_first_with_limit(engine):
    ids = [db.create_job(engine, kind, {}) for kind in ("reward", "tune", "generate")]
    assert [j["id"] for j in db.list_jobs(engine)] == ids[::-1]
    assert [j["kind"] for j in db.list_jobs(engine, limit=2)] == ["generate", "tune"]
    assert db.recent_jobs(engine, limit=1)[0]["id"] == ids[-1]


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda e: db.create_job(e, "", {}), "job kind ''"),
        (lambda e: db.create_job(e, "tune", [1]), "config must be a dict"),
        (lambda e: db.update_job(e, 99, status="running"), "job id 99"),
        (lambda e: db.update_job(e, 1, status="done"), "status 'done'"),
    ],
)
def test_job_functions_reject_bad_values(engine, call, match):
    with pytest.raises(ValueError, match=match):
        call(engine)


# ----------------------------------------------------------------------------- rounds


@pytest.mark.parametrize(
    "ids, ranges",
    [([], []), ([5], [[5, 5]]), ([3, 1, 2, 2, 7, 9, 8], [[1, 3], [7, 9]])],
)
def test_id_ranges_round_trip(ids, ranges):
    assert to_ranges(ids) == ranges
    assert from_ranges(ranges) == sorted(set(ids))


def test_record_round_links_ratings_reward_model_and_models(engine, two_models, make_clips):
    prior, tuned = two_models
    clips = db.enqueue_clips(engine, prior, make_clips(4))
    ratings = [db.add_rating(engine, "ann", c, 3) for c in clips]
    pair = db.add_comparison(engine, "ann", clips[0], clips[1], "a")
    first = db.record_round(
        engine,
        reward_model_dir="/rm/1",
        rating_ids=ratings[:3],
        comparison_ids=[pair],
        parent_model_id=prior,
        notes="first round",
    )
    (round_,) = db.list_rounds(engine)
    assert round_["id"] == first
    assert round_["rating_ids"] == ratings[:3]
    assert round_["comparison_ids"] == [pair]
    assert (round_["n_ratings"], round_["n_comparisons"]) == (3, 1)
    assert round_["tuned_model_id"] is None and round_["parent_model_id"] == prior
    db.set_round_tuned_model(engine, first, tuned)
    assert db.list_rounds(engine)[0]["tuned_model_id"] == tuned
    # The round's ids select exactly its rows for refitting.
    assert [r["rating_id"] for r in db.star_rows(engine, rating_ids=round_["rating_ids"])] == (
        ratings[:3]
    )
    with pytest.raises(ValueError, match=r"rating ids \[999\]"):
        db.record_round(engine, reward_model_dir="x", rating_ids=[999], comparison_ids=[])
    with pytest.raises(ValueError, match="tuned model id 42"):
        db.record_round(
            engine, reward_model_dir="x", rating_ids=[], comparison_ids=[], tuned_model_id=42
        )
    assert len(db.list_rounds(engine)) == 1


# ----------------------------------------------------------------------------- dashboard


def test_stats_counts(engine, two_models, make_clips):
    prior, _ = two_models
    clips = db.enqueue_clips(engine, prior, make_clips(3))
    db.set_clip_audio(engine, clips[0], "0.wav")
    db.add_rating(engine, "ann", clips[0], 4)
    db.add_comparison(engine, "bob", clips[1], clips[2], "tie")
    db.update_job(engine, db.create_job(engine, "tune", {}), status="running")
    assert db.stats(engine) == {
        "raters": 2,
        "models": 2,
        "clips": 3,
        "clips_unrated": 2,
        "clips_without_audio": 2,
        "ratings": 1,
        "comparisons": 1,
        "jobs": 1,
        "jobs_running": 1,
        "rounds": 0,
    }


def test_ratings_per_model_mean_and_confidence_interval(engine, two_models, make_clips):
    prior, tuned = two_models
    clips = db.enqueue_clips(engine, prior, make_clips(4))
    other = db.enqueue_clips(engine, tuned, make_clips(1))
    for clip, stars in zip(clips, [1, 2, 4, 5], strict=True):
        db.add_rating(engine, "ann", clip, stars)
    db.add_rating(engine, "ann", other[0], 3)
    rows = {r["model_id"]: r for r in db.ratings_per_model(engine)}
    p = rows[prior]
    assert p["n"] == 4 and p["mean"] == pytest.approx(3.0)
    std = math.sqrt(10 / 3)  # sample std of 1, 2, 4, 5
    assert p["std"] == pytest.approx(std)
    half = 1.959963984540054 * std / 2
    assert (p["ci_low"], p["ci_high"]) == (pytest.approx(3 - half), pytest.approx(3 + half))
    t = rows[tuned]
    assert t["n"] == 1 and t["mean"] == 3.0 and t["ci_low"] is None


def test_ratings_by_day_counts_each_kind(engine, two_models, make_clips):
    prior, _ = two_models
    clips = db.enqueue_clips(engine, prior, make_clips(3))
    db.add_rating(engine, "ann", clips[0], 4)
    db.add_rating(engine, "bob", clips[0], 2)
    db.add_comparison(engine, "ann", clips[1], clips[2], "a")
    (day,) = db.ratings_by_day(engine)
    assert (day["ratings"], day["comparisons"]) == (2, 1)
    assert day["day"] == db.star_rows(engine)[0]["updated_at"].date().isoformat()


def test_rater_agreement_on_shared_clips(engine, two_models, make_clips):
    prior, _ = two_models
    clips = db.enqueue_clips(engine, prior, make_clips(4))
    for clip, a, b in zip(clips, [1, 2, 3, 5], [2, 2, 5, 4], strict=True):
        db.add_rating(engine, "ann", clip, a)
        db.add_rating(engine, "bob", clip, b)
    db.add_rating(engine, "cid", clips[0], 3)
    rows = {(r["rater_a"], r["rater_b"]): r for r in db.rater_agreement(engine)}
    ab = rows[("ann", "bob")]
    assert ab["shared"] == 4
    assert ab["exact"] == pytest.approx(1 / 4)
    assert ab["within_one"] == pytest.approx(3 / 4)
    assert ab["spearman"] == pytest.approx(spearman([1, 2, 3, 5], [2, 2, 5, 4]))
    assert rows[("ann", "cid")]["shared"] == 1 and rows[("ann", "cid")]["spearman"] is None
    assert db.rater_agreement(engine, min_shared=2) == [ab]


@pytest.mark.parametrize(
    "x, y, expected",
    [
        ([1, 2, 3], [1, 2, 3], 1.0),
        ([1, 2, 3], [3, 2, 1], -1.0),
        ([1, 2, 3, 4], [1, 3, 2, 4], 0.8),
        ([1, 1, 2], [3, 3, 3], None),  # constant side
        ([1, 2], [1, 2], None),  # too few
    ],
)
def test_spearman(x, y, expected):
    result = spearman(x, y)
    assert result == (None if expected is None else pytest.approx(expected))
