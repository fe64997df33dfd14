"""The style critic (the adversarial reward): its log-odds is an end-of-melody term, it is
refreshed on every rollout, and in a tiny tuning run its accuracy falls as the policy moves
toward the corpus."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from seeding import seed

from rlmusic.corpus.cache import load_corpus
from rlmusic.models.checkpoint import Provenance, load_provenance, save_model
from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.models.windows import melody_windows
from rlmusic.music.context import Key, RuleContext
from rlmusic.music.metrics import music_theory_metrics
from rlmusic.music.representation import DEFAULT_VOCAB
from rlmusic.tuning.config import TuneConfig
from rlmusic.tuning.critic import STATE_FILE, CriticConfig
from rlmusic.tuning.curves import read_csv
from rlmusic.tuning.run import TuneRun

STEPS = 16
CRITIC = {"hidden": 32, "lr": 3e-3, "init_steps": 100, "refresh_steps": 8}


@pytest.fixture
def noise_prior(tmp_path):
    """An untrained prior (near-uniform tokens: far from any corpus) that names the Irish
    corpus as its training corpus, so the critic takes its real melodies from there."""
    torch.manual_seed(seed(0))
    model = MelodyLSTM(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0, max_steps=64))
    return save_model(model, tmp_path / "prior", Provenance(corpus="irish-p48-84-all-v1"))


def config(**overrides) -> TuneConfig:
    base = dict(steps=STEPS, n_envs=16, n_steps=64, batch_size=256, n_epochs=4, learning_rate=5e-3, beta=0.01,
                theory_weight=0.0, style_weight=1.0, timesteps=16_384, eval_every=0, eval_melodies=128,
                checkpoint_every=0, eval_corpus="", critic=CRITIC, seed=seed(0))
    return TuneConfig(**{**base, **overrides})


@pytest.mark.statistical
def test_critic_accuracy_falls_as_the_policy_approaches_the_corpus(noise_prior, tmp_path, record_property):
    run = TuneRun(config(), tmp_path / "run", noise_prior, device="cpu")
    assert run.train(progress=False) is not None
    rows = [r for r in read_csv(tmp_path / "run" / "metrics.csv") if "critic/accuracy" in r]
    acc = [r["critic/accuracy"] for r in rows]  # on each rollout's fresh samples, before training on them
    assert len(acc) == 16 and all("reward/style" in r for r in rows)
    record_property("critic_accuracy_first", round(acc[0], 3))
    record_property("critic_accuracy_last4", round(float(np.mean(acc[-4:])), 3))
    record_property("style_reward_gain", round(rows[-1]["reward/style"] - rows[0]["reward/style"], 3))
    assert acc[0] > 0.9  # noise is easy to tell from Irish tunes
    assert np.mean(acc[-4:]) < acc[0] - 0.1  # ... and harder once the policy has moved (it gets ~0.8)
    assert rows[-1]["reward/style"] > rows[0]["reward/style"] + 1.0  # the policy earns more log-odds
    # the policy moved toward the corpus: fewer notes out of C major / A minor, a corpus-like note density
    first, last = [json.loads(line) for line in (tmp_path / "run" / "eval.jsonl").read_text().splitlines()]
    real = melody_windows(load_corpus("irish", progress=False).split("valid"), STEPS, 16, min_notes=1)
    ctx = RuleContext(vocab=DEFAULT_VOCAB, key=Key.parse("C major"), steps=STEPS)
    real_notes = float((real >= 2).sum(1).mean())
    assert last["rlmusic/onsets_not_in_key"] < first["rlmusic/onsets_not_in_key"] / 2
    assert music_theory_metrics(real, ctx)["onsets_not_in_key"] < first["rlmusic/onsets_not_in_key"] / 4
    assert abs(last["notes_per_melody"] - real_notes) < abs(first["notes_per_melody"] - real_notes) - 2
    assert (tmp_path / "run" / STATE_FILE).is_file()
    saved = load_provenance(tmp_path / "run").extra["style_critic"]
    assert saved["corpus"] == "irish" and saved["updates"] == 100 + 16 * 8


def test_style_is_the_weighted_clipped_log_odds_at_the_last_step(noise_prior, tmp_path):
    run = TuneRun(config(style_weight=0.5, structure_weight=1.0, structure_shaping=False,
                         critic={**CRITIC, "clip": 0.01}),
                  tmp_path / "run", noise_prior, device="cpu")
    melodies = np.random.default_rng(0).integers(0, DEFAULT_VOCAB.size, (5, STEPS))
    terms = run.rewards.final(melodies)
    assert set(terms) == {"structure", "style"}
    odds = run.critic.log_odds(melodies)
    np.testing.assert_allclose(terms["style"], 0.5 * np.clip(odds, -0.01, 0.01))
    env = run.make_env()
    env.reset()
    for _ in range(STEPS):
        env.step_async(np.full(16, 2))
        _, rewards, dones, infos = env.step_wait()
    assert dones.all() and "style" in infos[0]["reward_terms"]


def test_no_critic_without_a_style_weight_and_bad_settings_raise(noise_prior, tmp_path):
    run = TuneRun(config(style_weight=0.0), tmp_path / "a", noise_prior, device="cpu")
    assert run.critic is None and "style" not in run.rewards.final(np.zeros((2, STEPS), dtype=np.int64))
    with pytest.raises(ValueError, match="style_weight must be a number >= 0"):
        TuneRun(config(style_weight=-1.0), tmp_path / "b", noise_prior, device="cpu")
    with pytest.raises(ValueError, match=r"unknown \[critic\] keys \['hiden'\]"):
        TuneRun(config(critic={"hiden": 3}), tmp_path / "c", noise_prior, device="cpu")
    with pytest.raises(ValueError, match=r"\[critic\] lr must be a positive number"):
        CriticConfig.from_dict({"lr": 0})
    bare = save_model(MelodyLSTM(ModelConfig(embed_dim=4, hidden_size=8, num_layers=1)), tmp_path / "bare")
    with pytest.raises(ValueError, match="names no corpus; set corpus in the \\[critic\\] table"):
        TuneRun(config(), tmp_path / "d", bare, device="cpu")
    assert "[critic]" in config().describe() and "style_weight = 1.0" in config().describe()


def test_a_resumed_run_continues_with_its_critic(noise_prior, tmp_path):
    short = config(timesteps=2048, critic={**CRITIC, "init_steps": 10, "refresh_steps": 2})
    run = TuneRun(short, tmp_path / "run", noise_prior, device="cpu")
    run.train(progress=False)
    saved = torch.load(tmp_path / "run" / STATE_FILE, weights_only=False)
    resumed = TuneRun(short.replace(timesteps=4096), tmp_path / "run", noise_prior, device="cpu", resume=True)
    assert resumed.critic.updates == saved["updates"] == 10 + 2 * 2 and resumed.critic.trained
    for name, value in saved["net"].items():
        torch.testing.assert_close(resumed.critic.net.state_dict()[name], value)
