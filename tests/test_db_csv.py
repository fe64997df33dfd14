"""Ratings CSV import/export: round trip, idempotence, and every bad-row case reported
with its line number and value while the database stays unchanged."""

from __future__ import annotations

import argparse

import pytest

import db
from rlmusic.cli.ratings import add_arguments as add_ratings_arguments
from rlmusic.cli.ratings import main as ratings_main

pytest_plugins = ["db_fixtures"]


@pytest.fixture
def clips(engine, two_models, make_clips) -> list[int]:
    prior, tuned = two_models
    return db.enqueue_clips(engine, prior, make_clips(3, seed=1)) + db.enqueue_clips(
        engine, tuned, make_clips(3, seed=2)
    )


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- good files


def test_star_import_export_round_trip_is_lossless(engine, clips, tmp_path):
    c = clips
    source = write(
        tmp_path / "in.csv",
        f'clip_id,rater,stars\n{c[0]},ann,4\n{c[1]},ann,1\n{c[0]},"Bob, Jr.",5\n{c[4]},  cid  ,3\n',
    )
    counts = db.import_ratings(engine, source)
    assert counts == {"kind": "stars", "rows": 4, "inserted": 4, "updated": 0, "unchanged": 0}
    rows = [(r["clip_id"], r["rater"], r["stars"]) for r in db.star_rows(engine)]
    assert rows == [(c[0], "ann", 4), (c[1], "ann", 1), (c[0], "Bob, Jr.", 5), (c[4], "cid", 3)]

    out = tmp_path / "out.csv"
    assert db.export_ratings(engine, out) == 4
    assert out.read_text().splitlines() == [
        "clip_id,rater,stars",
        f"{c[0]},ann,4",
        f"{c[1]},ann,1",
        f'{c[0]},"Bob, Jr.",5',
        f"{c[4]},cid,3",
    ]
    before = db.star_rows(engine)
    again = db.import_ratings(engine, out)  # importing the export changes nothing
    assert again == {"kind": "stars", "rows": 4, "inserted": 0, "updated": 0, "unchanged": 4}
    assert db.star_rows(engine) == before


def test_round_trip_into_a_fresh_database_preserves_everything(engine, clips, tmp_path):
    db.add_rating(engine, "ann", clips[0], 2, tags=["boring", "no structure"])
    db.add_rating(engine, "bob", clips[3], 5)
    db.add_comparison(engine, "ann", clips[2], clips[1], "b")
    db.add_comparison(engine, "bob", clips[0], clips[5], "tie")
    stars, pairs = tmp_path / "stars.csv", tmp_path / "pairs.csv"
    db.export_ratings(engine, stars, kind="stars")
    db.export_ratings(engine, pairs, kind="pairs")
    assert stars.read_text().splitlines()[:2] == [
        "clip_id,rater,stars,tags",
        f"{clips[0]},ann,2,boring;no structure",
    ]
    assert pairs.read_text().splitlines() == [
        "clip_a,clip_b,rater,winner",
        f"{clips[2]},{clips[1]},ann,b",
        f"{clips[0]},{clips[5]},bob,tie",
    ]

    def judgements():
        return (
            [(r["clip_id"], r["rater"], r["stars"], r["tags"]) for r in db.star_rows(engine)],
            [(r["clip_a"], r["clip_b"], r["rater"], r["winner"]) for r in db.pair_rows(engine)],
        )

    expected = judgements()
    # Wipe the judgements (same clips stay), import both files back.
    with engine.begin() as connection:
        for table in ("rating_history", "ratings", "comparisons", "raters"):
            connection.exec_driver_sql(f"DELETE FROM {table}")
        connection.exec_driver_sql("UPDATE clips SET n_ratings = 0, n_comparisons = 0")
    assert judgements() == ([], [])
    db.import_ratings(engine, stars)
    db.import_ratings(engine, pairs)
    assert judgements() == expected
    assert db.stats(engine)["ratings"] == 2 and db.stats(engine)["comparisons"] == 2


