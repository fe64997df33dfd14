"""Harmony clips (revision 0005): stored beside melodies, checked on the way in, kept out
of the melody queues and the melody reward model's rows; on both backends."""

from __future__ import annotations

import pytest

import db

pytest_plugins = ["db_fixtures"]


def harmony_clip(steps: int = 8, seed: int = 0) -> dict:
    voices = [[2 + (seed + v + t) % 40 for t in range(steps)] for v in range(4)]
    return {"kind": "harmony", "tokens": [2 + t for t in range(steps)], "voices": voices,
            "midi_path": f"studio/{seed}.mid", "seed": seed}


@pytest.fixture
def models(engine, tmp_path) -> tuple[int, int]:
    melody = db.register_model(engine, name="prior", directory=tmp_path / "prior", kind="prior")
    harmony = db.register_model(engine, name="shipped-harmony", directory=tmp_path / "harmony", kind="harmony")
    return melody, harmony


def test_harmony_clips_keep_their_voices(engine, models, make_clips):
    melody, harmony = models
    [m] = db.enqueue_clips(engine, melody, make_clips(1, steps=8))
    [h] = db.enqueue_clips(engine, harmony, [harmony_clip()])
    got = db.get_clip(engine, h)
    assert got.kind == "harmony" and got.voices == harmony_clip()["voices"] and got.steps == 8
    assert db.get_clip(engine, m).kind == "melody" and db.get_clip(engine, m).voices is None
    assert [c.id for c in db.list_clips(engine, "harmony")] == [h]
    assert [c.id for c in db.list_clips(engine, "melody")] == [m]
    assert [m["kind"] for m in db.list_models(engine)] == ["prior", "harmony"]


@pytest.mark.parametrize("change, message", [
    ({"voices": None}, "four token rows"),
    ({"voices": [[2] * 8] * 3}, "four token rows"),
    ({"voices": [[2] * 8, [2] * 8, [2] * 7, [2] * 8]}, "8 steps"),
    ({"kind": "chord"}, "kind 'chord'"),
    ({"kind": "melody"}, "a melody clip has no voices"),
])
def test_bad_harmony_clips_are_refused_whole(engine, models, change, message, state):
    _, harmony = models
    before = state()
    with pytest.raises(ValueError, match=message):
        db.enqueue_clips(engine, harmony, [harmony_clip(seed=1), harmony_clip() | change])
    assert state() == before
    assert db.list_clips(engine, "harmony") == []


def test_melody_queues_and_rows_keep_to_melodies(engine, models, make_clips):
    melody, harmony = models
    ms = db.enqueue_clips(engine, melody, make_clips(2, steps=8))
    hs = db.enqueue_clips(engine, harmony, [harmony_clip(seed=s) for s in range(2)])
    assert db.next_clip(engine, "ann").id == ms[0]
    assert db.next_clip(engine, "ann", kind="harmony").id == hs[0]
    assert db.queue_size(engine, "ann") == 2 and db.queue_size(engine, "ann", kind="harmony") == 2
    a, b = db.next_pair(engine, "ann")
    assert {a.id, b.id} == set(ms)
    a, b = db.next_pair(engine, "ann", kind="harmony")
    assert {a.id, b.id} == set(hs)
    db.add_rating(engine, "ann", ms[0], 4)
    db.add_rating(engine, "ann", hs[0], 5)
    db.add_comparison(engine, "ann", hs[0], hs[1], "a")
    assert [r["clip_id"] for r in db.star_rows(engine)] == [ms[0]]  # what the melody reward model sees
    assert [r["clip_id"] for r in db.star_rows(engine, kind="harmony")] == [hs[0]]
    assert len(db.star_rows(engine, kind=None)) == 2
    assert db.pair_rows(engine) == [] and len(db.pair_rows(engine, kind="harmony")) == 1
    assert db.queue_size(engine, "ann", kind="harmony") == 1
    with pytest.raises(ValueError, match="clip kind"):
        db.next_clip(engine, "ann", kind="chord")


def test_the_schema_refuses_an_unknown_kind(engine, models):
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    melody, _ = models
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text("INSERT INTO clips (model_id, tokens, steps, midi_path, kind, priority, n_ratings, "
                          "n_comparisons, created_at) VALUES (:m, '[2]', 1, 'x.mid', 'chord', 0, 0, 0, "
                          "CURRENT_TIMESTAMP)"), {"m": melody})
