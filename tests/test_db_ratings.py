"""Raters, models, clips, star ratings, comparisons and the rating queue, on both backends."""

from __future__ import annotations

import pytest

import db

pytest_plugins = ["db_fixtures"]


# ----------------------------------------------------------------------------- models, clips


def test_register_model_is_idempotent_by_directory(engine, tmp_path):
    first = db.register_model(engine, name="p", directory=tmp_path / "m", kind="prior")
    again = db.register_model(engine, name="other", directory=str(tmp_path / "m"), kind="prior")
    assert again == first
    tuned = db.register_model(
        engine,
        name="t",
        directory=tmp_path / "t",
        kind="tuned",
        parent_id=first,
        provenance={"reward_model": "rm1", "beta": 0.1},
    )
    models = db.list_models(engine)
    assert [m["id"] for m in models] == [first, tuned]
    assert models[1]["parent_id"] == first
    assert models[1]["provenance"] == {"reward_model": "rm1", "beta": 0.1}
    assert models[0]["directory"] == str((tmp_path / "m").resolve())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "final"}, "'final'"),
        ({"name": "  "}, "model name"),
        ({"parent_id": 12345}, "12345"),
    ],
)
def test_register_model_rejects_bad_values(engine, tmp_path, kwargs, match):
    args = {"name": "m", "directory": tmp_path / "m", "kind": "prior", **kwargs}
    with pytest.raises(ValueError, match=match):
        db.register_model(engine, **args)
    assert db.list_models(engine) == []


def test_enqueue_clips_returns_ids_in_order_and_stores_everything(engine, two_models, make_clips):
    prior, _ = two_models
    clips = make_clips(3, steps=8)
    clips[1]["audio_path"] = "clips/1.wav"
    ids = db.enqueue_clips(engine, prior, clips)
    assert ids == sorted(ids) and len(set(ids)) == 3
    info = db.get_clip(engine, ids[1])
    assert info == db.ClipInfo(
        id=ids[1],
        model_id=prior,
        model_name="prior",
        tokens=clips[1]["tokens"],
        steps=8,
        midi_path=clips[1]["midi_path"],
        audio_path="clips/1.wav",
        seed=clips[1]["seed"],
    )
    db.set_clip_audio(engine, ids[0], "clips/0.wav")
    assert db.get_clip(engine, ids[0]).audio_path == "clips/0.wav"
    assert db.enqueue_clips(engine, prior, []) == []


@pytest.mark.parametrize(
    "clip, match",
    [
        ({"tokens": [], "midi_path": "a"}, "non-empty"),
        ({"tokens": [1, "x"], "midi_path": "a"}, "'x'"),
        ({"tokens": [1, 2], "midi_path": "a", "steps": 3}, "steps 3"),
        ({"tokens": [1, 2]}, "midi_path"),
    ],
)
def test_enqueue_clips_rejects_bad_clips_and_writes_none(
    engine, two_models, clip, match, make_clips
):
    prior, _ = two_models
    with pytest.raises(ValueError, match=match):
        db.enqueue_clips(engine, prior, [make_clips(1)[0], clip])
    assert db.stats(engine)["clips"] == 0


def test_numpy_integers_are_accepted(engine, two_models):
    import numpy as np
    prior, _ = two_models
    tokens = np.arange(8, dtype=np.int64)
    (clip,) = db.enqueue_clips(
        engine, prior, [{"tokens": list(tokens), "steps": np.int64(8), "midi_path": "a"}]
    )
    assert db.get_clip(engine, clip).tokens == list(range(8))
    db.add_rating(engine, "ann", np.int64(clip), np.int32(4))
    assert db.star_rows(engine)[0]["stars"] == 4


def test_enqueue_clips_unknown_model(engine, make_clips):
    with pytest.raises(ValueError, match="model id 77"):
        db.enqueue_clips(engine, 77, make_clips(1))


def test_set_clip_audio_unknown_clip(engine):
    with pytest.raises(ValueError, match="clip id 5"):
        db.set_clip_audio(engine, 5, "x.wav")


# ----------------------------------------------------------------------------- raters


def test_get_or_create_rater_strips_and_reuses(engine):
    first = db.get_or_create_rater(engine, "  Ann ")
    assert db.get_or_create_rater(engine, "Ann") == first
    assert db.get_or_create_rater(engine, "ann") != first  # names are case-sensitive
    assert db.get_or_create_rater(engine, "x" * 64) > 0


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, None, 7])
def test_get_or_create_rater_rejects_bad_names(engine, name):
    with pytest.raises(ValueError, match="rater name"):
        db.get_or_create_rater(engine, name)
    assert db.stats(engine)["raters"] == 0


# ----------------------------------------------------------------------------- star ratings


@pytest.fixture
def clips(engine, two_models, make_clips) -> list[int]:
    """Four 16-step clips of the prior then four of the tuned model."""
    prior, tuned = two_models
    return db.enqueue_clips(engine, prior, make_clips(4, seed=1)) + db.enqueue_clips(
        engine, tuned, make_clips(4, seed=2)
    )


