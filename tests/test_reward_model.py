import json
import math

import numpy as np
import pytest
import torch
from seeding import seed

from rlmusic.feedback.features import melody_statistics
from rlmusic.feedback.fit import RewardModelConfig, fit_reward_model
from rlmusic.feedback.guard import GuardConfig, GuardedRewardModel, RunningMeanStd
from rlmusic.feedback.judgements import normalise_stars, rankdata, spearman
from rlmusic.feedback.reward_model import load_reward_model
from rlmusic.models.checkpoint import save_model
from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.music.representation import Vocabulary, VocabularyMismatchError

TINY = dict(embed_dim=8, hidden_size=16, num_layers=1, max_steps=64)
FAST = dict(ensemble=3, epochs=150)



@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    torch.manual_seed(seed(0))  # the prior's random weights shape the reward model's features
    return save_model(MelodyLSTM(ModelConfig(**TINY)), tmp_path_factory.mktemp("rm") / "prior")


def melodies(n: int, steps: int = 16, seed: int = 0) -> np.ndarray:
    """Random melodies of quarter notes (pitch tokens then HOLDs)."""
    rng = np.random.default_rng(seed)
    out = np.full((n, steps), Vocabulary.HOLD, dtype=np.int64)
    out[:, ::4] = rng.integers(14, 30, size=(n, steps // 4))  # pitches 60..75
    return out


def rising(tokens: np.ndarray) -> np.ndarray:
    """A known quality for testing the fitting itself: last note minus first note (octaves).
    It is one of the features' statistics, so it proves the fitting works, not that a taste
    can be learnt (tests/test_rounds.py and tests/test_simulate.py do that)."""
    return melody_statistics(tokens, Vocabulary())[:, -1]


def star_rows_for(tokens, quality, rater, offset, scale=2.0, start_id=1):
    """A rater whose stars follow ``quality`` exactly, shifted by ``offset`` stars."""
    ranks = rankdata(quality) / len(quality)  # (0, 1]
    return [
        {"rating_id": start_id + i, "clip_id": i, "rater": rater, "tokens": t.tolist(),
         "stars": int(np.clip(np.ceil(ranks[i] * scale) + offset, 1, 5))}
        for i, t in enumerate(tokens)
    ]


def pair_rows_for(tokens, quality, n, seed=0, rater="p"):
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(n):
        a, b = rng.choice(len(tokens), 2, replace=False)
        rows.append({"comparison_id": j + 1, "clip_a": int(a), "clip_b": int(b), "rater": f"{rater}{j % 3}",
                     "winner": "a" if quality[a] > quality[b] else "b" if quality[b] > quality[a] else "tie",
                     "tokens_a": tokens[a].tolist(), "tokens_b": tokens[b].tolist()})
    return rows


def test_stars_are_normalised_within_each_rater():
    tokens = melodies(6)
    q = np.arange(6.0)
    harsh = star_rows_for(tokens, q, "harsh", offset=0, scale=3)  # stars 1..3
    kind = star_rows_for(tokens, q, "kind", offset=2, scale=3)  # stars 3..5
    z, stats = normalise_stars(harsh + kind)
    assert stats["harsh"]["mean"] < stats["kind"]["mean"]
    np.testing.assert_allclose(z[:6], z[6:])
    assert z[:6].mean() == pytest.approx(0) and z[:6].std() == pytest.approx(1)
    flat = [{"rater": "flat", "stars": 4, "tokens": [2]}] * 3
    assert np.all(normalise_stars(flat)[0] == 0)  # no spread: no ordering information


@pytest.mark.statistical
def test_a_harsh_and_a_kind_rater_with_the_same_ordering_give_the_same_fit(prior_dir, record_property):
    """Over test seeds 0-4: spearman 0.930-0.971 (bound 0.8)."""
    tokens = melodies(40, seed=seed(0))
    q = rising(tokens)
    config = RewardModelConfig(**FAST, split="clip", seed=seed(0))
    harsh = fit_reward_model(star_rows_for(tokens, q, "harsh", 0, scale=3), [], prior_dir, config)
    kind = fit_reward_model(star_rows_for(tokens, q, "kind", 2, scale=3), [], prior_dir, config)
    np.testing.assert_allclose(harsh.score(tokens), kind.score(tokens), atol=1e-5)
    both = fit_reward_model(star_rows_for(tokens, q, "harsh", 0, scale=3)
                            + star_rows_for(tokens, q, "kind", 2, scale=3, start_id=100), [], prior_dir, config)
    # with raw stars the kind rater's 3-5 would swamp the harsh one's 1-3; z-scored, they agree
    rho = spearman(both.score(tokens), q)
    record_property("spearman", round(float(rho), 4))
    assert rho > 0.8


@pytest.mark.statistical
def test_bradley_terry_recovers_a_known_ordering(prior_dir, record_property):
    """Over test seeds 0-4: held-out pairwise accuracy 0.915-0.976, spearman on fresh
    melodies 0.981-0.988 (bounds 0.8)."""
    tokens = melodies(60, seed=seed(1))
    q = rising(tokens)
    model = fit_reward_model([], pair_rows_for(tokens, q, 300, seed=seed(0)), prior_dir,
                             RewardModelConfig(**FAST, split="clip", seed=seed(0)))
    held = model.metrics
    fresh = melodies(60, seed=seed(2))
    rho = spearman(model.score(fresh), rising(fresh))
    record_property("pairwise_accuracy", round(float(held["pairwise_accuracy"]), 4))
    record_property("fresh_spearman", round(float(rho), 4))
    assert held["n_test_pairs"] > 20
    assert held["pairwise_accuracy"] > 0.8  # chance 0.5
    assert rho > 0.8  # melodies it never saw


def test_ties_count_as_half_wins_or_are_skipped(prior_dir):
    tokens = melodies(30)
    q = rising(tokens)
    pairs = pair_rows_for(tokens, q, 60)
    pairs += [{**p, "comparison_id": 1000 + i, "winner": "tie"} for i, p in enumerate(pairs[:10])]
    half = fit_reward_model([], pairs, prior_dir, RewardModelConfig(**FAST, ties="half", split="clip"))
    skip = fit_reward_model([], pairs, prior_dir, RewardModelConfig(**FAST, ties="skip", split="clip"))
    assert half.meta["data"]["n_ties"] == skip.meta["data"]["n_ties"] >= 10
    assert half.meta["data"]["ties"] == "half" and skip.meta["data"]["ties"] == "skip"
    assert not np.allclose(half.score(tokens), skip.score(tokens))  # the ties did enter the half fit


def test_refuses_to_fit_on_too_few_ratings(prior_dir):
    tokens = melodies(5)
    rows = star_rows_for(tokens, rising(tokens), "r", 0)
    with pytest.raises(ValueError, match=r"too few ratings.*: 7 \(5 star ratings \+ 2 comparisons\), need at least 20"):
        fit_reward_model(rows, pair_rows_for(tokens, rising(tokens), 2), prior_dir)
    with pytest.raises(ValueError, match="ties must be one of"):
        fit_reward_model(rows, [], prior_dir, RewardModelConfig(ties="drop", min_ratings=1))


def test_save_load_round_trip(prior_dir, tmp_path):
    tokens = melodies(40)
    q = rising(tokens)
    stars = star_rows_for(tokens, q, "a", 0) + star_rows_for(tokens, q, "b", 1, start_id=100)
    model = fit_reward_model(stars, pair_rows_for(tokens, q, 30), prior_dir, RewardModelConfig(**FAST))
    model.save(tmp_path / "rm")
    loaded = load_reward_model(tmp_path / "rm")
    np.testing.assert_allclose(loaded.score(tokens), model.score(tokens), atol=1e-6)
    mean, std = loaded.score_with_uncertainty(tokens)
    assert mean.shape == std.shape == (40,) and np.all(std >= 0) and std.max() > 0
    # normalised on the training melodies: mean 0, std 1
    assert mean.mean() == pytest.approx(0, abs=1e-5) and mean.std() == pytest.approx(1, abs=1e-3)
    meta = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert meta["data"]["rating_ids"] == sorted(r["rating_id"] for r in stars)
    assert meta["data"]["comparison_ids"] == list(range(1, 31))
    assert meta["prior"]["vocabulary"]["min_pitch"] == 48 and meta["head"]["ensemble"] == 3
    assert meta["metrics"]["split"] == "clip"
    metrics = json.loads((tmp_path / "rm" / "metrics.json").read_text())
    assert set(metrics) >= {"pairwise_accuracy", "spearman", "star_pair_accuracy"}


def test_loading_with_a_prior_of_another_vocabulary_raises(prior_dir, tmp_path):
    tokens = melodies(30)
    model = fit_reward_model(star_rows_for(tokens, rising(tokens), "a", 0), [], prior_dir,
                             RewardModelConfig(**FAST, split="clip"))
    model.save(tmp_path / "rm")
    other = save_model(MelodyLSTM(ModelConfig(**TINY, min_pitch=36, max_pitch=96)), tmp_path / "other")
    with pytest.raises(VocabularyMismatchError, match="another vocabulary"):
        load_reward_model(tmp_path / "rm", prior=other)
    torch.manual_seed(5)
    retrained = save_model(MelodyLSTM(ModelConfig(**TINY)), tmp_path / "retrained")
    with pytest.warns(UserWarning, match="weights differ"):
        load_reward_model(tmp_path / "rm", prior=retrained)


def test_running_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3, 2, size=16) for _ in range(20)]
    rms = RunningMeanStd(count=1e-8)
    for b in batches:
        rms.update(b)
    allx = np.concatenate(batches)
    assert rms.mean == pytest.approx(allx.mean()) and rms.var == pytest.approx(allx.var())


