"""The reward model fine-tuned from the prior's LSTM (``rlmusic.feedback.finetuned``,
``reward fit --model finetuned|auto``): which weights train, the saved directory, the
guard over it, the choice ``auto`` makes, and that it learns a taste from stars (and
nothing from the same stars shuffled). Then each rater's own model
(``rlmusic.feedback.personal``, ``reward fit --rater``)."""

import math

import numpy as np
import pytest
import torch
from seeding import seed
from test_reward_model import melodies, rising, star_rows_for

from rlmusic.feedback.fit import RewardModelConfig, fit_reward_model, heldout_accuracy
from rlmusic.feedback.guard import GuardedRewardModel
from rlmusic.feedback.judgements import spearman
from rlmusic.feedback.reward_model import FinetunedRewardModel, load_reward_model
from rlmusic.feedback.simulate import make_raters, taste_score
from rlmusic.models.checkpoint import load_model, save_model
from rlmusic.models.generate import sample_tokens
from rlmusic.models.lstm import MelodyLSTM, ModelConfig

FAST_HEADS = dict(ensemble=3, epochs=150)
TWO_LAYERS = dict(embed_dim=8, hidden_size=16, num_layers=2, max_steps=64, dropout=0.0)


@pytest.fixture(scope="module")
def prior2(tmp_path_factory):
    torch.manual_seed(seed(0))
    return save_model(MelodyLSTM(ModelConfig(**TWO_LAYERS)), tmp_path_factory.mktemp("ft") / "prior")


def rising_rows(n: int = 120):
    tokens = melodies(n, steps=16, seed=seed(0))
    return tokens, star_rows_for(tokens, rising(tokens), "ann", 0, scale=4)


def test_top_layer_training_keeps_the_rest_of_the_prior_and_reloads_with_the_same_scores(prior2, tmp_path):
    tokens, rows = rising_rows()
    config = RewardModelConfig(model="finetuned", ensemble=2, finetune_epochs=3, seed=seed(0))
    model = fit_reward_model(rows, [], prior2, config)
    assert isinstance(model, FinetunedRewardModel)
    assert model.meta["head"] == {"kind": "finetuned", "ensemble": 2, "hidden": 32, "n_features": 49,  # 2 x 16 + 1 + 16 statistics
                                  "layers": "top", "stats": True}
    prior, scorer = load_model(prior2), model.head
    assert torch.equal(scorer.embedding.weight, prior.embedding.weight)  # frozen
    assert torch.equal(scorer.bottom.weight_hh_l0, prior.lstm.weight_hh_l0)  # frozen
    for member in scorer.members:  # each member's top layer started at the prior's and moved
        assert not torch.equal(member["lstm"].weight_hh_l0, prior.lstm.weight_hh_l1)
        assert (member["lstm"].weight_hh_l0 - prior.lstm.weight_hh_l1).abs().max() < 0.5
    assert not torch.equal(scorer.members[0]["lstm"].weight_hh_l0, scorer.members[1]["lstm"].weight_hh_l0)
    assert model.head_scores(tokens[:5]).shape == (2, 5)

    model.save(tmp_path / "rm")
    loaded = load_reward_model(tmp_path / "rm")
    assert isinstance(loaded, FinetunedRewardModel)
    np.testing.assert_allclose(loaded.score(tokens), model.score(tokens), atol=1e-5)
    # the out-of-distribution measure reads the frozen features, as for the frozen model
    assert loaded.ood(tokens).max() < 0.01  # a rated melody is its own nearest rated melody
    fresh = loaded.ood(melodies(40, steps=16, seed=seed(0) + 1))
    assert 0.3 < np.median(fresh) < 3.0
    guarded = GuardedRewardModel(loaded)
    assert guarded.score(tokens[:4]).shape == (4,)


def test_all_layers_training_gives_each_member_its_own_embedding(prior2):
    _, rows = rising_rows(60)
    config = RewardModelConfig(model="finetuned", ensemble=2, finetune_epochs=2, finetune_layers="all",
                               features="prior", seed=seed(0))
    model = fit_reward_model(rows, [], prior2, config)
    prior, scorer = load_model(prior2), model.head
    assert model.meta["head"]["layers"] == "all" and model.meta["head"]["stats"] is False
    assert scorer.embedding is None and scorer.bottom is None
    for member in scorer.members:
        assert not torch.equal(member["embedding"].weight, prior.embedding.weight)
        assert not torch.equal(member["lstm"].weight_hh_l0, prior.lstm.weight_hh_l0)


def test_auto_keeps_the_better_held_out_accuracy_and_records_both(prior2):
    _, rows = rising_rows()
    model = fit_reward_model(rows, [], prior2, RewardModelConfig(ensemble=2, finetune_epochs=3, seed=seed(0)))
    auto = model.metrics["auto"]
    accuracy = {k: auto[k]["heldout_accuracy"] for k in ("frozen", "finetuned")}
    assert all(0 <= a <= 1 for a in accuracy.values())
    kept = auto["kept"]
    assert model.meta["head"]["kind"] == kept
    assert accuracy[kept] >= max(accuracy.values())
    assert heldout_accuracy({"pairwise_accuracy": 0.8, "n_test_pairs": 10, "star_pair_accuracy": 0.5,
                             "n_test_star_pairs": 30}) == pytest.approx(0.575)
    assert heldout_accuracy({"pairwise_accuracy": float("nan"), "n_test_pairs": 0}) == -float("inf")


