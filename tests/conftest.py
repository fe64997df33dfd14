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
