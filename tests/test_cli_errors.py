"""Commands that fail well: each mistake a new user made gets one line naming the problem
(and what to do), no traceback, and nothing half-written."""

import json
import os
import signal
from pathlib import Path

import pytest

import db
from rlmusic.cli.main import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def one_line(err: str, command: str) -> str:
    assert err.startswith(f"rlmusic {command}: error: "), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------- the database


@pytest.mark.postgres
@pytest.mark.parametrize("url, says", [
    ("postgres://postgres:secret@127.0.0.1:5432/test", "write postgresql+psycopg://postgres:***@127.0.0.1:5432/test"),
    ("postgresql://postgres:secret@127.0.0.1:5432/test", "rlmusic uses psycopg 3"),
    ("postgresql+psycopg://postgres:secret@127.0.0.1:1/test", "cannot reach the database server"),
    ("postgresql+psycopg://postgres:secret@127.0.0.1:5432/rlmusic_no_such_db", "does not exist; create it"),
    ("mysql://u:secret@h/d", "only SQLite and PostgreSQL"),
    ("not a url", "cannot parse the database URL"),
])
def test_database_problems_are_one_line_naming_the_url(url, says, tmp_path, capsys):
    for argv in (["db", "current", "--url", url], ["ratings", "export", str(tmp_path / "x.csv"), "--url", url]):
        assert main(argv) == 1
        err = one_line(capsys.readouterr().err, argv[0])
        assert says in err and "secret" not in err, err
    assert not (tmp_path / "x.csv").exists()


def test_a_schema_behind_is_one_line_and_generate_writes_nothing_first(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db.upgrade(url, "0001")
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    out = tmp_path / "clips"
    assert main(["generate", "-n", "2", "--steps", "16", "--out", str(out), "--enqueue"]) == 1
    err = one_line(capsys.readouterr().err, "generate")
    assert "schema is at 0001" in err and "rlmusic db upgrade" in err and str(tmp_path) in err
    assert not out.exists()  # checked before any file was written
    db.dispose_engine(url)


def test_simulate_raters_on_an_empty_queue_is_an_error(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    db.upgrade(url)
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    assert main(["simulate-raters", "--n-raters", "2", "--per-rater", "3"]) == 1
    err = one_line(capsys.readouterr().err, "simulate-raters")
    assert "rating queue has no clip" in err and "rlmusic generate" in err
    db.dispose_engine(url)


# --------------------------------------------------------------------------- corpus


def test_corpus_report_names_every_skipped_file_and_why(tmp_path, capsys, monkeypatch):
    import shutil

    folder = tmp_path / "midi"
    folder.mkdir()
    data = Path(__file__).parent / "data"
    shutil.copy(data / "melody.mid", folder / "good.mid")
    (folder / "broken.mid").write_bytes(b"MThd not really")
    report = tmp_path / "report.json"
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))  # restored after: later tests keep theirs
    assert main(["corpus", "build", "--source", f"midi:{folder}", "--workers", "1", "--quiet",
                 "--report", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["n_pieces"] == 1
    (skip,) = data["skipped_items"]
    assert skip["item"] == str(folder / "broken.mid") and skip["reason"] == "unreadable MIDI file"


# --------------------------------------------------------------------------- tune: Ctrl-C, resume, extend


TINY_RUN = """
steps = 16
n_envs = 4
n_steps = 16
batch_size = 32
n_epochs = 1
learning_rate = 1e-3
eval_every = 0
eval_melodies = 8
checkpoint_every = 0
eval_corpus = "none"
"""


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    import torch

    from rlmusic.models.checkpoint import save_model
    from rlmusic.models.lstm import MelodyLSTM, ModelConfig

    torch.manual_seed(0)
    return save_model(MelodyLSTM(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1, max_steps=64)),
                      tmp_path_factory.mktemp("p") / "prior")


def test_ctrl_c_in_tune_leaves_a_resumable_checkpoint_and_resume_extends_a_finished_run(
        tiny_prior, tmp_path, monkeypatch, capsys):
    from envs.melody import BatchedMelodyVecEnv

    config = tmp_path / "tiny.toml"
    config.write_text(TINY_RUN)
    out = tmp_path / "run"
    args = ["tune", "--prior", str(tiny_prior), "--out", str(out), "--config", str(config), "--no-progress"]
    real_step = BatchedMelodyVecEnv.step_wait
    calls = {"n": 0}

    def step_then_ctrl_c(self):
        calls["n"] += 1
        if calls["n"] == 40:  # mid-way through the third rollout (16 steps each)
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(self)

    monkeypatch.setattr(BatchedMelodyVecEnv, "step_wait", step_then_ctrl_c)
    assert main([*args, "--timesteps", "512"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1 and "stopped; a checkpoint is in" in printed and "--resume" in printed
    (ckpt,) = (out / "checkpoints").glob("step_*.json")
    assert json.loads(ckpt.read_text())["num_timesteps"] == 128  # two whole rollouts trained on
    assert not (out / "model.safetensors").exists()
    monkeypatch.setattr(BatchedMelodyVecEnv, "step_wait", real_step)
    assert main([*args, "--timesteps", "512", "--resume"]) == 0
    from rlmusic.models.checkpoint import load_provenance

    assert load_provenance(out).extra["timesteps"] == 512
    # a finished run: --resume alone refuses, --resume with more timesteps extends it
    capsys.readouterr()  # the runs above said in one line each that they were not recorded as jobs
    assert main(["tune", "--out", str(out), "--resume"]) == 1
    err = one_line(capsys.readouterr().err, "tune")
    assert "already finished at 512 env steps" in err
    assert main(["tune", "--out", str(out), "--resume", "--timesteps", "768", "--no-progress"]) == 0
    assert load_provenance(out).extra["timesteps"] == 768
    evals = [json.loads(line)["timesteps"] for line in (out / "eval.jsonl").read_text().splitlines()]
    assert evals == [0, 512, 768]
    capsys.readouterr()
    assert main(["tune", "--out", str(out), "--resume", "--timesteps", "1024", "--seed", "5"]) == 1
    assert "only ['timesteps'] may change" in one_line(capsys.readouterr().err, "tune")


def test_print_config_documents_every_key_and_reads_back(capsys, tmp_path):
    from dataclasses import fields

    from rlmusic.tuning.config import TuneConfig

    assert main(["tune", "--print-config", "--preset", "rl-tuner"]) == 0
    printed = capsys.readouterr().out
    for f in fields(TuneConfig):
        line = next(line for line in printed.splitlines() if line.startswith((f"{f.name} =", f"# {f.name} =",
                                                                             f"[{f.name}]")))
        assert "#" in line and len(line.rsplit("#", 1)[1].strip()) > 10, line
    assert 'theory_rules = "rl_tuner"' in printed and "high_low_unique = 16.0" in printed
    assert "# eval_corpus = (unset)" in printed
    # what it prints is a config file that gives the same run
    (tmp_path / "printed.toml").write_text(printed)
    assert TuneConfig.from_file(tmp_path / "printed.toml") == TuneConfig.preset("rl-tuner")
    with pytest.raises(SystemExit) as exit_:
        main(["tune", "--preset", "nope"])
    assert exit_.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_every_option_of_every_command_says_what_it_does():
    import argparse

    from rlmusic.cli.main import COMMANDS, build_parser

    def check(parser: argparse.ArgumentParser, where: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    check(sub, f"{where} {name}")
            elif action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
                assert action.help and len(action.help) > 8, f"rlmusic {where}: {action.option_strings or action.dest}"

    for command in COMMANDS:
        check(build_parser(command), command)
