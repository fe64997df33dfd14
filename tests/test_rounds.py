"""The feedback loop end to end, tiny: a prior pretrained for a few seconds, simulated
raters with a taste neither the theory reward nor the reward model's features encode,
one round on the default features, and the guard."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from seeding import seed

import db
from rlmusic.cli.generate import enqueue_rows
from rlmusic.cli.main import main as cli_main
from rlmusic.cli.round import DbStore
from rlmusic.cli.simulate import simulate_raters
from rlmusic.feedback.fit import RewardModelConfig
from rlmusic.feedback.guard import GuardConfig, OverOptimisationWarning
from rlmusic.feedback.rounds import run_round
from rlmusic.feedback.simulate import TASTES, taste_score
from rlmusic.models.checkpoint import default_prior_dir, load_model, load_provenance
from rlmusic.models.generate import sample_tokens, write_clips
from rlmusic.tuning.config import TuneConfig

STEPS = 32
DEVELOPED = "pitch"  # the taste this test's settings were developed against
# ... and one it never was: chosen by a seed, not by hand
HELD_OUT = [t for t in TASTES if t != DEVELOPED][np.random.default_rng(2026).integers(len(TASTES) - 1)]
TASTE = DEVELOPED
# Small PPO run; the theory and KL terms stay (small theory weight so the human term leads).
TUNE = dict(steps=STEPS, n_envs=16, n_steps=64, batch_size=256, n_epochs=4, learning_rate=1e-3, beta=0.05,
            theory_weight=0.02, human_weight=4.0, timesteps=32_768, eval_every=0, eval_melodies=128,
            checkpoint_every=0, eval_corpus="", seed=0)



@pytest.fixture(scope="module")
def prior_dir(tmp_path_factory):
    """A 1x32 LSTM pretrained for 3 epochs on part of the shipped Irish corpus (~3 s)."""
    from rlmusic.corpus.cache import load_corpus
    from rlmusic.models.pretrain import PretrainConfig, pretrain

    torch.set_num_threads(1)  # module fixture: runs before the function-scoped _one_thread
    corpus = load_corpus("irish", progress=False)
    out = tmp_path_factory.mktemp("prior") / "prior"
    config = PretrainConfig(embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0, seq_len=STEPS, batch_size=64,
                            lr=1e-2, max_epochs=3, patience=2, seed=seed(0))
    pretrain(config, out, device="cpu", progress=False,
             sequences={"train": corpus.split("train")[:400], "valid": corpus.split("valid")[:60]})
    return out


@pytest.fixture
def engine(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'ratings.db'}"
    db.upgrade(url)
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    yield db.get_engine(url)
    db.dispose_engine(url)


def enqueue_prior_clips(engine, prior_dir, tmp_path, n=120, k=1):
    prior = load_model(prior_dir)
    rows = write_clips(sample_tokens(prior, n, STEPS, seed=seed(k)), tmp_path / "clips0", prior.vocab, str(prior_dir),
                       seed(k))
    enqueue_rows(engine, rows, tmp_path / "clips0", prior_dir, prior.vocab, audio=False)


def effect(before: np.ndarray, after: np.ndarray) -> tuple[float, float, float]:
    """(Cohen's d, mean difference, half-width of its 95% CI)."""
    diff = after.mean() - before.mean()
    d = diff / math.sqrt((before.var(ddof=1) + after.var(ddof=1)) / 2)
    half = 1.96 * math.sqrt(before.var(ddof=1) / len(before) + after.var(ddof=1) / len(after))
    return d, diff, half


@pytest.mark.statistical
@pytest.mark.parametrize("taste", [DEVELOPED, HELD_OUT])
def test_one_round_raises_the_simulated_taste_within_kl_and_theory_limits(engine, tmp_path, taste, record_property):
    """The real loop, small: the shipped prior's clips, simulated raters of a taste that no
    feature computes, a reward model on the default features (``model="frozen"``: the
    fine-tuned kind has its own tests, tests/test_finetuned_reward.py, and would double this
    test's minutes), one round with the preset a reward model gets (``human``), 16k PPO
    steps. Fails if the taste does not move.

    Measured over test seeds 0-4 (scripts/test_seeds.sh 5): held-out pairwise accuracy pitch
    0.71-0.81, ending 0.70-0.74; star-pair accuracy pitch 0.63-0.83, ending 0.67-0.82; taste
    d pitch 1.41-1.88, ending 0.82-1.08; KL per step 0.07-0.20. With 120 clips, 40 stars and
    30 pairs a rater, as before, star-pair accuracy ranged 0.37-0.78 over eight seeds (the
    held-out part was too small to bound); with 120 clips and 80/80, ending fell to 0.52 on
    one of eight; 240 clips and 80/80 kept every one of eight seeds at 0.63 or more."""
    prior_dir = default_prior_dir()
    enqueue_prior_clips(engine, prior_dir, tmp_path, n=240)
    rated = simulate_raters(engine, n_raters=5, taste=taste, noise=0.5, per_rater=80, pairs=80, seed=seed(0))
    assert rated["stars"] == 400 and rated["pairs"] == 400
    config = TuneConfig.preset("human", steps=STEPS, timesteps=16_384, eval_every=0, eval_melodies=64,
                               checkpoint_every=0, eval_corpus="none", seed=seed(0))
    summary = run_round(tmp_path / "round1", DbStore(engine), tune_config=config, n_clips=32, audio=False,
                        active=True, device="cpu", reward_config=RewardModelConfig(seed=seed(0), model="frozen"))
    # the reward model: held-out (clip-disjoint, statistics from training rows only) accuracy above chance
    metrics = summary["reward_metrics"]
    assert metrics["split"] == "clip"
    record_property("pairwise_accuracy", round(metrics["pairwise_accuracy"], 3))
    record_property("star_pair_accuracy", round(metrics["star_pair_accuracy"], 3))
    assert metrics["pairwise_accuracy"] > 0.6 and metrics["star_pair_accuracy"] > 0.6, metrics
    # the taste of the tuned model's melodies, vs the prior's (fresh samples, same seed)
    prior, tuned = load_model(prior_dir), load_model(summary["tuned_model"])
    before = taste_score(sample_tokens(prior, 512, STEPS, seed=seed(99)), taste)
    after = taste_score(sample_tokens(tuned, 512, STEPS, seed=seed(99)), taste)
    d, diff, half = effect(before, after)
    print(f"{taste}: {before.mean():+.3f} -> {after.mean():+.3f}: d = {d:.2f}, diff {diff:+.3f} +- {half:.3f}")
    record_property("taste_d", round(d, 3))
    record_property("kl_per_step", round(summary["after"]["kl_per_step"], 3))
    assert d > 0.3 and diff - half > 0
    # ... while the KL and the theory metrics stay within limits
    b, a = summary["before"], summary["after"]
    assert b["kl_per_step"] == pytest.approx(0, abs=1e-6) and a["kl_per_step"] < 0.5
    assert a["rl_tuner/notes_not_in_key"] <= b["rl_tuner/notes_not_in_key"] + 0.01
    # Not asserted: RL Tuner's "excessively repeated" count, which counts every 16th step
    # of a note held longer than five steps: the "ending" taste likes a long final note.
    assert a["reward_model_score"] > b["reward_model_score"]  # the reward model's view, beside the taste
    # bookkeeping: the round, the provenance, the queue
    (round_,) = db.list_rounds(engine)
    assert round_["tuned_model_id"] == summary["tuned_model_id"]
    assert sorted(round_["rating_ids"]) == sorted(r["rating_id"] for r in db.star_rows(engine))
    prov = load_provenance(summary["tuned_model"])
    assert prov.kind == "tuned" and prov.reward_model == str(tmp_path / "round1" / "reward_model")
    assert sorted(prov.ratings) == sorted(round_["rating_ids"]) and len(prov.extra["comparisons"]) == rated["pairs"]
    assert len(summary["clip_ids"]) == 32 and json.loads((tmp_path / "round1" / "round.json").read_text())
    nxt = db.next_clip(engine, "new rater", order="priority")  # active selection: most disagreement first
    assert nxt.id in summary["clip_ids"]


@pytest.mark.statistical
def test_the_guard_stops_a_policy_that_games_the_reward_model(engine, prior_dir, tmp_path, capsys, record_property):
    """An absurd human weight, no KL and a high learning rate: the policy runs to melodies
    unlike any rated one, where the reward model only extrapolates. Only the
    out-of-distribution check is on: it must fire, stop training and put the policy back
    to the last weights it passed.

    Over test seeds 0-4 the guard (the median ood of a rollout's 32 melodies) passed the
    first rollout at 1.01-1.16 and fired at 9,216, 5,120, 15,360, 8,192 and 10,240 env steps
    (ood 1.57-2.31) on the AVX2 machine of the earlier sessions; on an AVX512 machine it fired
    at 7,168, 5,120, 19,456, 13,312 and 18,432 (ood 1.52-2.18), and there with torch's AVX2
    kernels (ATEN_CPU_CAPABILITY=avx2) at 7,168, 5,120, 22,528, 8,192 and 15,360 (ood
    1.54-2.75). Training follows the CPU's kernels (docs/reliability.md), so the run may go
    49,152 env steps, more than twice the latest of these; it stops at the guard."""
    enqueue_prior_clips(engine, prior_dir, tmp_path, n=40)
    simulate_raters(engine, n_raters=3, taste=TASTE, per_rater=20, pairs=10, seed=seed(0))
    config = tmp_path / "round.toml"
    config.write_text(
        f"seed = {seed(0)}\nsteps = 32\nn_envs = 16\nn_steps = 64\nbatch_size = 256\nlearning_rate = 1e-2\nbeta = 0.0\n"
        "theory_weight = 0.0\nhuman_weight = 1000.0\neval_every = 0\neval_melodies = 32\ncheckpoint_every = 0\n"
        f'eval_corpus = "none"\n\n[reward]\nensemble = 3\nseed = {seed(0)}\n\n'
        '[guard]\nmax_kl_per_step = 0.0\nmax_disagreement = 0.0\nmax_ood = 1.5\npatience = 1\naction = "stop"\n'
    )
    out = tmp_path / "absurd"
    with pytest.warns(OverOptimisationWarning, match=r"far from the rated ones .* > max_ood=1.5.*goes back to"):
        code = cli_main(["round", "--out", str(out), "--prior", str(prior_dir), "--config", str(config),
                         "--timesteps", "49152", "--n-clips", "4", "--no-audio", "--device", "cpu", "--threads", "1"])
    assert code == 0
    assert "over-optimisation guard" in capsys.readouterr().out
    guard = json.loads((out / "model" / "guard.json").read_text())
    assert guard["triggered"] and guard["stopped"]
    stopped_at = guard["events"][0]["timesteps"]
    record_property("stopped_at", stopped_at)
    record_property("restored_to", guard["restored_to_timesteps"])
    record_property("ood_fired", round(guard["events"][0].get("ood", float("nan")), 3))
    assert stopped_at < 49_152 and guard["history"][0]["ood"] < 1.5  # it started in distribution
    assert guard["restored_to_timesteps"] < stopped_at  # back to the last rollout that passed
    passed = [h for h in guard["history"] if h["timesteps"] == guard["restored_to_timesteps"]]
    assert passed and passed[0]["ood"] <= 1.5
    with open(out / "model" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert any(r.get("guard/triggered") == "1.0" for r in rows) and any(r.get("guard/ood") for r in rows)
    prov = load_provenance(out / "model")
    assert prov.extra["guard"]["stopped"] and prov.extra["guard"]["restored_to_timesteps"] == guard["restored_to_timesteps"]
    assert json.loads((out / "round.json").read_text())["guard"]["triggered"]
    # the saved model is the restored one: the weights that sampled the last rollout the guard
    # passed, i.e. those of the same run stopped one rollout (16 x 64 env steps) earlier. (Its
    # melodies' median ood is that rollout's within sampling noise, which at the bar itself says
    # nothing: 1.47 on its rollout, 1.55 on 2,000 fresh melodies at test seed 0.)
    restored = guard["restored_to_timesteps"]
    reference = prior_dir  # the first rollout was the last that passed: the prior's own weights
    if restored > 16 * 64:
        again = tmp_path / "again.toml"
        again.write_text(config.read_text().replace("max_ood = 1.5", "max_ood = 0.0"))  # no guard: plain training
        assert cli_main(["round", "--out", str(tmp_path / "earlier"), "--prior", str(prior_dir), "--config",
                         str(again), "--timesteps", str(restored - 16 * 64), "--n-clips", "1", "--no-audio",
                         "--device", "cpu", "--threads", "1"]) == 0
        reference = tmp_path / "earlier" / "model"
    saved, reference = load_model(out / "model").state_dict(), load_model(reference).state_dict()
    assert all(torch.equal(saved[k], reference[k]) for k in reference)


def test_bad_round_options_fail_before_training(engine, prior_dir, tmp_path):
    with pytest.raises(ValueError, match="unknown guard config keys"):
        GuardConfig.from_dict({"max_kl": 1})
    with pytest.raises(ValueError, match="too few ratings"):
        run_round(tmp_path / "r", DbStore(engine), prior=prior_dir, tune_config=TuneConfig(**TUNE), audio=False,
                  device="cpu")
    assert not (Path(tmp_path) / "r" / "model").exists()
    (job,) = db.list_jobs(engine)  # the failed round is on record, with its error
    assert job["kind"] == "round" and job["status"] == "failed" and "too few ratings" in job["error"]


def test_a_failed_round_is_recorded_and_force_reuses_its_folder(engine, prior_dir, tmp_path, capsys):
    enqueue_prior_clips(engine, prior_dir, tmp_path, n=40)
    simulate_raters(engine, n_raters=3, taste=TASTE, per_rater=10, seed=0)
    config = tmp_path / "round.toml"
    config.write_text("n_envs = 4\nbatch_size = 128\nn_epochs = 1\neval_every = 0\n"
                      'eval_melodies = 16\ncheckpoint_every = 256\neval_corpus = "none"\n\n'
                      '[reward]\nfeatures = "stats"\nensemble = 2\nepochs = 50\n')
    out = tmp_path / "r"
    base = ["round", "--out", str(out), "--prior", str(prior_dir), "--config", str(config), "--n-clips", "2",
            "--no-audio", "--device", "cpu"]
    # fails after the reward model was fitted: melodies longer than the prior ever saw
    assert cli_main([*base, "--steps", "48", "--timesteps", "1024"]) == 1
    assert "exceeds the prior's max_steps" in capsys.readouterr().err
    (job,) = db.list_jobs(engine)
    assert job["kind"] == "round" and job["status"] == "failed" and "max_steps" in job["error"]
    assert (out / "reward_model").is_dir()
    assert cli_main([*base, "--timesteps", "1024"]) == 1
    err = capsys.readouterr().err
    assert "already holds a round" in err and "--force" in err
    # with --force the folder is reused; the run checkpoints (SB3 pickles the model: it must not
    # hold a lock or a closure) and completes
    assert cli_main([*base, "--timesteps", "1024", "--force"]) == 0
    assert sorted(p.name for p in (out / "model" / "checkpoints").glob("*.zip")) == [
        "step_0000000512.zip", "step_0000001024.zip"]  # one mid-run, one at the end
    assert load_provenance(out / "model").extra["timesteps"] == 1024
    statuses = sorted(j["status"] for j in db.list_jobs(engine))
    assert statuses == ["failed", "succeeded"]