def test_rating_again_updates_in_place_and_keeps_history(engine, clips):
    first = db.add_rating(engine, "ann", clips[0], 2, tags=["boring"])
    assert db.add_rating(engine, "ann", clips[0], 2, tags=["boring"]) == first  # no-op
    assert db.rating_history(engine, first) == []
    assert db.add_rating(engine, "ann", clips[0], 5, tags=["pleasant", "surprising"]) == first
    rows = db.star_rows(engine)
    assert len(rows) == 1
    assert rows[0]["stars"] == 5
    assert rows[0]["tags"] == ["surprising", "pleasant"]  # RATING_TAGS order
    history = db.rating_history(engine, first)
    assert [(h["stars"], h["tags"]) for h in history] == [(2, ["boring"])]
    assert history[0]["rated_at"] <= history[0]["replaced_at"] == rows[0]["updated_at"]
    assert db.stats(engine)["ratings"] == 1
    assert db.rater_count(engine, "ann") == 1


@pytest.mark.parametrize(
    "stars, tags, match",
    [
        (0, (), "stars 0"),
        (6, (), "stars 6"),
        (3.0, (), "stars 3.0"),
        ("4", (), "stars '4'"),
        (True, (), "stars True"),
        (3, ["catchy"], "tag 'catchy'"),
        (3, "boring", "one string"),
    ],
)
def test_add_rating_rejects_bad_values_and_writes_nothing(engine, clips, stars, tags, match, state):
    before = state()
    with pytest.raises(ValueError, match=match):
        db.add_rating(engine, "ann", clips[0], stars, tags=tags)
    assert state() == before


def test_add_rating_unknown_clip_and_bad_rater(engine, clips):
    with pytest.raises(ValueError, match="clip id 999"):
        db.add_rating(engine, "ann", 999, 3)
    with pytest.raises(ValueError, match="rater name ''"):
        db.add_rating(engine, "", clips[0], 3)
    assert db.stats(engine)["raters"] == 0  # the failed call created no rater


# ----------------------------------------------------------------------------- comparisons


def test_comparison_is_one_per_rater_and_unordered_pair(engine, clips):
    a, b = clips[0], clips[5]
    first = db.add_comparison(engine, "ann", a, b, "a")
    # The same verdict seen in the other order is the same judgement: nothing changes.
    assert db.add_comparison(engine, "ann", b, a, "b") == first
    assert db.pair_rows(engine)[0]["clip_a"] == a
    # A different verdict replaces it (with the new presentation order).
    assert db.add_comparison(engine, "ann", b, a, "tie") == first
    rows = db.pair_rows(engine)
    assert len(rows) == 1
    assert (rows[0]["clip_a"], rows[0]["clip_b"], rows[0]["winner"]) == (b, a, "tie")
    # Another rater has their own comparison of the pair.
    assert db.add_comparison(engine, "bob", a, b, "b") != first
    assert db.stats(engine)["comparisons"] == 2
    assert db.rater_count(engine, "ann") == 1


@pytest.mark.parametrize(
    "pick, winner, match",
    [
        ((0, 0), "a", "compared with itself"),
        ((0, 1), "c", "winner 'c'"),
        ((0, 1), "A", "winner 'A'"),
        ((0, None), "a", "clip id 999"),
    ],
)
def test_add_comparison_rejects_bad_values(engine, clips, pick, winner, match, state):
    clip_a = clips[pick[0]]
    clip_b = 999 if pick[1] is None else clips[pick[1]]
    before = state()
    with pytest.raises(ValueError, match=match):
        db.add_comparison(engine, "ann", clip_a, clip_b, winner)
    assert state() == before


# ----------------------------------------------------------------------------- next clip


def test_next_clip_fewest_ratings_first_then_oldest_never_rated(engine, clips):
    assert db.next_clip(engine, "ann").id == clips[0]
    db.add_rating(engine, "bob", clips[0], 3)
    db.add_rating(engine, "bob", clips[1], 3)
    db.add_rating(engine, "cid", clips[1], 3)
    # ann: clips[2] is the oldest with no rating.
    assert db.next_clip(engine, "ann").id == clips[2]
    # bob never gets what he rated.
    assert db.next_clip(engine, "bob").id == clips[2]
    for clip_id in clips[2:]:
        db.add_rating(engine, "ann", clip_id, 4)
    # ann has rated every 0-rating clip; clips[0] (1 rating) comes before clips[1] (2).
    assert db.next_clip(engine, "ann").id == clips[0]
    db.add_rating(engine, "ann", clips[0], 4)
    assert db.next_clip(engine, "ann").id == clips[1]
    db.add_rating(engine, "ann", clips[1], 4)
    assert db.next_clip(engine, "ann") is None
    assert db.queue_size(engine, "ann") == 0


