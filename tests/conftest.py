"""Test-wide setup: every test session gets its own RLMUSIC_HOME and default database
(so tests never touch a developer's ~/.rlmusic or the repo's .rlmusic), and every test
runs on one torch thread.
"""

import os

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("rlmusic_home")
    saved = {k: os.environ.get(k) for k in ("RLMUSIC_HOME", "RLMUSIC_DATABASE_URL")}
    os.environ["RLMUSIC_HOME"] = str(home)
    os.environ.pop("RLMUSIC_DATABASE_URL", None)
    yield home
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: a second torch thread only adds contention on a busy 2-core machine."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


TINY_PRIOR = dict(embed_dim=8, hidden_size=16, num_layers=1, max_steps=64, dropout=0.0)
TINY_TUNE_TOML = """
steps = 16
n_envs = 4
n_steps = 16
batch_size = 32
n_epochs = 2
learning_rate = 1e-3
eval_every = 128
eval_melodies = 8
checkpoint_every = 64
eval_corpus = ""
timesteps = 256
"""


@pytest.fixture(scope="session")
def tiny_prior(tmp_path_factory):
    """A tiny random prior (1x16 LSTM) saved as a model directory: jobs, sweeps, pages."""
    from rlmusic.models.checkpoint import save_model
    from rlmusic.models.lstm import MelodyLSTM, ModelConfig

    torch.manual_seed(0)
    return save_model(MelodyLSTM(ModelConfig(**TINY_PRIOR)), tmp_path_factory.mktemp("tiny") / "prior")


@pytest.fixture(scope="session")
def tiny_tune_config(tmp_path_factory):
    """A TOML tuning config that trains in seconds: T=16, 4 envs, 256 env steps, a
    checkpoint every rollout (64 env steps)."""
    path = tmp_path_factory.mktemp("tiny_config") / "tiny.toml"
    path.write_text(TINY_TUNE_TOML)
    return path
