import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy

from envs.melody import BatchedMelodyVecEnv
from rlmusic.cli.main import main as cli_main
from rlmusic.models.checkpoint import load_model, load_provenance, save_model
from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.music.representation import Vocabulary, load_midi, midi_to_tokens
from rlmusic.tuning.callbacks import KLControl, KLController
from rlmusic.tuning.config import TuneConfig
from rlmusic.tuning.policy import fast_process_sequence, policy_log_probs
from rlmusic.tuning.run import TuneRun

DATA = Path(__file__).parent / "data"
TINY = dict(embed_dim=8, hidden_size=16, num_layers=2, max_steps=64)
SMOKE_TOML = """
steps = 16
n_envs = 4
n_steps = 16
batch_size = 32
n_epochs = 2
learning_rate = 1e-3
structure_weight = 1.0
eval_every = 64
eval_melodies = 8
checkpoint_every = 64
eval_corpus = ""

[theory]
key = "C major"
"""



@pytest.fixture
def prior_dir(tmp_path):
    torch.manual_seed(0)
    return save_model(MelodyLSTM(ModelConfig(**TINY, dropout=0.3)), tmp_path / "prior")


@pytest.fixture
def smoke_config(tmp_path):
    path = tmp_path / "tune.toml"
    path.write_text(SMOKE_TOML)
    return path


def run_cli(*args) -> int:
    return cli_main(["tune", "--device", "cpu", "--no-progress", "--threads", "1", *map(str, args)])


# --------------------------------------------------------------------------- the policy


def test_policy_starts_exactly_at_the_prior(prior_dir):
    """Before any update pi(. | history) == p_prior(. | history) on real melodies."""
    run = TuneRun(TuneConfig(steps=32, n_envs=2, n_steps=32, batch_size=16), prior_dir / "../unused",
                  prior_dir, device="cpu")
    model = run.make_model(run.make_env())
    prior = load_model(prior_dir)
    vocab = prior.vocab
    real = midi_to_tokens(load_midi(DATA / "melody.mid"), vocab)
    tokens = torch.as_tensor(np.stack([real[:48], real[48:96]]))
    tokens = torch.cat([tokens, prior.sample(3, 48, generator=torch.Generator().manual_seed(1))])
    got = policy_log_probs(model.policy, tokens)  # step by step, episode_starts at step 0
    want = torch.log_softmax(prior(prior.with_bos(tokens))[0], dim=-1)
    torch.testing.assert_close(got.exp(), want.exp(), atol=1e-5, rtol=0)
    # and the critic is a separate copy: value-loss gradients cannot move the actor
    assert model.policy.lstm_critic is not model.policy.lstm_actor
    assert model.policy.vf_features_extractor is not model.policy.pi_features_extractor
    tuned = model.policy.to_melody_lstm()
    for name, value in prior.state_dict().items():
        torch.testing.assert_close(tuned.state_dict()[name], value)