@pytest.mark.parametrize("key, value, says", [
    ("model", "huge", "model must be one of ['frozen', 'finetuned', 'auto'], got 'huge'"),
    ("finetune_layers", "middle", "finetune_layers must be one of ['top', 'all'], got 'middle'"),
    ("finetune_epochs", 0, "finetune_epochs must be >= 1, got 0"),
    ("finetune_lr", 0.0, "finetune_lr must be > 0, got 0.0"),
])
def test_bad_finetune_settings_are_refused_in_one_line(key, value, says):
    with pytest.raises(ValueError) as err:
        RewardModelConfig(**{key: value}).validate()
    assert str(err.value) == says


def taste_rows(tokens: np.ndarray, taste: str, shuffle: bool, run_seed: int) -> list[dict]:
    """100 star ratings by each of 4 simulated raters of ``taste`` (noise 0.5), or the same
    stars shuffled among the rated clips."""
    rng = np.random.default_rng(run_seed)
    rows = []
    for rater in make_raters(4, taste, 0.5, run_seed):
        idx = rng.choice(len(tokens), 100, replace=False)
        stars = rater.stars(taste_score(tokens[idx], taste), rng)
        rows += [{"rating_id": len(rows), "clip_id": int(i), "rater": rater.name, "stars": int(s),
                  "tokens": tokens[i].tolist()} for i, s in zip(idx, stars)]
    if shuffle:
        for row, stars in zip(rows, rng.permutation([r["stars"] for r in rows])):
            row["stars"] = int(stars)
    return rows


@pytest.mark.statistical
@pytest.mark.parametrize("shuffle", [False, True])
def test_the_finetuned_model_learns_a_taste_from_stars_and_nothing_from_shuffled_stars(shuffle, record_property):
    """The shipped prior's top layer fine-tuned on 400 stars of the pitch taste (the share of
    C, E and G; raters' noise 0.5 stars): held-out star-pair accuracy well above chance; with
    the same stars shuffled among the clips, near chance (the assertion that passes on real
    stars fails on shuffled ones).

    Measured over test seeds 0-4 (scripts/test_seeds.sh 5, at a079662): real stars 0.59-0.79
    (0.719, 0.792, 0.664, 0.592, 0.759), shuffled 0.42-0.50; the bar 0.56 sits 0.03 under the
    one and 0.06 over the other."""
    prior = load_model()
    tokens = sample_tokens(prior, 200, 32, seed=seed(0))
    rows = taste_rows(tokens, "pitch", shuffle, seed(0))
    config = RewardModelConfig(model="finetuned", ensemble=2, seed=seed(0))
    model = fit_reward_model(rows, [], prior, config)
    accuracy = model.metrics["star_pair_accuracy"]
    record_property("star_pair_accuracy", accuracy)
    record_property("epochs_kept", model.metrics["finetune_epochs_kept"])
    if shuffle:
        assert accuracy < 0.56
    else:
        assert accuracy > 0.56


# --------------------------------------------------------------------------- personal models


def opposed_rows(tokens: np.ndarray, n_per_rater: int, start: int = 0) -> list[dict]:
    """Three raters who like rising melodies and three who like falling ones (stars 1-5
    from the rank of last-minus-first, each on their own random clips)."""
    rng = np.random.default_rng(seed(0) + start)
    quality, rows = rising(tokens), []
    for k in range(6):
        idx = rng.choice(len(tokens), n_per_rater, replace=False)
        q = quality[idx] if k < 3 else -quality[idx]
        rows += star_rows_for(tokens[idx], q, f"{'lover' if k < 3 else 'hater'}{k % 3}", 0, scale=5,
                              start_id=start + len(rows) + 1)
    return rows


def test_with_none_of_a_raters_judgements_the_personal_model_is_the_population_model(prior2):
    from rlmusic.feedback.personal import fit_personal

    tokens = melodies(150, steps=16, seed=seed(0))
    rows = opposed_rows(tokens, 40)
    population = fit_reward_model(rows, [], prior2, RewardModelConfig(model="frozen", **FAST_HEADS))
    personal = fit_personal(population, rows, [], "somebody-else")
    assert personal.meta["personal"]["shrink"] == float("inf") and personal.meta["personal"]["n_ratings"] == 0
    assert personal.head is population.head
    np.testing.assert_array_equal(personal.score(tokens), population.score(tokens))


@pytest.mark.statistical
def test_a_rater_against_the_crowd_gets_a_model_of_their_own(prior2, tmp_path, record_property):
    """Lovers and haters of rising melodies cancel in the population model; a hater's own
    model, shrunk toward it, predicts the hater's judgements of fresh melodies.

    Measured over test seeds 0-4: Spearman with the hater's taste on fresh melodies 0.77-0.91
    for the personal model (shrink 0.01-1 chosen), -0.04 to 0.18 for the population's."""
    from rlmusic.feedback.personal import fit_personal

    tokens = melodies(300, steps=16, seed=seed(0))
    rows = opposed_rows(tokens, 80)
    population = fit_reward_model(rows, [], prior2, RewardModelConfig(model="frozen", **FAST_HEADS))
    personal = fit_personal(population, rows, [], "hater0")
    assert math.isfinite(personal.meta["personal"]["shrink"]) and personal.meta["personal"]["n_ratings"] == 80
    fresh = melodies(200, steps=16, seed=seed(0) + 7)
    falling = -rising(fresh)

    def agreement(model) -> float:  # Spearman of the model's scores with the hater's taste
        return spearman(model.score(fresh), falling)

    record_property("personal", agreement(personal))
    record_property("population", agreement(population))
    record_property("shrink", personal.meta["personal"]["shrink"])
    assert agreement(personal) > 0.5
    assert abs(agreement(population)) < 0.3
    personal.save(tmp_path / "mine")
    np.testing.assert_allclose(load_reward_model(tmp_path / "mine").score(fresh), personal.score(fresh), atol=1e-5)
