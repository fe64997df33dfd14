"""Figures over training seeds (rlmusic.evaluation.seeds) and the result script that prints
them: a model path with {seed}, --seeds K, mean [min, max] and the seeds that clear a bar."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlmusic.evaluation.seeds import Spread, expand_seeds, spreads
from rlmusic.models.checkpoint import shipped_models

ROOT = Path(__file__).resolve().parent.parent


def test_seed_patterns_expand_and_refuse_what_they_cannot_fill():
    assert expand_seeds("runs/rl-tuner-s{seed}", 3) == ["runs/rl-tuner-s0", "runs/rl-tuner-s1", "runs/rl-tuner-s2"]
    assert expand_seeds("runs/one", 1) == expand_seeds("runs/one", 3) == ["runs/one"]  # one model, shown beside
    with pytest.raises(ValueError, match="--seeds must be >= 1, got 0"):
        expand_seeds("runs/x-{seed}", 0)


def test_a_spread_is_the_mean_and_range_and_counts_the_seeds_that_clear():
    s = Spread((0.713, 0.699, 0.720))
    assert s.mean == pytest.approx(0.710667) and (s.low, s.high) == (0.699, 0.720)
    assert s.format(percent=True) == "71.1% [69.9, 72.0]"
    assert s.format() == "0.711 [0.699, 0.720]" and Spread((0.5,)).format() == "0.500"
    assert s.cleared(0.70, ">=") == 2 and s.cleared(0.70, "<=") == 1
    with pytest.raises(ValueError, match="direction must be"):
        s.cleared(0.7, ">")
    table = spreads([{"a": 1, "b": 2}, {"a": 3, "b": 2}], ["a"])
    assert table == {"a": Spread((1.0, 3.0))}


def test_rl_tuner_table_reports_every_seed_of_a_model(tmp_path):
    """Two 'seeds' that are the shipped rl-tuner model twice: the same figures, so each row's
    range is one value and a row clears its bar on both seeds or on none."""
    for s in (0, 1):
        (tmp_path / f"rl-s{s}").symlink_to(shipped_models()["rl-tuner"], target_is_directory=True)
    out = tmp_path / "table.json"
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "rl_tuner_table.py"), str(tmp_path / "rl-s{seed}"),
                          "--seeds", "2", "-n", "40", "--json", str(out)], capture_output=True, text=True, check=True)
    tables = json.loads(out.read_text())
    rows = tables[str(tmp_path / "rl-s{seed}")]
    assert [r["model"] for r in rows] == [str(tmp_path / "rl-s0"), str(tmp_path / "rl-s1")]
    assert rows[0]["rl_tuner/starts_with_tonic"] == rows[1]["rl_tuner/starts_with_tonic"]
    assert "40 melodies of 32 steps per model and seed" in run.stdout
    tonic = next(line for line in run.stdout.splitlines() if line.startswith("rl_tuner/starts_with_tonic"))
    assert tonic.count("(2/2)") == 1 and "(0/1)" in tonic  # the tuned model clears it twice; the prior does not
    bad = subprocess.run([sys.executable, str(ROOT / "scripts" / "rl_tuner_table.py"), str(tmp_path / "rl-s{seed}"),
                          "--seeds", "0"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--seeds must be >= 1, got 0" in bad.stderr