@pytest.mark.statistical
def test_guarded_model_normalises_with_running_stats(prior_dir, record_property):
    """Raters who use four star levels: with two (the default scale) the stars only say top
    half or bottom half, the model cannot rank within the top half, and the 8 "best" melodies
    scored 0.995-1.165 over test seeds 0-9 against the bound 1 (seed 2 failed); with four,
    1.31-1.41. Over test seeds 0-4: raw 1.33-1.41, first / raw 0.853-0.862, last / first
    0.330-0.338 (the running mean / raw is 0.795 on every seed: it is arithmetic)."""
    tokens = melodies(40, seed=seed(0))
    q = rising(tokens)
    stars = star_rows_for(tokens, q, "a", 0, scale=4) + star_rows_for(tokens, q, "b", 1, scale=4, start_id=100)
    model = fit_reward_model(stars, [], prior_dir, RewardModelConfig(**FAST, seed=seed(0)))
    best = tokens[np.argsort(-model.score(tokens))[:8]]  # a policy that found the best melodies
    raw = model.score(best).mean()
    guarded = GuardedRewardModel(model, GuardConfig(init_count=64))
    first = guarded.score(best)
    for _ in range(30):
        last = guarded.score(best)
    record_property("raw", round(float(raw), 4))
    record_property("first_over_raw", round(float(first.mean() / raw), 4))
    record_property("last_over_first", round(float(last.mean() / first.mean()), 4))
    record_property("running_mean_over_raw", round(float(guarded.stats.mean / raw), 4))
    assert raw > 1  # well above the training melodies' mean
    assert first.mean() > 0.5 * raw  # the running stats start at the training melodies'
    assert last.mean() < 0.5 * first.mean()  # then the running mean catches up with the policy
    assert guarded.stats.mean > 0.7 * raw
    score, disagreement, ood, n = guarded.drain()
    assert n == 31 * 8 and score > 1 and disagreement > 0 and guarded.pending == []
    assert ood == pytest.approx(0, abs=1e-3)  # rated melodies: each its own nearest (0 up to float error: 2e-4)
    fresh = melodies(15, seed=seed(5))  # unrated: the guard reports their median ratio, not the mean
    guarded.score(fresh)
    median = float(np.median(model.ood(fresh)))
    assert median > 0 and guarded.drain()[2] == pytest.approx(median)
    plain = GuardedRewardModel(model, GuardConfig(running_norm=False, clip=0))
    np.testing.assert_allclose(plain.score(best), model.score(best))
    with pytest.raises(ValueError, match="guard action"):
        GuardConfig.from_dict({"action": "explode"})