@pytest.mark.parametrize("starts_at_heads_only", [True, False])
def test_fast_process_sequence_equals_stock_loop(starts_at_heads_only):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(5, 7, num_layers=2)
    n_seq, length = 6, 9
    features = torch.randn(n_seq * length, 5)
    states = (torch.randn(2, n_seq, 7), torch.randn(2, n_seq, 7))
    starts = torch.zeros(n_seq, length)
    starts[[0, 2, 3], 0] = 1.0  # sequences that begin an episode
    if not starts_at_heads_only:
        starts[4, 5] = 1.0  # an episode start mid-sequence: the stock loop must run
    starts = starts.flatten()
    fast_out, (fh, fc) = fast_process_sequence(features, states, starts, lstm)
    out, (h, c) = RecurrentActorCriticPolicy._process_sequence(features, states, starts, lstm)
    torch.testing.assert_close(fast_out, out, atol=1e-5, rtol=0)
    torch.testing.assert_close(fh, h, atol=1e-5, rtol=0)
    torch.testing.assert_close(fc, c, atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- KL control


def test_kl_callback_subtracts_beta_log_pi_in_place(prior_dir):
    prior = load_model(prior_dir)
    env = BatchedMelodyVecEnv(prior, n_envs=3, steps=4, beta=0.5)
    env.reset()
    actions = np.array([2, 3, 1])  # two note onsets and a HOLD
    env.step(actions)
    cb = KLControl(env, KLController(None, 100))
    rewards = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    log_probs = torch.tensor([-1.0, -2.0, -0.5])
    cb.locals = {"rewards": rewards, "log_probs": log_probs, "dones": np.zeros(3, bool), "actions": actions}
    cb._on_rollout_start()
    assert cb._on_step()
    np.testing.assert_allclose(rewards, [1.5, 3.0, 3.25])  # the same array, changed in place
    want_kl = np.mean(log_probs.numpy() - env.batch.last_log_prior)
    assert cb._kl_sum / cb._count == pytest.approx(want_kl, abs=1e-6)  # per step
    assert cb._kl_sum / cb._onsets == pytest.approx(want_kl * 3 / 2, abs=1e-6)  # per note onset


def test_adaptive_controller_moves_beta_toward_target():
    fixed = KLController(None, 100)
    assert fixed.update(0.1, kl=5.0, n_episodes=50) == 0.1
    ctl = KLController(target=0.5, horizon=100)
    assert ctl.update(0.1, kl=1.0, n_episodes=50) == pytest.approx(0.1 * (1 + 0.2 * 0.5))  # clipped at +0.2
    assert ctl.update(0.1, kl=0.45, n_episodes=50) == pytest.approx(0.1 * (1 - 0.1 * 0.5))
    assert ctl.update(0.1, kl=0.0, n_episodes=100) == pytest.approx(0.08)


# --------------------------------------------------------------------------- the command


def test_tune_smoke_writes_a_loadable_tuned_model(prior_dir, smoke_config, tmp_path):
    out = tmp_path / "tuned"
    assert run_cli("--prior", prior_dir, "--out", out, "--config", smoke_config, "--timesteps", 128) == 0
    model = load_model(out)
    prov = load_provenance(out)
    assert prov.kind == "tuned" and prov.parent_model == str(prior_dir)
    assert prov.extra["tune_config"]["steps"] == 16 and prov.extra["timesteps"] == 128
    env = prov.environment  # what it was trained with: packages, CPU, torch's kernels
    assert env["packages"]["torch"] == torch.__version__ and env["cpu"] and env["torch_cpu_capability"]
    assert model.config == load_model(prior_dir).config
    assert json.loads((out / "tune_config.json").read_text())["config"]["n_envs"] == 4
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    for column in ("kl/per_step", "kl/per_note", "reward/theory", "reward/structure", "reward/kl_penalty",
                   "reward_share/theory", "kl/beta", "losses/value_loss"):
        assert column in header
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [e["timesteps"] for e in evals] == [0, 64, 128]
    assert evals[0]["kl_per_step"] == pytest.approx(0.0, abs=1e-6)  # starts at the prior
    assert evals[-1]["kl_per_step"] > 0  # and moved (lr 1e-3)
    assert evals[-1]["kl_per_note"] > evals[-1]["kl_per_step"]  # fewer onsets than steps
    assert any((out / "tb").iterdir())
    # the tuned model is a model directory like the prior: generate takes it
    gen = tmp_path / "clips"
    assert cli_main(["generate", "--model", str(out), "-n", "2", "--steps", "16", "--out", str(gen),
                     "--device", "cpu"]) == 0
    assert len((gen / "manifest.jsonl").read_text().splitlines()) == 2


def test_killed_run_resumes_and_finishes_at_the_same_total(prior_dir, smoke_config, tmp_path):
    out = tmp_path / "run"
    args = ("--prior", prior_dir, "--out", out, "--config", smoke_config, "--timesteps", 192)
    assert run_cli(*args, "--stop-after-checkpoints", 1) == 0  # "killed" after the first checkpoint
    assert not (out / "model.safetensors").exists()
    assert [p.name for p in (out / "checkpoints").glob("*.zip")] == ["step_0000000064.zip"]
    assert run_cli(*args) == 1  # refuses to overwrite a run without --resume/--force
    assert run_cli(*args, "--resume") == 0
    prov = load_provenance(out)
    assert prov.extra["timesteps"] == 192
    evals = [json.loads(line)["timesteps"] for line in (out / "eval.jsonl").read_text().splitlines()]
    assert evals == [0, 64, 128, 192]  # no duplicates from the killed part


def test_lr_decay_falls_to_zero_and_a_resumed_run_goes_on_down_the_same_line(prior_dir, smoke_config, tmp_path):
    from rlmusic.tuning.curves import read_csv

    config = tmp_path / "decay.toml"
    config.write_text("lr_decay = true\n" + Path(smoke_config).read_text())
    out = tmp_path / "run"
    args = ("--prior", prior_dir, "--out", out, "--config", config, "--timesteps", 256)
    assert run_cli(*args, "--stop-after-checkpoints", 1) == 0
    assert run_cli(*args, "--resume") == 0
    start = json.loads((out / "tune_config.json").read_text())["config"]["learning_rate"]
    rates = [r["charts/learning_rate"] for r in read_csv(out / "metrics.csv") if r.get("charts/learning_rate") is not None]
    # four rollouts of 64 env steps: each update's rate is start * (share of the run still to go)
    quarters = [4 * r / start for r in rates]
    assert len(rates) >= 3 and quarters == pytest.approx([round(q) for q in quarters])  # on the line
    assert all(a > b for a, b in zip(rates, rates[1:])) and rates[-1] == 0  # down to 0, through the resume
    assert (out / "model.safetensors").is_file()


# --------------------------------------------------------------------------- bad input, before training


@pytest.mark.parametrize(
    "toml, match",
    [
        ("stepz = 32\n", r"unknown tune config keys \['stepz'\]; valid: .*'steps'"),
        ("structure_weight = -1.0\n", "structure_weight must be >= 0"),
        ("diversity_memory = -5\n", "diversity_memory must be >= 0, got -5"),
        ("beta = -0.1\n", "beta must be >= 0"),
        ("[theory]\nin_kee = 1.0\n", "unknown theory config key 'in_kee'"),
        ("[theory]\nin_key = -1.0\n", "must be >= 0"),
        ("steps = 16\nn_steps = 24\n", "multiple of steps"),
        ("min_pitch = 60\nmax_pitch = 72\n", "pitches"),
        ("steps = 128\n", "exceeds the prior's max_steps=64"),
        ("target_kl_per_step = -0.5\n", "target_kl_per_step"),
        ("target_kl_per_note = 0.5\n", r"unknown tune config keys \['target_kl_per_note'\]"),
        ("n_envs = nan\n", "n_envs must be finite"),
        ("learning_rate = \"fast\"\n", "learning_rate must be a number"),
        # NaN or a wrong type anywhere in the file: one line before anything trains
        ("beta = nan\n", "beta must be finite"),
        ("timesteps = inf\n", "timesteps must be finite"),
        ("seed = 1.5\n", "seed must be a whole number"),
        ("steps = true\n", "steps must be a number, got True"),
        ("eval_corpus = 3\n", "eval_corpus must be a corpus name"),
        ("target_kl_per_step = nan\n", "target_kl_per_step must be finite"),
        ("[theory]\nmotif = nan\n", "weight of rule 'motif' must be a finite number"),
        ("[theory]\nleap = \"7\"\n", "theory setting leap must be a whole number, got '7'"),
        ("[theory]\nmotif_length = nan\n", "theory setting motif_length must be a whole number"),
        ("[guard]\nclip = nan\n", "guard clip must be a finite number, got nan"),
        ("[guard]\nmax_kl_per_step = \"x\"\n", "guard max_kl_per_step must be a finite number"),
        ("[guard]\npatience = 1.5\n", "guard patience must be a whole number"),
        ("[guard]\nrunning_norm = \"yes\"\n", "guard running_norm must be true or false"),
    ],
)
def test_bad_config_fails_before_training(prior_dir, tmp_path, capsys, toml, match):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    out = tmp_path / "out"
    assert run_cli("--prior", prior_dir, "--out", out, "--config", path) == 1
    err = capsys.readouterr().err
    assert "rlmusic tune: error:" in err
    import re

    assert re.search(match, err), err
    assert not out.exists()  # nothing written, nothing trained


def test_force_allows_longer_melodies_than_the_prior_saw(prior_dir, tmp_path):
    config = TuneConfig(steps=128, n_envs=2, batch_size=16)
    with pytest.raises(ValueError, match="--force"):
        TuneRun(config, tmp_path / "a", prior_dir, device="cpu")
    run = TuneRun(config, tmp_path / "b", prior_dir, device="cpu", force=True)
    assert run.config.steps == 128


def test_config_loads_toml_and_json(tmp_path, smoke_config):
    config = TuneConfig.from_file(smoke_config)
    assert config.steps == 16 and config.theory == {"key": "C major"}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(asdict(config)))
    assert TuneConfig.from_file(path) == config
    assert config.total_timesteps == 100_032  # 100_000 rounded up to whole rollouts of 16*4 steps
    with pytest.raises(FileNotFoundError):
        TuneConfig.from_file(tmp_path / "missing.toml")


