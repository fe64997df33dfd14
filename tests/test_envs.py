import gymnasium
import numpy as np
import pytest
import torch

import envs
from envs.melody import BatchedMelodyVecEnv, MelodyEnv
from rlmusic.models.checkpoint import save_model
from rlmusic.models.lstm import MelodyLSTM, ModelConfig

TINY = dict(embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0, max_steps=64)



@pytest.fixture
def prior():
    torch.manual_seed(0)
    return MelodyLSTM(ModelConfig(**TINY)).eval()


@pytest.fixture
def prior_dir(prior, tmp_path):
    return save_model(prior, tmp_path / "prior")


def count_rhythm(histories, next_tokens):
    """A stand-in theory reward: +1 for a HOLD."""
    return (np.asarray(next_tokens) == 1).astype(float)


def final_len(tokens):
    return {"structure": np.full(len(tokens), 0.5), "novelty": tokens[:, 0].astype(float) / 100}


class FixedReward:
    def __init__(self):
        self.seen = []

    def score(self, tokens):
        self.seen.append(tokens.copy())
        return np.arange(len(tokens), dtype=float)


def test_checkers_pass(prior_dir):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(MelodyEnv(prior=prior_dir, steps=6, theory_reward=count_rhythm, final_reward=final_len))
    sb3_check_env(MelodyEnv(prior=prior_dir, steps=6, theory_reward=count_rhythm), warn=False)


def test_registered_and_make_works(prior_dir):
    envs.register_envs()
    envs.register_envs()  # idempotent
    assert envs.ENV_ID in gymnasium.registry
    env = gymnasium.make(envs.ENV_ID, prior=prior_dir, steps=4)
    obs, _ = env.reset(seed=0)
    vocab = env.unwrapped.batch.vocab
    assert obs == vocab.BOS
    assert env.action_space.n == vocab.size and env.observation_space.n == vocab.input_size


def test_episode_rewards_terms_and_log_prior(prior):
    beta, steps = 0.3, 7
    rm = FixedReward()
    env = MelodyEnv(prior=prior, steps=steps, theory_reward=count_rhythm, final_reward=final_len,
                    reward_model=rm, theory_weight=2.0, human_weight=5.0, beta=beta)
    env.reset(seed=0)
    melody = [10, 1, 1, 0, 12, 1, 14]
    infos = []
    for t, a in enumerate(melody):
        obs, r, terminated, truncated, info = env.step(a)
        assert obs == a and not truncated and terminated == (t == steps - 1)
        assert r == pytest.approx(sum(info["reward_terms"].values()), abs=1e-5)
        infos.append(info)
    want = prior.log_probs(torch.tensor([melody]))[0].numpy()
    got = np.array([i["log_prior"] for i in infos])
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose([i["reward_terms"]["log_prior"] for i in infos], beta * want, atol=1e-5)
    assert [i["reward_terms"]["theory"] for i in infos] == [2.0 * (a == 1) for a in melody]
    assert all(set(i["reward_terms"]) == {"theory", "log_prior"} for i in infos[:-1])
    last = infos[-1]["reward_terms"]
    assert last["structure"] == 0.5 and last["novelty"] == pytest.approx(0.1)
    assert last["human"] == 0.0  # 5.0 * score 0 for the first (only) melody
    np.testing.assert_array_equal(rm.seen[0], [melody])
    np.testing.assert_array_equal(infos[-1]["melody"], melody)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(3)


def test_vecenv_matches_single_envs_and_autoresets(prior):
    n, steps = 3, 5
    vec = BatchedMelodyVecEnv(prior, n_envs=n, steps=steps, theory_reward=count_rhythm,
                              final_reward=final_len, beta=0.2)
    singles = [MelodyEnv(prior=prior, steps=steps, theory_reward=count_rhythm, final_reward=final_len, beta=0.2)
               for _ in range(n)]
    obs = vec.reset()
    assert (obs == prior.vocab.BOS).all()
    for s in singles:
        s.reset()
    rng = np.random.default_rng(0)
    for t in range(2 * steps):
        actions = rng.integers(0, prior.vocab.size, n)
        obs, rewards, dones, infos = vec.step(actions)
        want = [s.step(int(a)) for s, a in zip(singles, actions)]
        np.testing.assert_allclose(rewards, [w[1] for w in want], atol=1e-5)
        end = t % steps == steps - 1
        assert dones.tolist() == [end] * n
        if end:
            assert (obs == prior.vocab.BOS).all()  # auto-reset
            for i, info in enumerate(infos):
                assert info["terminal_observation"] == actions[i]
                assert info["episode"]["l"] == steps
                assert info["reward_terms"]["structure"] == 0.5
            for s in singles:
                s.reset()
        else:
            np.testing.assert_array_equal(obs, actions)


def test_vecenv_one_prior_forward_per_step(prior):
    calls = []
    prior.lstm.register_forward_hook(lambda module, inp, out: calls.append(inp[0].shape))
    vec = BatchedMelodyVecEnv(prior, n_envs=8, steps=6)
    calls.clear()  # the BOS forward is done once, at construction
    vec.reset()
    for _ in range(12):  # two melodies per env
        vec.step(np.zeros(8, dtype=np.int64))
    assert len(calls) == 2 * 5  # steps - 1 forwards per melody, all 8 envs in each
    assert all(shape[0] == 8 for shape in calls)


def test_beta_is_shared_and_validated(prior):
    vec = BatchedMelodyVecEnv(prior, n_envs=2, steps=3, beta=0.1)
    vec.reset()
    vec.beta = 0.5
    assert vec.get_attr("beta") == [0.5, 0.5]
    vec.set_attr("beta", 0.25)
    vec.step(np.array([2, 3]))
    np.testing.assert_allclose(vec.batch.last_terms["log_prior"], 0.25 * vec.batch.last_log_prior)
    with pytest.raises(ValueError, match="beta"):
        vec.beta = -1.0
    with pytest.raises(ValueError, match="actions"):
        vec.step(np.array([0, prior.vocab.size]))


def test_gymnasium_make_from_a_fresh_interpreter(prior_dir):
    """After install, Gymnasium finds the env by itself through the module prefix."""
    import subprocess
    import sys

    code = (f"import gymnasium; env = gymnasium.make('envs:rlmusic/Melody-v0', prior={str(prior_dir)!r}, "
            "steps=3); obs, _ = env.reset(seed=0); print(env.unwrapped.spec.id, obs)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == "rlmusic/Melody-v0"
