"""The shipped VAE's latent as reward-model features (``features = "vae"``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from seeding import seed

from rlmusic.feedback.features import feature_names, melody_features, shipped_vae, vae_features
from rlmusic.feedback.fit import RewardModelConfig, fit_reward_model
from rlmusic.feedback.reward_model import load_reward_model, prior_fingerprint
from rlmusic.feedback.simulate import make_raters, taste_score
from rlmusic.models.checkpoint import load_model
from rlmusic.models.generate import sample_tokens
from rlmusic.models.vae import default_vae_dir

TASTE = "pitch"  # the share of C, E and G among the notes (contour and ending: at chance with 160 stars)


def test_vae_features_average_the_windows_of_a_melody():
    vae = shipped_vae()
    w = vae.config.window
    melodies = sample_tokens(load_model(), 3, 2 * w + 5, seed=0)  # two whole windows and a partial one
    feats = vae_features(melodies)
    assert feats.shape == (3, vae.config.latent_dim) and feats.dtype == np.float32
    padded = np.full((3, 3 * w), vae.vocab.REST)
    padded[:, : 2 * w + 5] = melodies
    per_window = vae.posterior_mean(torch.as_tensor(padded.reshape(9, w))).view(3, 3, -1).mean(1)
    np.testing.assert_allclose(feats, per_window.numpy(), atol=1e-5)
    both = melody_features(load_model(), melodies, "vae+stats")
    assert both.shape[1] == len(feature_names(256, "vae+stats")) == vae.config.latent_dim + 16


@pytest.mark.statistical
def test_a_reward_model_on_vae_features_learns_a_taste_and_reloads(tmp_path, record_property):
    """Over test seeds 0-4: held-out star-pair accuracy 0.78-0.93 (0.76-0.89 on seeds 5-9)."""
    prior = load_model()
    clips = sample_tokens(prior, 120, 32, seed=seed(5))
    values = taste_score(clips, TASTE)
    rng = np.random.default_rng(seed(0))
    stars = []
    for rater in make_raters(4, TASTE, 0.3, seed=seed(0)):
        idx = rng.choice(120, 40, replace=False)
        for i, s in zip(idx, rater.stars(values[idx], rng)):
            stars.append({"rating_id": len(stars), "clip_id": int(i), "rater": rater.name, "stars": int(s),
                          "tokens": clips[i].tolist()})
    model = fit_reward_model(stars, [], prior, RewardModelConfig(features="vae", epochs=150, ensemble=2,
                                                                    seed=seed(0)))
    record_property("star_pair_accuracy", round(float(model.metrics["star_pair_accuracy"]), 4))
    assert model.metrics["star_pair_accuracy"] > 0.65, model.metrics  # held-out clips (chance 0.5)
    loaded = load_reward_model(model.save(tmp_path / "rm"))
    np.testing.assert_allclose(loaded.score(clips[:8]), model.score(clips[:8]), atol=1e-5)
    meta = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert meta["features"]["vae_fingerprint"] == prior_fingerprint(default_vae_dir())
    meta["features"]["vae_fingerprint"] = "0" * 16  # as if the shipped VAE had been retrained since the fit
    (tmp_path / "rm" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="fitted on the latent of another VAE than the one shipped now"):
        load_reward_model(tmp_path / "rm")
    with pytest.raises(ValueError, match="features must be one of"):
        RewardModelConfig(features="vae+prior").validate()
