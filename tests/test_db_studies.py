"""Invites and blind A/B studies in the database, on SQLite and PostgreSQL: tokens never
stored in clear, revocation, the pairs a rater is served (study pairs first, on their
drawn side, broken clips never on their own), the report as a recount of comparisons, and
the full export."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import inspect, text

import db

pytest_plugins = ["db_fixtures"]


def database_text(engine) -> str:
    """Every value of every table, as text: what a dump of the database would hold."""
    out = []
    with engine.connect() as connection:
        for table in inspect(engine).get_table_names():
            for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                out.append(" ".join(map(str, row)))
    return "\n".join(out)


def test_an_invite_is_stored_only_as_a_hash(engine, db_url):
    token = db.invite_rater(engine, "ann", researcher=True)
    assert len(token) >= 32
    assert db.rater_by_invite(engine, token)["name"] == "ann"
    stored = database_text(engine)
    assert token not in stored and token[:16] not in stored
    assert db.invites.token_sha256(token) in stored  # what is kept instead
    path = db.sqlite_path(db_url)
    if path is not None:  # the file itself, and its write-ahead log, hold no token either
        for file in path.parent.glob(path.name + "*"):
            assert token.encode() not in file.read_bytes()


def test_invites_replace_revoke_and_roles(engine):
    old = db.invite_rater(engine, "bea")
    who = db.rater_by_invite(engine, old)
    assert (who["name"], who["researcher"]) == ("bea", False)
    new = db.invite_rater(engine, "bea", researcher=True)
    assert db.rater_by_invite(engine, old) is None  # the old link stops working
    assert db.rater_by_invite(engine, new)["researcher"] is True
    assert not db.invite_still_valid(engine, who["id"], who["invite_sha256"])  # sessions of the old link end
    current = db.rater_by_invite(engine, new)
    assert db.invite_still_valid(engine, current["id"], current["invite_sha256"])
    db.revoke_rater(engine, "bea")
    assert db.rater_by_invite(engine, new) is None
    assert not db.invite_still_valid(engine, current["id"], current["invite_sha256"])
    listed = {r["name"]: r for r in db.list_raters(engine)}
    assert listed["bea"]["revoked_at"] is not None and listed["bea"]["researcher"] is True
    again = db.invite_rater(engine, "bea")  # a new invite lets them in again, as a rater now
    assert db.rater_by_invite(engine, again)["researcher"] is False
    for bad in (None, "", "x", "wrong-token-" + "x" * 30, 12345):
        assert db.rater_by_invite(engine, bad) is None
    with pytest.raises(ValueError, match="no rater called 'nobody'"):
        db.revoke_rater(engine, "nobody")
    assert db.invited_names(engine) == {"bea"}


def make_study(engine, make_clips, name="s1", n=3, gold=1, steps=16):
    a = db.register_model(engine, name="model-a", directory=f"/m/{name}/a", kind="prior")
    b = db.register_model(engine, name="model-b", directory=f"/m/{name}/b", kind="tuned", parent_id=a)
    clips_a = db.enqueue_clips(engine, a, make_clips(n, steps, seed=1))
    clips_b = db.enqueue_clips(engine, b, make_clips(n, steps, seed=2))
    broken = db.enqueue_clips(engine, a, [{**c, "broken": True} for c in make_clips(gold, steps, seed=3)])
    pairs = [{"clip_a": x, "clip_b": y, "gold": False, "swap": i % 2 == 1, "position": i}
             for i, (x, y) in enumerate(zip(clips_a, clips_b))]
    pairs += [{"clip_a": clips_a[0], "clip_b": z, "gold": True, "swap": True, "position": n + i}
              for i, z in enumerate(broken)]
    study = db.create_study(engine, name, model_a_id=a, model_b_id=b, steps=steps, seed=0, pairs=pairs)
    return study, clips_a, clips_b, broken


def test_study_pairs_are_served_first_on_their_side_and_broken_clips_never_alone(engine, make_clips):
    _, clips_a, clips_b, [broken] = make_study(engine, make_clips)
    served = []
    while (pair := db.next_study_pair(engine, "ann")) is not None:
        served.append((pair.left.id, pair.right.id))
        db.add_comparison(engine, "ann", pair.left.id, pair.right.id, "a")
    # position order; pair 1 is swapped (B on the left), so is the gold check
    assert served == [(clips_a[0], clips_b[0]), (clips_b[1], clips_a[1]), (clips_a[2], clips_b[2]),
                      (broken, clips_a[0])]
    assert db.next_study_pair(engine, "bob").left.id == clips_a[0]  # another rater starts at the beginning
    seen = set()
    while (clip := db.next_clip(engine, "ann")) is not None:
        seen.add(clip.id)
        db.add_rating(engine, "ann", clip.id, 3)
    assert broken not in seen and seen == set(clips_a) | set(clips_b)
    assert db.queue_size(engine) == 0
    while (pair := db.next_pair(engine, "cy")) is not None:
        assert broken not in (pair[0].id, pair[1].id)
        db.add_comparison(engine, "cy", pair[0].id, pair[1].id, "tie")


def test_a_rater_who_judged_every_pair_gets_one_unique_completion_code(engine, make_clips):
    make_study(engine, make_clips, name="s1", n=2, gold=0)
    assert db.completions_of(engine, "ann") == [] and db.completions_of(engine, "nobody") == []
    first = db.next_study_pair(engine, "ann")
    db.add_comparison(engine, "ann", first.left.id, first.right.id, "a")
    assert db.completions_of(engine, "ann") == []  # one pair still open
    last = db.next_study_pair(engine, "ann")
    db.add_comparison(engine, "ann", last.left.id, last.right.id, "tie")
    [done] = db.completions_of(engine, "ann")
    assert done["study"] == "s1" and re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", done["code"])
    assert db.completions_of(engine, "ann") == [done]  # asked again: the same code, no second row
    for pair in (first, last):  # bob judges the same pairs: his own code
        db.add_comparison(engine, "bob", pair.left.id, pair.right.id, "b")
    [bobs] = db.completions_of(engine, "bob")
    assert bobs["code"] != done["code"]
    assert [(c["rater"], c["code"]) for c in db.study_completions(engine, "s1")] == [
        ("ann", done["code"]), ("bob", bobs["code"])]
    with pytest.raises(ValueError, match="no study"):
        db.study_completions(engine, "nope")


def test_create_study_refuses_what_is_not_a_blind_pair(engine, make_clips):
    study, clips_a, clips_b, [broken] = make_study(engine, make_clips)
    a_id = db.get_study(engine, "s1")["model_a_id"]
    b_id = db.get_study(engine, "s1")["model_b_id"]

    def create(pairs, name="s2", steps=16):
        return db.create_study(engine, name, model_a_id=a_id, model_b_id=b_id, steps=steps, seed=0, pairs=pairs)

    def pair(x, y, gold=False):
        return {"clip_a": x, "clip_b": y, "gold": gold, "swap": False, "position": 0}

    with pytest.raises(ValueError, match="exists already"):
        create([pair(clips_a[0], clips_b[0])], name="s1")
    with pytest.raises(ValueError, match="study name 'no spaces' must be"):
        create([pair(clips_a[0], clips_b[0])], name="no spaces")
    with pytest.raises(ValueError, match="clip_a must be an intact clip of model A"):
        create([pair(clips_b[0], clips_a[0])])  # sides the wrong way round
    with pytest.raises(ValueError, match="clip_b must be the broken clip"):
        create([pair(clips_a[0], clips_b[0], gold=True)])
    with pytest.raises(ValueError, match="has 16 steps, the study 32"):
        create([pair(clips_a[0], clips_b[0])], steps=32)
    with pytest.raises(ValueError, match="clip_b 999999 does not exist"):
        create([pair(clips_a[0], 999999)])
    with pytest.raises(ValueError, match="no study called 's2'; studies: s1"):
        db.get_study(engine, "s2")
    assert [s["name"] for s in db.list_studies(engine)] == ["s1"]  # nothing half-written


def test_report_is_a_recount_of_the_comparisons_and_export_carries_them(engine, make_clips, tmp_path):
    _, clips_a, clips_b, [broken] = make_study(engine, make_clips)
    # ann: A, A (given with B on the left), tie; passes the gold check. bob: B, then fails the check.
    db.add_comparison(engine, "ann", clips_a[0], clips_b[0], "a")
    db.add_comparison(engine, "ann", clips_b[1], clips_a[1], "b")  # shown B left, A right: A preferred
    db.add_comparison(engine, "ann", clips_a[2], clips_b[2], "tie")
    db.add_comparison(engine, "ann", broken, clips_a[0], "b")  # the intact clip: right
    db.add_comparison(engine, "bob", clips_a[0], clips_b[0], "b")
    db.add_comparison(engine, "bob", broken, clips_a[0], "a")  # the broken clip: a gold failure
    db.add_comparison(engine, "bob", clips_a[0], clips_b[1], "a")  # not a study pair: not counted
    report = db.study_report(engine, "s1", max_gold_fail=1.0)
    assert report["gold_failures"] == {"ann": 0, "bob": 1}
    assert (report["n_comparisons"], report["wins_a"], report["wins_b"], report["ties"]) == (4, 2, 1, 1)
    assert report["n_raters"] == 2 and report["shared_pairs"] == 1
    strict = db.study_report(engine, "s1")  # bob failed 1 of 1 > 25%: left out
    assert strict["excluded_raters"] == ["bob"] and (strict["wins_a"], strict["wins_b"]) == (2, 0)
    assert db.gold_record(engine) == {"ann": {"failed": 0, "checks": 1}, "bob": {"failed": 1, "checks": 1}}

    counts = db.export_full(engine, tmp_path / "full.jsonl")
    lines = [json.loads(line) for line in (tmp_path / "full.jsonl").read_text().splitlines()]
    assert counts == {"ratings": 0, "comparisons": 7} and len(lines) == 7
    first = lines[0]
    assert first["type"] == "comparison" and first["rater"] == "ann" and first["study"] == "s1"
    assert first["clip_a"]["model"] == "model-a" and first["clip_b"]["model_kind"] == "tuned"
    assert first["clip_a"]["tokens"] == db.get_clip(engine, clips_a[0]).tokens
    gold = [x for x in lines if x["gold"]]
    assert [(x["rater"], x["verdict"]) for x in gold] == [("ann", "a"), ("bob", "b")]
    assert gold[0]["clip_a"]["broken"] is True and gold[0]["clip_a"]["study"] == "s1"
    assert lines[-1]["study"] is None and lines[-1]["verdict"] is None
    # the report recounted from the export alone: model A's clip won, by rater, study pairs only
    model_a = db.get_study(engine, "s1")["model_a"]
    recount = {"a": 0, "b": 0, "tie": 0}
    for x in lines:
        if x["study"] == "s1" and not x["gold"]:
            won = x["clip_a"] if x["winner"] == "a" else x["clip_b"]
            recount["tie" if x["winner"] == "tie" else ("a" if won["model"] == model_a else "b")] += 1
    assert (recount["a"], recount["b"], recount["tie"]) == (report["wins_a"], report["wins_b"], report["ties"])


def test_migrations_0005_0006_keep_raters_and_judgements_both_ways(db_url):
    db.upgrade(db_url, "0004")
    engine = db.get_engine(db_url)
    with engine.begin() as c:  # rows as a 0004 database holds them (then harmony clips 0005, studies 0006)
        c.execute(text("INSERT INTO raters (name, created_at) VALUES ('old', CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO models (name, kind, directory, created_at) VALUES ('m', 'prior', '/m', "
                       "CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO clips (model_id, tokens, steps, midi_path, priority, n_ratings, n_comparisons, "
                       "created_at) VALUES (1, '[2, 1]', 2, 'a.mid', 0, 1, 0, CURRENT_TIMESTAMP)"))
        c.execute(text("INSERT INTO ratings (rater_id, clip_id, stars, tags, created_at, updated_at) VALUES "
                       "(1, 1, 4, '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    db.upgrade(db_url)
    listed = db.list_raters(engine)
    assert [(r["name"], r["researcher"], r["invited_at"], r["ratings"]) for r in listed] == [("old", False, None, 1)]
    assert db.next_clip(engine, "new").id == 1  # not broken
    token = db.invite_rater(engine, "old", researcher=True)
    assert db.rater_by_invite(engine, token)["name"] == "old"
    db.downgrade(db_url, "0004")
    with engine.connect() as c:
        assert c.execute(text("SELECT name FROM raters")).scalars().all() == ["old"]
        assert c.execute(text("SELECT stars FROM ratings")).scalars().all() == [4]
    db.upgrade(db_url)
    assert db.rater_by_invite(engine, token) is None  # the invite went with the downgrade
