"""Test-wide setup: every test session gets its own RLMUSIC_HOME and default database,
so tests never touch a developer's ~/.rlmusic or the repo's .rlmusic."""

import os

import pytest


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
