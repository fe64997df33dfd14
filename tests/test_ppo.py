"""MelodyPPO's minibatches of whole melodies (rlmusic.tuning.ppo) against sb3-contrib's own."""

import pytest
import torch
from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer

from rlmusic.models.checkpoint import save_model
from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.tuning.config import TuneConfig
from rlmusic.tuning.ppo import EpisodeRolloutBuffer, MelodyPPO
from rlmusic.tuning.run import TuneRun, load_checkpoint

TINY = dict(embed_dim=8, hidden_size=16, num_layers=2, max_steps=64)
STEPS, N_ENVS, N_STEPS = 8, 4, 16  # a rollout: 4 envs x 2 melodies of 8 steps


@pytest.fixture
def run(tmp_path):
    torch.manual_seed(0)
    prior_dir = save_model(MelodyLSTM(ModelConfig(**TINY)), tmp_path / "prior")

    def make(batch_size: int, minibatches: str = "episodes", seed: int = 0) -> TuneRun:
        config = TuneConfig(steps=STEPS, n_envs=N_ENVS, n_steps=N_STEPS, batch_size=batch_size, n_epochs=1,
                            minibatches=minibatches, seed=seed, eval_every=0, checkpoint_every=0)
        tune = TuneRun(config, tmp_path / f"run-{batch_size}-{minibatches}-{seed}", prior_dir, device="cpu",
                       progress=False)
        tune.env = tune.make_env()
        tune.model = tune.make_model(tune.env)
        return tune

    return make


def rollout(tune: TuneRun) -> MelodyPPO:
    """One rollout collected into the model's buffer, nothing trained."""
    model = tune.model
    _, callback = model._setup_learn(N_STEPS * N_ENVS, None)
    callback.on_training_start(locals(), globals())
    assert model.collect_rollouts(tune.env, callback, model.rollout_buffer, n_rollout_steps=N_STEPS)
    return model


def minibatches(model: MelodyPPO, batch_size: int) -> list:
    return list(model.rollout_buffer.get(batch_size))


def test_minibatches_are_whole_melodies_unpadded_and_shuffled(run):
    tune = run(batch_size=16)
    model = rollout(tune)
    assert isinstance(model.rollout_buffer, EpisodeRolloutBuffer)
    orders = []
    for _ in range(4):  # four epochs
        batches = minibatches(model, 16)
        assert len(batches) == N_STEPS * N_ENVS // 16
        order = []
        for b in batches:
            assert bool(b.mask.all())  # nothing padded: 2 melodies of 8 steps each
            assert b.observations.shape[0] == 16
            starts = b.episode_starts.reshape(2, STEPS)
            assert starts[:, 0].tolist() == [1.0, 1.0] and not bool(starts[:, 1:].any())
            order.append(tuple(b.actions.flatten().long().tolist()))
        orders.append(order)
        # every step of the rollout exactly once per epoch
        seen = sorted(zip(torch.cat([b.actions.flatten() for b in batches]).tolist(),
                          torch.cat([b.returns for b in batches]).tolist()))
        buf = model.rollout_buffer
        assert seen == sorted(zip(buf.actions.flatten().tolist(), buf.returns.flatten().tolist()))
    assert len({tuple(o) for o in orders}) > 1  # each epoch draws a new order


@pytest.mark.parametrize("batch_size", [16, 12])
def test_minibatches_reproduce_the_rollouts_log_probs(run, batch_size):
    """Before any update the policy's log-probs over each minibatch equal those the rollout
    stored: the sequences start from the right LSTM states, melodies cut by a minibatch's
    edge (12 steps: one and a half melodies of 8) included, and the padding is masked out."""
    tune = run(batch_size=batch_size)
    model = rollout(tune)
    total = 0
    for b in minibatches(model, batch_size):
        _, log_prob, _ = model.policy.evaluate_actions(b.observations, b.actions.long().flatten(), b.lstm_states,
                                                       b.episode_starts)
        mask = b.mask > 1e-8
        torch.testing.assert_close(log_prob[mask], b.old_log_prob[mask], atol=1e-5, rtol=0)
        total += int(mask.sum())
    assert total == N_STEPS * N_ENVS


def test_contiguous_keeps_sb3_contribs_buffer_and_checkpoints_keep_the_choice(run, tmp_path):
    tune = run(batch_size=16, minibatches="contiguous")
    assert type(tune.model.rollout_buffer) is RecurrentRolloutBuffer
    assert tune.model.minibatches == "contiguous"
    for choice in ("contiguous", "episodes"):
        tune = run(batch_size=16, minibatches=choice)
        path = tmp_path / f"{choice}.zip"
        tune.model.save(path)
        loaded = load_checkpoint(path, tune.env, "cpu")
        assert loaded.minibatches == choice
        assert isinstance(loaded.rollout_buffer, EpisodeRolloutBuffer) == (choice == "episodes")


def test_same_seed_same_minibatches(run):
    first, second = (minibatches(rollout(run(batch_size=16, seed=3)), 16) for _ in range(2))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.actions, b.actions)


def test_minibatches_key_is_checked():
    with pytest.raises(ValueError, match="minibatches must be one of"):
        TuneConfig(minibatches="random").validate()
    with pytest.raises(ValueError, match="minibatches must be one of"):
        MelodyPPO("MlpLstmPolicy", "CartPole-v1", minibatches="random")
