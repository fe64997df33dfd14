import csv

import numpy as np
import pytest

import db
from rlmusic.cli.main import main as cli_main
from rlmusic.cli.simulate import simulate_raters
from rlmusic.feedback.judgements import spearman
from rlmusic.feedback.simulate import SILENT, make_raters, taste_score
from rlmusic.music.representation import Note, Vocabulary, notes_to_tokens

V = Vocabulary()


def line(pitches, steps_each=4):
    return notes_to_tokens([Note(i * steps_each, steps_each, p) for i, p in enumerate(pitches)], V)


ARCH = line([60, 62, 64, 67, 69, 67, 64, 62])
VALLEY = line([69, 67, 64, 62, 60, 62, 64, 67])
FLAT = line([64] * 8)
RISING = line([60, 61, 62, 64, 65, 67, 69, 72])
LEAPY = line([60, 72, 60, 72, 60, 72, 60, 72])


def test_tastes_order_hand_made_melodies():
    contour = taste_score(np.stack([ARCH, FLAT, VALLEY]), "contour")
    assert contour[0] > 1 and contour[1] == pytest.approx(0) and contour[2] < -1
    rising = taste_score(np.stack([RISING, FLAT, RISING[::-1].copy()]), "rising")
    assert rising[0] > 1 and rising[1] == pytest.approx(0) and rising[2] < -1
    smooth = taste_score(np.stack([RISING, LEAPY]), "smooth")
    assert smooth[0] > -0.5 > -3 > smooth[1]
    silent = np.zeros((1, 32), dtype=np.int64)
    for taste in ("contour", "rising", "smooth"):
        assert taste_score(silent, taste)[0] == SILENT
    with pytest.raises(ValueError, match="unknown taste 'jazzy'; valid"):
        taste_score(ARCH[None], "jazzy")


def test_raters_are_reproducible_and_differ_in_bias():
    a, b = make_raters(5, "contour", 0.5, seed=3), make_raters(5, "contour", 0.5, seed=3)
    assert a == b
    assert len({r.bias for r in a}) == 5 and all(-1 <= r.bias <= 1 for r in a)
    with pytest.raises(ValueError, match="noise must be >= 0, got -1"):
        make_raters(2, "contour", -1)


@pytest.fixture
def queued(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ratings.db'}"
    db.upgrade(url)
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    engine = db.get_engine(url)
    model_id = db.register_model(engine, name="m", directory=str(tmp_path / "m"), kind="prior")
    rng = np.random.default_rng(0)
    tokens = np.full((40, 32), Vocabulary.HOLD, dtype=np.int64)
    tokens[:, ::4] = rng.integers(10, 34, size=(40, 8))
    ids = db.enqueue_clips(engine, model_id, [{"tokens": t.tolist(), "midi_path": f"{i}.mid"}
                                              for i, t in enumerate(tokens)])
    yield engine, dict(zip(ids, tokens))
    db.dispose_engine(url)


def test_simulated_raters_rate_through_the_csv_import(queued, tmp_path):
    engine, clips = queued
    result = simulate_raters(engine, n_raters=3, taste="contour", noise=0.3, per_rater=30, pairs=20,
                             seed=1, csv_dir=tmp_path / "csv")
    assert result["stars"] == 90 and result["pairs"] == 60
    with open(result["stars_csv"]) as f:
        assert next(csv.reader(f)) == ["clip_id", "rater", "stars"]
    stars = db.star_rows(engine)
    pairs = db.pair_rows(engine)
    assert len(stars) == 90 and len(pairs) == 60
    for name in result["raters"]:  # each rater's stars follow the taste
        mine = [r for r in stars if r["rater"] == name]
        taste = taste_score(np.array([r["tokens"] for r in mine]), "contour")
        assert spearman(taste, np.array([r["stars"] for r in mine])) > 0.6
    decided = [p for p in pairs if p["winner"] != "tie"]
    ta = taste_score(np.array([p["tokens_a"] for p in decided]), "contour")
    tb = taste_score(np.array([p["tokens_b"] for p in decided]), "contour")
    agree = np.mean((ta > tb) == np.array([p["winner"] == "a" for p in decided]))
    assert agree > 0.75
    # a second session rates the clips they have not rated yet
    again = simulate_raters(engine, n_raters=3, taste="contour", per_rater=30, seed=1)
    assert again["stars"] == 30  # 10 clips left per rater
    assert len(db.star_rows(engine)) == 120


def test_priority_order_rates_the_prioritised_clips_first(queued):
    engine, clips = queued
    ids = sorted(clips)
    db.set_clip_priority(engine, {ids[-1]: 5.0, ids[-2]: 4.0})
    simulate_raters(engine, n_raters=1, per_rater=2, order="priority")
    assert sorted(r["clip_id"] for r in db.star_rows(engine)) == ids[-2:]


def test_cli_route(queued, capsys):
    assert cli_main(["simulate-raters", "--n-raters", "2", "--per-rater", "5", "--pairs", "3",
                     "--taste", "smooth"]) == 0
    out = capsys.readouterr().out
    assert "imported 10 star ratings and 6 comparisons" in out
