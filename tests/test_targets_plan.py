"""Targets and the information projection (rlmusic.tuning.targets), ``rlmusic targets plan``
and the ``[targets]`` table of a tuning config."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy.optimize import brentq, fsolve
from seeding import seed

from rlmusic.cli.main import main
from rlmusic.tuning.config import TuneConfig, preset_names
from rlmusic.tuning.targets import (
    Target,
    fit_projection,
    parse_target,
    parse_targets,
    plan_projection,
)


def one_line(err: str, command: str) -> str:
    assert err.startswith(f"rlmusic {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- the fit, exactly

P = np.linspace(0.1, 0.6, 10)  # a known prior: 10 independent bits, bit i is 1 with probability P[i]
X = np.array(list(itertools.product([0, 1], repeat=10)), dtype=np.float64)  # all 2^10 sequences
LOG_PRIOR = (X * np.log(P) + (1 - X) * np.log(1 - P)).sum(axis=1)
ONES = X.mean(axis=1)  # phi_1: the share of ones


def bernoulli_kl(q: np.ndarray) -> float:
    return float((q * np.log(q / P) + (1 - q) * np.log((1 - q) / (1 - P))).sum())


def tilted(lam_ones: float, lam_first: float = 0.0) -> np.ndarray:
    """The projection of independent bits stays independent: bit i tilted by exp(lambda phi)."""
    e = np.exp(lam_ones / 10) * np.r_[np.exp(lam_first), np.ones(9)]
    return P * e / (1 - P + P * e)


@pytest.mark.parametrize("op, bar", [(">=", 0.5), ("<=", 0.2), ("==", 0.45)])
def test_one_target_matches_the_exact_projection(op, bar):
    lam = brentq(lambda v: tilted(v).mean() - bar, -100, 100)
    proj = fit_projection(ONES, [bar], [op], log_weights=LOG_PRIOR)  # every sequence once, weighted by the prior
    assert proj.lam[0] == pytest.approx(lam, abs=1e-3)
    assert proj.mean(ONES) == pytest.approx(bar, abs=1e-3)
    assert proj.kl == pytest.approx(bernoulli_kl(tilted(lam)), abs=1e-3)
    assert proj.kl == pytest.approx(float(proj.lam @ proj.mean(ONES[:, None])) - proj.log_z, abs=1e-9)


def test_two_targets_match_the_exact_projection():
    lam = fsolve(lambda v: [tilted(*v).mean() - 0.5, tilted(*v)[0] - 0.5], [1.0, 1.0], xtol=1e-12)
    phi = np.stack([ONES, X[:, 0]], axis=1)
    proj = fit_projection(phi, [0.5, 0.5], [">=", "=="], log_weights=LOG_PRIOR)
    assert proj.lam == pytest.approx(lam, abs=1e-3)
    assert proj.mean(phi) == pytest.approx([0.5, 0.5], abs=1e-3)
    assert proj.kl == pytest.approx(bernoulli_kl(tilted(*lam)), abs=1e-3)


def test_a_target_the_prior_already_meets_costs_nothing():
    mean = float(np.exp(LOG_PRIOR) @ ONES)  # 0.35
    proj = fit_projection(ONES, [mean - 0.1], [">="], log_weights=LOG_PRIOR)
    assert proj.lam[0] == 0.0 and proj.kl == 0.0
    assert proj.ess == pytest.approx(1 / (np.exp(LOG_PRIOR) ** 2).sum())
    values = np.random.default_rng(seed(0)).random(500)
    plan = plan_projection([Target("structure", "<=", 0.9)], {"structure": (values, np.ones(500))}, steps=32)
    assert plan.projection.lam[0] == 0.0 and plan.kl_floor_per_step == 0.0
    assert plan.projected_means[0] == pytest.approx(values.mean()) and plan.projection.ess == pytest.approx(500)


# --------------------------------------------------------------------------- refusals


def refusal(targets, parts, **kw) -> str:
    with pytest.raises(ValueError) as exc:
        plan_projection(targets, parts, steps=32, **kw)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_a_target_no_sample_reaches_is_refused_in_one_line():
    values = np.random.default_rng(seed(1)).random(200)
    parts = {"structure": (values, np.ones(200)), "novelty": (values, np.ones(200))}
    msg = refusal([Target("structure", ">=", 1.5), Target("novelty", ">=", 0.2)], parts)
    assert msg.startswith("target structure >= 1.5: none of the 200 sampled melodies lies on its side")
    assert "novelty" not in msg and msg.endswith("sample more melodies (-n) or loosen the target")
    assert "target novelty == -1" in refusal([Target("novelty", "==", -1)], parts)


def test_conflicting_targets_and_a_small_sample_size_are_refused():
    values = np.random.default_rng(seed(2)).random(300)
    one = np.ones(300)
    parts = {"structure": (values, one), "structure_repetition": (values, one)}
    msg = refusal([Target("structure", ">=", 0.8), Target("structure_repetition", "<=", 0.2)], parts)
    assert msg.startswith("target structure") and "the projection fitted on 300 melodies misses it" in msg
    assert "the targets may conflict" in msg
    msg = refusal([Target("structure", ">=", 0.95)], parts)
    assert msg.startswith("target structure >= 0.95: the projection's effective sample size is")
    assert plan_projection([Target("structure", ">=", 0.95)], parts, steps=32, min_ess=1).projected_means[0] \
        == pytest.approx(0.95, abs=1e-3)


def test_a_ratio_target_is_met_on_its_ratio():
    """leaps_resolved >= c constrains sum(resolved) / sum(outcomes) under the projection."""
    rng = np.random.default_rng(seed(3))
    outcomes = rng.integers(0, 4, 2000).astype(float)
    resolved = rng.binomial(outcomes.astype(int), 0.8).astype(float)
    plan = plan_projection([Target("rl_tuner/leaps_resolved", ">=", 0.85)],
                           {"rl_tuner/leaps_resolved": (resolved, outcomes)}, steps=32)
    assert plan.prior_means[0] == pytest.approx(resolved.sum() / outcomes.sum())
    assert plan.projected_means[0] == pytest.approx(0.85, abs=1e-4) and plan.projection.lam[0] > 0


@pytest.mark.parametrize("text", ["> 0.5", ">= x", "0.5", ">= nan", 0.5, ">= 1e999"])
def test_bad_target_strings_name_the_key_and_value(text):
    with pytest.raises(ValueError, match=f"target 'structure' = {text!r}"):
        parse_target("structure", text)


def test_targets_parse_in_order():
    table = {"rl_tuner/unique_min_note": ">= 0.6", "structure": ">=0.475", "rl_tuner/notes_not_in_key": "<= 0.005",
             "novelty": "== .3"}
    assert [str(t) for t in parse_targets(table)] == [
        "rl_tuner/unique_min_note >= 0.6", "structure >= 0.475", "rl_tuner/notes_not_in_key <= 0.005",
        "novelty == 0.3"]
    with pytest.raises(ValueError, match="unknown target key 'x'; valid: "):
        parse_targets({"x": "== 0.3"})


# --------------------------------------------------------------------------- the config and the command


def test_the_targets_table_round_trips_through_print_config(capsys, tmp_path):
    targeted = {"rl-tuner-targets", "structure-targets"}
    assert all(TuneConfig.preset(name).targets == {} for name in preset_names() if name not in targeted)
    assert TuneConfig.preset("structure-targets").targets == {
        "structure": ">= 0.475", "novelty": ">= 0.104", "copied_notes": "<= 12.12"}
    config = TuneConfig.preset("rl-tuner-targets")
    assert len(config.targets) == 8 and config.targets["rl_tuner/leaps_resolved"] == ">= 0.92"
    assert main(["tune", "--print-config", "--preset", "rl-tuner-targets"]) == 0
    printed = capsys.readouterr().out
    assert '"rl_tuner/notes_in_repeated_motif" = ">= 0.01"' in printed
    (tmp_path / "printed.toml").write_text(printed)
    assert TuneConfig.from_file(tmp_path / "printed.toml") == config
    with pytest.raises(ValueError, match="unknown target key 'nope'"):
        TuneConfig(targets={"nope": ">= 1"}).validate()
    (tmp_path / "beta.toml").write_text("beta = 0.5\n")  # a targets run fixes beta at 1
    assert main(["tune", "--out", str(tmp_path / "run"), "--preset", "rl-tuner-targets",
                 "--config", str(tmp_path / "beta.toml")]) == 1
    assert "beta=0.5: a run with [targets] fixes beta at 1" in one_line(capsys.readouterr().err, "tune")
    assert not (tmp_path / "run").exists()


def write_config(path, targets: dict[str, str]) -> str:
    path.write_text("steps = 32\n[targets]\n" + "".join(f'"{k}" = "{v}"\n' for k, v in targets.items()))
    return str(path)


def test_plan_prints_a_row_per_target_and_writes_json(capsys, tmp_path):
    config = write_config(tmp_path / "t.toml", {"rl_tuner/unique_min_note": ">= 0.7",
                                                "rl_tuner/leaps_resolved": ">= 0.93", "novelty": ">= 0.12"})
    out = tmp_path / "plan.json"
    assert main(["targets", "plan", "--config", config, "-n", "256", "--seed", str(seed(0)), "--min-ess", "5",
                 "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for key in ("rl_tuner/unique_min_note", "rl_tuner/leaps_resolved", "novelty"):
        assert any(line.startswith(key) for line in printed.splitlines()), printed
    assert "kl_floor_per_step" in printed and "effective sample size" in printed
    plan = json.loads(out.read_text())
    assert [r["key"] for r in plan["targets"]] == ["rl_tuner/unique_min_note", "rl_tuner/leaps_resolved", "novelty"]
    assert plan["n"] == 256 and plan["steps"] == 32 and plan["prior"] == "shipped-prior"
    assert plan["kl_floor_per_step"] == pytest.approx(plan["kl_floor_per_melody"] / 32) and plan["ess"] >= 5
    for row in plan["targets"]:
        assert row["projected_mean"] >= row["target"] - 1e-3 and row["lambda"] >= 0
    assert plan["targets"][1]["linearised"] and not plan["targets"][0]["linearised"]


def test_plan_refuses_an_unreachable_target_in_one_line(capsys, tmp_path):
    config = write_config(tmp_path / "t.toml", {"rl_tuner/starts_with_tonic": ">= 1.5"})
    assert main(["targets", "plan", "--config", config, "-n", "16", "--no-progress"]) == 1
    err = one_line(capsys.readouterr().err, "targets")
    assert "target rl_tuner/starts_with_tonic >= 1.5: none of the 16 sampled melodies" in err
    assert main(["targets", "plan", "--preset", "default", "-n", "16"]) == 1
    assert "has no [targets] table" in one_line(capsys.readouterr().err, "targets")
