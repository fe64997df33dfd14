"""The Python API: the example of docs/api.md runs as written, and each verb keeps its word."""

import re
from pathlib import Path

import numpy as np
import pytest

import rlmusic

DOC = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def test_the_example_in_docs_api_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    scope: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), scope)
    out = capsys.readouterr().out
    assert "['log_prior', 'theory']" in out and "KL to the prior" in out
    assert scope["tokens"].shape == (8, 32) and scope["tokens"].dtype == np.int64
    assert (tmp_path / "runs" / "t" / "model.safetensors").is_file()
    assert scope["table"]["kl_per_step"] > 0  # 4096 steps of PPO moved it
    assert scope["tuned"].source_dir == Path("runs/t")


def test_six_verbs_are_exported():
    assert sorted(rlmusic.__all__) == ["TuneConfig", "evaluate", "generate", "load_model", "make_env", "tune"]


def test_generate_is_seeded_and_evaluate_defaults_to_the_shipped_reference():
    prior = rlmusic.load_model()
    a, b = rlmusic.generate(prior, n=4, steps=16, seed=3), rlmusic.generate(prior, n=4, steps=16, seed=3)
    assert np.array_equal(a, b) and not np.array_equal(a, rlmusic.generate(prior, n=4, steps=16, seed=4))
    table = rlmusic.evaluate(a)
    assert table["reference_prior"] == "shipped-prior" and table["reference_corpus"] == "irish"
    assert table["log_p_prior_per_step"] < 0 and "kl_per_step" not in table


def test_tune_refuses_a_model_without_a_directory(tmp_path):
    from rlmusic.models.lstm import MelodyLSTM, ModelConfig

    with pytest.raises(ValueError, match="loaded from a directory"):
        rlmusic.tune(MelodyLSTM(ModelConfig()), rlmusic.TuneConfig(), out=tmp_path / "x")
