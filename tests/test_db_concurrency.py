"""Many writers at once: 8 writers x 500 ratings, as threads and as processes, on both
backends. Every rating lands exactly once, the per-clip counters stay exact, and no
"database is locked" (or unique-key race) reaches the caller."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import pytest

import db

pytest_plugins = ["db_fixtures"]

WRITERS = 8
RATINGS_PER_WRITER = 500


def _run_writers(rate_many, db_url, clip_ids, pool_kind):
    raters = [f"writer{k}" for k in range(WRITERS)]
    if pool_kind == "threads":
        pool = ThreadPoolExecutor(WRITERS)
    else:
        pool = ProcessPoolExecutor(WRITERS, mp_context=multiprocessing.get_context("fork"))
    with pool:
        futures = [
            pool.submit(rate_many, db_url, rater, clip_ids, seed)
            for seed, rater in enumerate(raters)
        ]
        return {rater: f.result() for rater, f in zip(raters, futures, strict=True)}


@pytest.mark.slow
@pytest.mark.parametrize("pool_kind", ["threads", "processes"])
def test_eight_writers_lose_and_duplicate_nothing(
    engine, db_url, two_models, make_clips, rate_many, pool_kind
):
    prior, tuned = two_models
    half = RATINGS_PER_WRITER // 2
    clip_ids = db.enqueue_clips(engine, prior, make_clips(half, seed=1)) + db.enqueue_clips(
        engine, tuned, make_clips(RATINGS_PER_WRITER - half, seed=2)
    )

    given = _run_writers(rate_many, db_url, clip_ids, pool_kind)  # re-raises any worker error

    rows = db.star_rows(engine)
    assert len(rows) == WRITERS * RATINGS_PER_WRITER
    keys = Counter((r["rater"], r["clip_id"]) for r in rows)
    assert max(keys.values()) == 1
    assert len({r["rating_id"] for r in rows}) == len(rows)
    stored = {(r["rater"], r["clip_id"]): r["stars"] for r in rows}
    expected = {(rater, c): s for rater, pairs in given.items() for c, s in pairs}
    assert stored == expected
    # Counters: every clip was rated once by each writer.
    assert db.stats(engine)["clips_unrated"] == 0
    assert db.queue_size(engine, "writer0") == 0
    assert db.next_clip(engine, "someone new").id == clip_ids[0]  # all tied at 8 -> oldest
    with db.session_scope(engine) as session:
        from sqlalchemy import select

        from db.models import Clip

        counts = set(session.scalars(select(Clip.n_ratings)))
    assert counts == {WRITERS}


def test_writers_racing_on_the_same_rater_and_clips(
    engine, db_url, two_models, make_clips, rate_many
):
    """8 threads rate the same 40 clips as the same (new) rater: the rater is created
    once, each clip gets one rating, and no unique-key race surfaces."""
    prior, _ = two_models
    clip_ids = db.enqueue_clips(engine, prior, make_clips(40))
    with ThreadPoolExecutor(WRITERS) as pool:
        futures = [
            pool.submit(rate_many, db_url, "same", clip_ids, seed) for seed in range(WRITERS)
        ]
        for f in futures:
            f.result()
    rows = db.star_rows(engine)
    assert sorted(r["clip_id"] for r in rows) == clip_ids
    assert {r["rater"] for r in rows} == {"same"}
    assert db.stats(engine)["raters"] == 1
    for row in rows:
        # every later write with another value was logged, so history + current value
        # account for at most 8 writes of this clip
        assert len(db.rating_history(engine, row["rating_id"])) < WRITERS
