"""The lock (constraints.txt) and what rlmusic says about the environment it runs in:
``rlmusic --version``, the lock check, and the environment a model's provenance records."""

import numpy as np
import pytest
import torch

from rlmusic.cli.main import main as cli_main
from rlmusic.environment import LOCK_FILE, environment, lock_differences, lock_status, read_lock


def test_the_venv_make_setup_built_matches_the_lock():
    """make setup installs with ``-c constraints.txt``: every pinned package at its version
    (fails on a venv built without the lock, or a lock nobody re-installed)."""
    pins = read_lock()
    assert {"torch", "numpy", "scipy", "stable-baselines3", "sb3-contrib", "sqlalchemy"} <= set(pins)
    assert lock_differences() == [], lock_status()


def test_version_lists_the_packages_the_cpu_and_the_lock(capsys):
    assert cli_main(["--version"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("rlmusic ")
    assert f"torch {torch.__version__}" in out and f"numpy {np.__version__}" in out
    assert any(line.startswith("cpu ") and "torch kernels" in line for line in out)
    assert out[-1] == f"lock: matches constraints.txt ({len(read_lock())} packages)"


def test_a_difference_from_the_lock_is_named(tmp_path):
    lock = tmp_path / "constraints.txt"
    lock.write_text("# comment\nnumpy==1.0.0\ntorch==2.13.0\n\nnot-installed-anywhere==1.0\n")
    installed = {"numpy": "2.4.6", "torch": "2.13.0+cpu"}  # the CPU build matches the public version
    assert lock_differences(installed, lock) == [("not-installed-anywhere", None, "1.0"), ("numpy", "2.4.6", "1.0.0")]
    lock.write_text(f"numpy=={np.__version__}\nSQLAlchemy_Utils==0.0.1\n")
    line = lock_status(lock)
    assert line.startswith("lock: 1 of 2 packages differ") and "sqlalchemy-utils missing (locked 0.0.1)" in line


def test_a_malformed_lock_line_is_one_error_naming_it(tmp_path):
    lock = tmp_path / "constraints.txt"
    lock.write_text("numpy==2.4.6\nscipy>=1.0\n")
    with pytest.raises(ValueError, match=r"constraints.txt:2: expected NAME==VERSION, got 'scipy>=1.0'"):
        read_lock(lock)


def test_the_environment_a_model_records():
    env = environment()
    assert env["packages"]["torch"] == torch.__version__ and env["packages"]["numpy"] == np.__version__
    assert env["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["cpu"]
    assert env["lock_matches"] is True and LOCK_FILE.is_file()