def test_spearman_and_ranks():
    assert rankdata(np.array([3.0, 1.0, 3.0])).tolist() == [2.5, 1.0, 2.5]
    assert spearman(np.arange(5.0), np.arange(5.0) ** 3) == pytest.approx(1)
    assert math.isnan(spearman(np.ones(4), np.arange(4.0)))


def test_held_out_statistics_come_from_training_rows_only():
    from rlmusic.feedback.judgements import zscore_within_raters

    stars = np.array([1.0, 3.0, 5.0, 5.0, 2.0, 4.0])
    raters = ["a", "a", "a", "a", "b", "b"]
    z, stats = zscore_within_raters(stars, raters, np.array([0, 1, 2]))  # a's last row held out
    assert stats["a"] == {"mean": 3.0, "std": pytest.approx(np.std([1, 3, 5])), "n": 3}
    assert z[3] == pytest.approx(2 / np.std([1, 3, 5]))  # held out: z-scored with the training stats
    assert "b" not in stats and z[4] == -1.0 and z[5] == 1.0  # unseen rater: its own stars only


def test_the_rater_split_is_clip_disjoint_too(prior_dir):
    from rlmusic.feedback.judgements import prepare, split_rows

    tokens = melodies(30)
    q = rising(tokens)
    rows = [r for k in range(4) for r in star_rows_for(tokens, q + k, f"r{k}", 0, start_id=100 * k)]
    data = prepare(rows, [], "half")
    s_tr, s_te, _, _, used = split_rows(data, "rater", 0.25, seed=0)
    assert used == "rater" and len(s_te) == 30  # one of four raters held out
    assert not set(data.star_idx[s_tr]) & set(data.star_idx[s_te])  # no test melody in training
    assert {data.star_rater[i] for i in s_tr}.isdisjoint({data.star_rater[i] for i in s_te})
    clip_tr, clip_te, *_ = split_rows(data, "clip", 0.25, seed=0)
    assert not set(data.star_idx[clip_tr]) & set(data.star_idx[clip_te])