def test_next_clip_walks_the_whole_queue_once(engine, clips):
    seen = []
    while (clip := db.next_clip(engine, "ann")) is not None:
        seen.append(clip.id)
        db.add_rating(engine, "ann", clip.id, 3)
    assert seen == clips


def test_next_clip_priority_order_exclude_and_audio(engine, clips):
    db.set_clip_priority(engine, {clips[6]: 0.9, clips[3]: 0.5})
    assert db.next_clip(engine, "ann", order="priority").id == clips[6]
    assert db.next_clip(engine, "ann").id == clips[0]  # "fewest" ignores priority
    db.add_rating(engine, "ann", clips[6], 4)
    assert db.next_clip(engine, "ann", order="priority").id == clips[3]
    assert db.next_clip(engine, "ann", exclude=[clips[0], clips[1]]).id == clips[2]
    assert db.next_clip(engine, "ann", require_audio=True) is None
    db.set_clip_audio(engine, clips[5], "5.wav")
    assert db.next_clip(engine, "ann", require_audio=True).id == clips[5]
    with pytest.raises(ValueError, match="order 'random'"):
        db.next_clip(engine, "ann", order="random")
    with pytest.raises(ValueError, match=r"unknown clip ids \[4242\]"):
        db.set_clip_priority(engine, {4242: 1.0})


def test_queue_size(engine, clips):
    assert db.queue_size(engine) == 8
    assert db.queue_size(engine, "ann") == 8
    db.add_rating(engine, "bob", clips[0], 3)
    assert db.queue_size(engine) == 7
    assert db.queue_size(engine, "ann") == 8
    assert db.queue_size(engine, "bob") == 7


# ----------------------------------------------------------------------------- next pair


def test_next_pair_same_length_other_model_never_repeated(engine, two_models, make_clips):
    prior, tuned = two_models
    p = db.enqueue_clips(engine, prior, make_clips(2, steps=16, seed=1))
    t = db.enqueue_clips(engine, tuned, make_clips(2, steps=16, seed=2))
    odd = db.enqueue_clips(engine, tuned, make_clips(1, steps=32, seed=3))
    seen = set()
    while (pair := db.next_pair(engine, "ann")) is not None:
        a, b = pair
        assert a.steps == b.steps == 16 and a.id != b.id
        key = frozenset((a.id, b.id))
        assert key not in seen
        seen.add(key)
        db.add_comparison(engine, "ann", a.id, b.id, "a")
    # Every pair of the four 16-step clips, and never the lone 32-step clip.
    assert len(seen) == 6
    assert all(odd[0] not in key for key in seen)
    # The first pairs crossed models (both A candidates had a partner of the other model).
    first = db.pair_rows(engine)[:2]
    assert all(row["model_a"] != row["model_b"] for row in first)
    assert {first[0]["clip_a"], first[0]["clip_b"]} == {p[0], t[0]}
    # Another rater starts again from clips with the fewest comparisons.
    assert db.next_pair(engine, "bob") is not None


def test_next_pair_none_without_two_clips_of_one_length(engine, two_models, make_clips):
    prior, _ = two_models
    assert db.next_pair(engine, "ann") is None
    db.enqueue_clips(engine, prior, make_clips(1, steps=8) + make_clips(1, steps=12))
    assert db.next_pair(engine, "ann") is None


# ----------------------------------------------------------------------------- rows for the reward model


def test_star_rows_and_pair_rows_carry_tokens_and_models(engine, clips, two_models):
    prior, tuned = two_models
    r1 = db.add_rating(engine, "ann", clips[0], 4)
    r2 = db.add_rating(engine, "bob", clips[5], 2, tags=["no structure"])
    c1 = db.add_comparison(engine, "ann", clips[1], clips[6], "b")
    stars = db.star_rows(engine)
    assert [r["rating_id"] for r in stars] == [r1, r2]
    assert stars[1]["clip_id"] == clips[5]
    assert stars[1]["rater"] == "bob"
    assert stars[1]["stars"] == 2 and stars[1]["tags"] == ["no structure"]
    assert stars[1]["model_id"] == tuned
    assert stars[1]["tokens"] == db.get_clip(engine, clips[5]).tokens
    assert db.star_rows(engine, rating_ids=[r2]) == [stars[1]]
    pairs = db.pair_rows(engine)
    assert len(pairs) == 1
    row = pairs[0]
    assert (row["comparison_id"], row["clip_a"], row["clip_b"]) == (c1, clips[1], clips[6])
    assert (row["winner"], row["rater"], row["model_a"], row["model_b"]) == (
        "b",
        "ann",
        prior,
        tuned,
    )
    assert row["tokens_a"] == db.get_clip(engine, clips[1]).tokens
    assert row["tokens_b"] == db.get_clip(engine, clips[6]).tokens
    assert db.pair_rows(engine, comparison_ids=[]) == []