def test_tune_with_a_reward_model_pays_the_human_term(prior_dir, smoke_config, tmp_path):
    from rlmusic.feedback.fit import RewardModelConfig, fit_reward_model

    prior = load_model(prior_dir)
    tokens = prior.sample(40, 16, generator=torch.Generator().manual_seed(3)).numpy()
    rows = [{"rating_id": i + 1, "clip_id": i + 1, "rater": f"r{i % 2}", "stars": 1 + int(t[0]) % 5,
             "tokens": t.tolist()} for i, t in enumerate(tokens)]
    rm_dir = fit_reward_model(rows, [], prior_dir, RewardModelConfig(ensemble=2, epochs=20, min_ratings=10),
                              evaluate=False).save(tmp_path / "rm")
    out = tmp_path / "tuned"
    assert run_cli("--prior", prior_dir, "--out", out, "--config", smoke_config, "--timesteps", 64,
                   "--reward-model", rm_dir) == 0
    prov = load_provenance(out)
    assert prov.reward_model == str(rm_dir)
    assert prov.ratings == list(range(1, 41)) and prov.extra["comparisons"] == []  # which ratings made it
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "reward/human" in header and "guard/kl_per_step" in header
    assert (out / "guard.json").is_file()


def test_the_rl_tuner_theory_reward_is_magentas_step_by_step_and_on_any_history():
    from rlmusic.music.rl_tuner_rewards import (
        rl_tuner_step_reward_components,
        rl_tuner_step_rewards,
    )
    from rlmusic.tuning.rewards import build_rewards

    vocab = Vocabulary()
    tokens = np.random.default_rng(0).integers(0, vocab.size, (5, 32))
    exact = build_rewards(TuneConfig(theory_rules="rl_tuner"), vocab, None).theory
    stepped = np.stack([exact(tokens[:, :t], tokens[:, t]) for t in range(32)], axis=1)  # as the env calls it
    np.testing.assert_array_equal(stepped, rl_tuner_step_rewards(tokens))
    assert exact(tokens[:, :7], tokens[:, 7]) == pytest.approx(rl_tuner_step_rewards(tokens)[:, 7])  # out of order
    scaled = build_rewards(TuneConfig(theory_rules="rl_tuner", rl_tuner={"high_low_unique": 3.0}), vocab, None).theory
    got = np.stack([scaled(tokens[:, :t], tokens[:, t]) for t in range(32)], axis=1)
    parts = rl_tuner_step_reward_components(tokens)
    np.testing.assert_allclose(got, sum((3.0 if k == "high_low_unique" else 1.0) * v for k, v in parts.items()))
    with pytest.raises(ValueError, match="unknown RL Tuner reward component 'tonicc'"):
        build_rewards(TuneConfig(theory_rules="rl_tuner", rl_tuner={"tonicc": 1.0}), vocab, None)
    with pytest.raises(ValueError, match="apply to theory_rules = 'rl_tuner' only"):
        build_rewards(TuneConfig(rl_tuner={"tonic": 2.0}), vocab, None)
