"""Preference optimisation (`rlmusic tune --method dpo`): the DPO and IPO losses against
hand-computed values, pairs from judgements (ties, equal stars, other lengths and other
raters left out and counted; star pairs only within a rater), a tiny offline run from the
database that raises the winners' log-ratio over the losers', online pairs judged by a
scorer, and mistakes in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import TINY_TUNE_TOML

import db
from rlmusic.cli.main import main
from rlmusic.models.checkpoint import load_model, load_provenance
from rlmusic.tuning.dpo import online_pairs, preference_loss, preference_pairs, sequence_log_probs

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_dpo_and_ipo_losses_against_hand_computed_values():
    # pair 1: h = (-10 + 11) - (-12 + 11) = 2; pair 2: h = (-5 + 4) - (-3 + 4) = -2
    pw, pl = torch.tensor([-10.0, -5.0]), torch.tensor([-12.0, -3.0])
    rw, rl = torch.tensor([-11.0, -4.0]), torch.tensor([-11.0, -4.0])
    loss, h = preference_loss(pw, pl, rw, rl, beta=0.1, loss="dpo")
    assert h.tolist() == [2.0, -2.0]
    want = (math.log1p(math.exp(-0.2)) + math.log1p(math.exp(0.2))) / 2  # -log sigmoid(+-0.2)
    assert float(loss) == pytest.approx(want, abs=1e-6)
    loss, _ = preference_loss(pw, pl, rw, rl, beta=0.1, loss="ipo")
    assert float(loss) == pytest.approx(((2 - 5) ** 2 + (-2 - 5) ** 2) / 2)  # (h - 1/(2 beta))^2
    with pytest.raises(ValueError, match="loss must be one of dpo, ipo"):
        preference_loss(pw, pl, rw, rl, beta=0.1, loss="kto")


def test_sequence_log_probs_sum_the_steps(tiny_prior):
    model = load_model(tiny_prior)
    x = torch.tensor([[5, 1, 1, 0, 7, 1]])
    logp = torch.log_softmax(model(model.with_bos(x))[0], -1)[0]
    assert float(sequence_log_probs(model, x)[0]) == pytest.approx(float(sum(logp[t, x[0, t]] for t in range(6))))


def row(rater, stars, tokens):
    return {"rater": rater, "stars": stars, "tokens": tokens}


def test_pairs_from_judgements_count_what_is_left_out():
    a, b, c, d, short = [5] * 4, [6] * 4, [7] * 4, [8] * 4, [5] * 3
    stars = [row("x", 5, a), row("x", 2, b), row("x", 2, c), row("y", 1, a), row("y", 4, d), row("y", 4, short)]
    comparisons = [{"rater": "x", "winner": "b", "tokens_a": a, "tokens_b": c},
                   {"rater": "y", "winner": "tie", "tokens_a": a, "tokens_b": b},
                   {"rater": "y", "winner": "a", "tokens_a": d, "tokens_b": short}]
    w, lo, counts = preference_pairs(stars, comparisons, steps=4)
    got = {(tuple(x), tuple(y)) for x, y in zip(w.tolist(), lo.tolist())}
    # x: c over a (compared); a over b and a over c (stars); y: d over a (stars); never x's a against y's d
    assert got == {(tuple(c), tuple(a)), (tuple(a), tuple(b)), (tuple(a), tuple(c)), (tuple(d), tuple(a))}
    assert counts == {"comparisons": 1, "star_pairs": 3, "ties": 1, "equal_stars": 1, "other_length": 2}
    w, lo, counts = preference_pairs(stars, comparisons, steps=4, rater="y")
    assert w.tolist() == [d] and lo.tolist() == [a] and counts["ties"] == 1
    w, _, counts = preference_pairs(stars, comparisons, steps=4, max_star_pairs=2)
    assert len(w) == 3 and counts["star_pairs_not_sampled"] == 1


def test_online_pairs_put_the_better_scored_melody_first(tiny_prior):
    model = load_model(tiny_prior)
    w, lo, gap = online_pairs(model, lambda t: (t >= 2).sum(1), 6, 16, torch.Generator().manual_seed(0))
    assert w.shape == lo.shape == (6, 16)
    assert ((w >= 2).sum(1) >= (lo >= 2).sum(1)).all()  # more notes wins
    assert np.allclose(gap, (w >= 2).sum(1) - (lo >= 2).sum(1))


@pytest.fixture
def database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'rlmusic.db'}"
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    db.upgrade(url)
    yield db.get_engine(url)
    db.dispose_engine(url)


def judged(engine, steps: int = 16) -> tuple[list[list[int]], list[list[int]]]:
    """Clips of many notes (preferred) and of few (rejected), judged by two raters."""
    rng = np.random.default_rng(0)
    busy = [[int(rng.integers(2, 39)) for _ in range(steps)] for _ in range(6)]
    quiet = [[int(rng.integers(2, 39))] + [1] * (steps - 1) for _ in range(6)]
    model = db.register_model(engine, name="m", directory="/models/m", kind="prior")
    ids = db.enqueue_clips(engine, model, [{"tokens": t, "midi_path": f"c/{i}.mid"} for i, t in enumerate(busy + quiet)])
    for i in range(6):
        db.add_comparison(engine, "ann", ids[i], ids[6 + i], "a")
        db.add_comparison(engine, "bob", ids[6 + i], ids[(i + 1) % 6], "b")
    db.add_comparison(engine, "bob", ids[0], ids[1], "tie")
    for i in range(3):
        db.add_rating(engine, "cy", ids[i], 5)
        db.add_rating(engine, "cy", ids[6 + i], 1)
    return busy, quiet


def test_a_tiny_offline_run_from_the_database_prefers_what_the_raters_preferred(database, tiny_prior, tmp_path, capsys):
    busy, quiet = judged(database)
    config = tmp_path / "dpo.toml"
    config.write_text(TINY_TUNE_TOML + "dpo_epochs = 30\ndpo_batch = 8\ndpo_learning_rate = 3e-3\n")
    out = tmp_path / "run"
    assert main(["tune", "--method", "dpo", "--prior", str(tiny_prior), "--config", str(config), "--out", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "21 preference pairs of 16-step melodies from every rater: 12 comparisons, 9 star pairs" in printed
    assert "1 ties" in printed
    assert {"dpo/loss", "dpo/accuracy", "dpo/margin"} <= set((out / "metrics.csv").read_text().splitlines()[0].split(","))
    prior, tuned = load_model(tiny_prior), load_model(out)
    x = torch.as_tensor(np.array(busy + quiet))
    with torch.no_grad():
        gain = sequence_log_probs(tuned, x) - sequence_log_probs(prior, x)
    # the preferred melodies gained on the rejected: by 65.5-66.1 nats over --seed 0-4 (a flipped loss loses)
    assert float(gain[:6].mean() - gain[6:].mean()) > 10.0
    prov = load_provenance(out)
    assert prov.extra["dpo"]["pairs"] == 21 and prov.extra["dpo"]["counts"]["ties"] == 1
    assert len(prov.ratings) == 6 and len(prov.extra["dpo"]["comparison_ids"]) == 13
    assert len((out / "eval.jsonl").read_text().splitlines()) == 31  # the prior, then each epoch

    assert main(["tune", "--method", "dpo", "--rater", "cy", "--prior", str(tiny_prior), "--config", str(config),
                 "--out", str(tmp_path / "cy"), "--no-progress", "--device", "cpu"]) == 0
    assert "9 preference pairs of 16-step melodies from rater cy: 0 comparisons, 9 star pairs" in capsys.readouterr().out


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("rlmusic tune: error: ") and err.count("\n") == 1, err
    return err


def test_dpo_mistakes_are_one_line(database, tiny_prior, tiny_tune_config, tmp_path, capsys):
    base = ["tune", "--method", "dpo", "--prior", str(tiny_prior), "--config", str(tiny_tune_config), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 1
    assert "no preference pair to train on" in one_line(capsys)
    judged(database)
    assert main([*base, "--out", str(tmp_path / "b"), "--rater", "zed"]) == 1
    assert "rater 'zed' has no judgement of a melody" in one_line(capsys)
    assert main([*base, "--out", str(tmp_path / "c"), "--resume"]) == 1
    assert "starts again rather than resuming" in one_line(capsys)
    assert main([*base, "--out", str(tmp_path / "d"), "--preset", "rl-tuner-targets"]) == 1
    assert "method dpo trains on preference pairs, not to [targets]" in one_line(capsys)
    online = tmp_path / "online.toml"
    online.write_text(TINY_TUNE_TOML + "dpo_online_pairs = 4\n")
    assert main(["tune", "--method", "dpo", "--prior", str(tiny_prior), "--config", str(online), "--out",
                 str(tmp_path / "e"), "--no-progress"]) == 1
    assert "judges the policy's pairs with a reward model" in one_line(capsys)