def test_reimport_with_changed_value_updates_and_records_history(engine, clips, tmp_path):
    db.import_ratings(engine, write(tmp_path / "a.csv", f"clip_id,rater,stars\n{clips[0]},ann,2\n"))
    counts = db.import_ratings(
        engine, write(tmp_path / "b.csv", f"clip_id,rater,stars\n{clips[0]},ann,5\n")
    )
    assert counts["updated"] == 1
    (row,) = db.star_rows(engine)
    assert row["stars"] == 5
    assert [h["stars"] for h in db.rating_history(engine, row["rating_id"])] == [2]


def test_pair_import_is_idempotent_and_header_is_case_and_space_insensitive(
    engine, clips, tmp_path
):
    text = f" Clip_A , clip_b,RATER,winner\n{clips[0]},{clips[3]},ann, A \n\n{clips[1]},{clips[4]},ann,tie\n"
    path = write(tmp_path / "p.csv", text)
    assert db.import_ratings(engine, path)["inserted"] == 2  # blank line skipped
    assert db.import_ratings(engine, path) == {
        "kind": "pairs",
        "rows": 2,
        "inserted": 0,
        "updated": 0,
        "unchanged": 2,
    }
    assert [r["winner"] for r in db.pair_rows(engine)] == ["a", "tie"]


def test_tags_column_absent_keeps_stored_tags(engine, clips, tmp_path):
    db.add_rating(engine, "ann", clips[0], 3, tags=["pleasant"])
    db.import_ratings(engine, write(tmp_path / "a.csv", f"clip_id,rater,stars\n{clips[0]},ann,3\n"))
    assert db.star_rows(engine)[0]["tags"] == ["pleasant"]


# ----------------------------------------------------------------------------- bad files

# Each case: CSV text (``{c0}``... are clip ids), then (line, fragment) expected in the
# message for every problem. The first, good rows must not be written either.
BAD_STARS = [
    pytest.param("{c0},ann,4\n{c1},bob,6\n", [(3, "stars '6' is not in 1..5")], id="stars-range"),
    pytest.param("{c0},ann,4\n{c1},bob,0\n", [(3, "stars '0'")], id="stars-zero"),
    pytest.param(
        "{c0},ann,4\n{c1},bob,3.5\n", [(3, "stars '3.5' is not an integer")], id="stars-float"
    ),
    pytest.param("{c0},ann,4\n{c1},bob,\n", [(3, "stars '' is not an integer")], id="stars-empty"),
    pytest.param("{c0},ann,4\n9999,bob,3\n", [(3, "unknown clip_id 9999")], id="unknown-clip"),
    pytest.param(
        "{c0},ann,4\nx1,bob,3\n", [(3, "clip_id 'x1' is not a clip id")], id="clip-not-int"
    ),
    # int() reads these as other clips: 1_0 as 10, Arabic-Indic digits as 1 and 3
    pytest.param("{c0},ann,4\n1_0,bob,3\n", [(3, "clip_id '1_0' is not a clip id")], id="clip-underscore"),
    pytest.param("{c0},ann,4\n\u0661,bob,3\n", [(3, "clip_id '\u0661' is not a clip id")], id="clip-arabic"),
    pytest.param("{c0},ann,4\n{c1},bob,\u0663\n", [(3, "stars '\u0663' is not an integer")], id="stars-arabic"),
    pytest.param("{c0},ann,4\n+{c1},bob,3\n", [(3, "is not a clip id")], id="clip-plus"),
    pytest.param(  # beyond 64 bits: a traceback from the driver before
        "{c0},ann,4\n100000000000000000000000,bob,3\n", [(3, "is not a clip id (ASCII digits, 1..2147483647)")],
        id="clip-huge",
    ),
    pytest.param("{c0},ann,4\n{c1},\"bo\nb\",3\n", [(4, "invisible or control character U+000A")],
                 id="rater-two-lines"),
    pytest.param("{c0},ann,4\n{c1},a\u200bnn,3\n", [(3, "U+200B (ZERO WIDTH SPACE)")], id="rater-zero-width"),
    pytest.param("{c0},ann,4\n{c1},\u0301,3\n", [(3, "has no visible character")], id="rater-invisible"),
    pytest.param("{c0},ann,4\n{c1},bob,3\n{c2}," + "x" * 2000 + ",3\n",
                 [(4, "field 2 is 2,000 characters long (at most 1,000)")], id="field-long"),
    pytest.param("{c0},ann,4\n{c1},bob\n", [(3, "expected 3 fields")], id="missing-column"),
    pytest.param(
        "{c0},ann,4\n{c1},bob,3,extra\n", [(3, "got 4: '{c1},bob,3,extra'")], id="extra-column"
    ),
    pytest.param("{c0},ann,4\n{c1}, ,3\n", [(3, "rater name ' '")], id="empty-rater"),
    pytest.param(
        "{c0},ann,4\n{c0}, ann ,2\n",
        [(3, "duplicate of line 2 (rater 'ann', clip {c0})")],
        id="duplicate",
    ),
    pytest.param(
        "{c0},ann,4\n{c1},bob,9\n{c2},,x\n9999,cid,2\n{c0},ann,4\n",
        [
            (3, "stars '9'"),
            (4, "rater name ''"),
            (4, "stars 'x'"),
            (5, "unknown clip_id 9999"),
            (6, "duplicate of line 2"),
        ],
        id="all-problems-at-once",
    ),
]