@pytest.mark.statistical
def test_ood_is_about_one_for_rated_melodies_and_large_far_from_them(prior_dir, record_property):
    """120 rated melodies and raters who use four star levels: with 60 and two levels (top or
    bottom half) the ramp scored -0.40-0.92 on 5 of test seeds 0-19 (its score is extrapolation
    from a step-like fit) and far / median came down to 3.05; now over seeds 0-19 the ramp
    scores 1.14-2.77 and far / median is 3.69 or more. Over test seeds 0-4: median ood of
    like-rated 0.945-1.007, far / median 3.95-7.34, ramp score 1.78-2.16."""
    tokens = melodies(120, seed=seed(3))
    q = rising(tokens)
    stars = star_rows_for(tokens, q, "a", 0, scale=4) + star_rows_for(tokens, q, "b", 1, scale=4, start_id=1000)
    model = fit_reward_model(stars, [], prior_dir, RewardModelConfig(**FAST, seed=seed(0)))
    like_rated = model.ood(melodies(40, seed=seed(4)))  # new melodies drawn like the rated ones
    ramp = np.full((1, 16), Vocabulary.HOLD)
    ramp[0, ::2] = np.linspace(2, 38, 8).round()  # 48 -> 84 in eighths: nothing like the rated
    far = model.ood(ramp)[0]
    record_property("median_ood_like_rated", round(float(np.median(like_rated)), 4))
    record_property("far_over_median", round(float(far / np.median(like_rated)), 4))
    record_property("ramp_score", round(float(model.score(ramp)[0]), 4))
    assert 0.5 < np.median(like_rated) < 2.0
    assert far > 3 * np.median(like_rated), far
    assert model.score(ramp)[0] > 1  # the reward model likes it: extrapolation the guard must catch