BAD_PAIRS = [
    pytest.param(
        "{c0},{c1},ann,a\n{c0},{c2},ann,c\n",
        [(3, "winner 'c' is not one of a, b, tie")],
        id="winner",
    ),
    pytest.param(
        "{c0},{c1},ann,a\n{c2},{c2},ann,b\n",
        [(3, "clip {c2} is compared with itself")],
        id="same-clip",
    ),
    pytest.param(
        "{c0},{c1},ann,a\n{c0},9999,ann,b\n", [(3, "unknown clip_b 9999")], id="unknown-clip"
    ),
    pytest.param(
        "{c0},{c1},ann,a\n{c0},{c2},ann\n", [(3, "expected 4 fields")], id="missing-column"
    ),
    pytest.param(
        "{c0},{c1},ann,a\nq,{c2},ann,b\n", [(3, "clip_a 'q' is not a clip id")], id="clip-not-int"
    ),
    pytest.param(
        "{c0},{c1},ann,a\n{c1},{c0},ann,b\n", [(3, "duplicate of line 2")], id="duplicate-reversed"
    ),
]


def _check_bad(engine, clips, tmp_path, state, header, body, expected):
    ids = {f"c{i}": c for i, c in enumerate(clips)}
    path = write(tmp_path / "bad.csv", header + body.format(**ids))
    before = state()
    with pytest.raises(db.RatingsImportError) as info:
        db.import_ratings(engine, path)
    assert state() == before  # nothing written, not even the good first row or a rater
    problems = info.value.problems
    assert len(problems) == len(expected)
    message = str(info.value)
    assert f"{len(expected)} problem" in message and "nothing imported" in message
    for (line, text), (want_line, fragment) in zip(problems, expected, strict=True):
        fragment = fragment.format(**ids)
        assert line == want_line
        assert fragment in text
        assert f"line {want_line}: " in message
        assert fragment in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("body, expected", BAD_STARS)
def test_bad_star_rows_are_all_reported_and_nothing_is_written(
    engine, clips, tmp_path, state, body, expected
):
    _check_bad(engine, clips, tmp_path, state, "clip_id,rater,stars\n", body, expected)


@pytest.mark.parametrize("body, expected", BAD_PAIRS)
def test_bad_pair_rows_are_all_reported_and_nothing_is_written(
    engine, clips, tmp_path, state, body, expected
):
    _check_bad(engine, clips, tmp_path, state, "clip_a,clip_b,rater,winner\n", body, expected)


def test_bad_tag_is_reported(engine, clips, tmp_path, state):
    _check_bad(
        engine,
        clips,
        tmp_path,
        state,
        "clip_id,rater,stars,tags\n",
        "{c0},ann,4,boring\n{c1},ann,4,boring;catchy\n",
        [(3, "tag 'catchy'")],
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "line 1: empty file"),
        ("clip,who,score\n1,ann,3\n", "line 1: header 'clip,who,score' is neither"),
        ("clip_id,rater\n1,ann\n", "line 1: header"),
    ],
)
def test_missing_or_unknown_header(engine, tmp_path, text, fragment, state):
    before = state()
    with pytest.raises(db.RatingsImportError, match=fragment):
        db.import_ratings(engine, write(tmp_path / "h.csv", text))
    assert state() == before


def test_many_problems_are_summarised_but_all_kept(engine, clips, tmp_path):
    body = "".join(f"{clips[0]},r{i},7\n" for i in range(60))
    with pytest.raises(db.RatingsImportError) as info:
        db.import_ratings(engine, write(tmp_path / "m.csv", "clip_id,rater,stars\n" + body))
    assert len(info.value.problems) == 60
    assert "... and 10 more" in str(info.value)
    assert info.value.problems[-1][0] == 61


# ----------------------------------------------------------------------------- command


def _run(argv):
    parser = argparse.ArgumentParser()
    add_ratings_arguments(parser)
    return ratings_main(parser.parse_args(argv))


def test_ratings_command_import_and_export(engine, db_url, clips, tmp_path, capsys):
    source = write(
        tmp_path / "in.csv", f"clip_a,clip_b,rater,winner\n{clips[0]},{clips[4]},ann,b\n"
    )
    assert _run(["import", str(source), "--url", db_url]) == 0
    assert "1 pairs rows: 1 new, 0 updated, 0 unchanged" in capsys.readouterr().out
    out = tmp_path / "out.csv"
    assert _run(["export", str(out), "--kind", "pairs", "--url", db_url]) == 0
    assert out.read_text() == source.read_text()
    assert _run(["export", str(tmp_path / "s.csv"), "--url", db_url]) == 0
    assert (tmp_path / "s.csv").read_text().strip() == "clip_id,rater,stars"


def test_ratings_command_refuses_an_old_schema(db_url, tmp_path, capsys):
    from rlmusic.cli.main import main

    assert main(["ratings", "export", str(tmp_path / "x.csv"), "--url", db_url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run `rlmusic db upgrade`" in err and "schema" in err
    assert not (tmp_path / "x.csv").exists()


def test_rlmusic_router_prints_bad_rows_without_traceback(engine, db_url, clips, tmp_path, capsys):
    from rlmusic.cli.main import main

    path = write(tmp_path / "bad.csv", f"clip_id,rater,stars\n{clips[0]},ann,4\n{clips[1]},bob,8\n")
    assert main(["ratings", "import", str(path), "--url", db_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlmusic ratings: error: ")
    assert "line 3: stars '8' is not in 1..5" in err
    assert "Traceback" not in err
    assert db.stats(engine)["ratings"] == 0


def test_round_trip_with_awkward_rater_names(engine, clips, tmp_path):
    names = ['say "hi"', "a,b", "Zoë 🎵", "=1+1", "x" * 64, "-dj-", "@ann", "'quoted", "+44 1"]
    for i, name in enumerate(names):
        db.add_rating(engine, name, clips[i % len(clips)], 1 + i % 5)
        db.add_comparison(engine, name, clips[0], clips[1 + i % 5], "ab"[i % 2])
    stars, pairs = tmp_path / "s.csv", tmp_path / "p.csv"
    db.export_ratings(engine, stars)
    db.export_ratings(engine, pairs, kind="pairs")
    before = (db.star_rows(engine), db.pair_rows(engine))
    assert db.import_ratings(engine, stars)["unchanged"] == len(names)
    assert db.import_ratings(engine, pairs)["unchanged"] == len(names)
    assert (db.star_rows(engine), db.pair_rows(engine)) == before
    assert {r["rater"] for r in before[0]} == set(names)
    # no cell a spreadsheet would run as a formula: those get a leading quote
    import csv

    for path in (stars, pairs):
        cells = [cell for row in csv.reader(path.open(encoding="utf-8")) for cell in row]
        assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))], path.read_text()
        assert {"'=1+1", "'-dj-", "'@ann", "''quoted", "'+44 1"} <= set(cells)
