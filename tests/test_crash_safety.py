"""Files that survive a crash, a kill or a full disk: atomic writes (``rlmusic.fileio``),
a tuning run that resumes over a torn line and stale temporary files, a full disk that is
one line and a resumable state, and an extension that never replaces a model whose clips
are in the rating queue."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_errors import TINY_RUN, one_line

import db
from rlmusic.cli.main import main
from rlmusic.fileio import append_line, read_jsonl, remove_stale_temps, write_atomic
from rlmusic.models.checkpoint import load_model, load_provenance

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    import torch

    from rlmusic.models.checkpoint import save_model
    from rlmusic.models.lstm import MelodyLSTM, ModelConfig

    torch.manual_seed(0)
    return save_model(MelodyLSTM(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1, max_steps=64)),
                      tmp_path_factory.mktemp("p") / "prior")


@pytest.fixture
def config(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_RUN.replace("checkpoint_every = 0", "checkpoint_every = 128"))
    return path


def tune(*args) -> int:
    return main(["tune", "--no-progress", "--threads", "1", "--device", "cpu", *map(str, args)])


# --------------------------------------------------------------------------- atomic files


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_atomic(tmp_path / "x.json", '{"old": 1}\n')

    def half_then_fail(f):
        f.write(b'{"new": ')
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as info:
        write_atomic(path, half_then_fail)
    assert info.value.filename == str(path)  # the one line can say which file
    assert path.read_text() == '{"old": 1}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_a_torn_last_line_is_skipped_and_stale_temporaries_are_removed(tmp_path):
    path = tmp_path / "eval.jsonl"
    append_line(path, json.dumps({"timesteps": 0}))
    with path.open("a") as f:
        f.write('{"timesteps": 12')  # a crash in the middle of a line
    assert read_jsonl(path) == [{"timesteps": 0}]
    stale = [tmp_path / ".eval.jsonl.a1b2.tmp", tmp_path / "step_1.tmp.zip"]
    for p in stale:
        p.write_bytes(b"half")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.jsonl"]


# --------------------------------------------------------------------------- tuning runs


def test_resume_after_a_kill_skips_a_torn_line_and_cleans_temporaries(tiny_prior, config, tmp_path):
    out = tmp_path / "run"
    args = ("--prior", tiny_prior, "--out", out, "--config", config, "--timesteps", 384)
    assert tune(*args, "--stop-after-checkpoints", 1) == 0  # "killed" after its first checkpoint
    with (out / "eval.jsonl").open("a") as f:
        f.write('{"timesteps": 128, "beta": 0.')  # torn by the kill
    (out / ".tune_config.json.x1y2.tmp").write_text("{")  # a write the kill interrupted
    (out / "checkpoints" / ".step_0000000256.zip.k3l4.tmp").write_bytes(b"PK")
    assert tune(*args, "--resume") == 0
    assert [r["timesteps"] for r in read_jsonl(out / "eval.jsonl")] == [0, 384]
    assert not list(out.glob(".*.tmp")) and not list((out / "checkpoints").glob(".*.tmp"))
    assert load_provenance(out).extra["timesteps"] == 384


# What a run says before it starts (the jobs table: recorded, or why not): not part of a failure.
NOTICES = ("tune: recorded as job ", "tune: not recorded in the jobs table: ")


def failure(err: str) -> str:
    """``err`` without the run's opening notices: what the failure itself printed."""
    return "".join(line for line in err.splitlines(True) if not line.startswith(NOTICES))


def _run_on_a_small_disk(script: str, tmp_path: Path) -> subprocess.CompletedProcess | None:
    """Run ``script`` (sh) with a 224 KiB tmpfs mounted on ``tmp_path/disk`` in a private
    mount namespace; None where this machine cannot (no user namespaces, not root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    body = f"mount -t tmpfs -o size=224k tmpfs {disk} || exit 99\n{script}"
    try:
        done = subprocess.run(["unshare", "-m", "sh", "-c", body], capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        return None
    return None if done.returncode == 99 or "unshare:" in done.stderr else done


def test_a_full_disk_is_one_line_and_the_run_resumes(tiny_prior, config, tmp_path):
    """The disk fills while a run writes its third checkpoint (two are kept, 80 KB each):
    one line, no temporary file left, and ``--resume`` after freeing space finishes."""
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    python = f"{sys.executable} -m rlmusic tune --no-progress --threads 1 --device cpu"
    script = (
        f"{python} --prior {tiny_prior} --out {disk}/run --config {config} --timesteps 640 "
        f"> {tmp_path}/first.out 2> {tmp_path}/first.err; echo first=$?\n"
        f"cp -r {disk}/run {kept}\n"
        f"mount -o remount,size=16m {disk}\n"
        f"{python} --out {disk}/run --resume > {tmp_path}/second.out 2> {tmp_path}/second.err; echo second=$?\n"
        f"cp -r {disk}/run {tmp_path}/final\n"
    )
    done = _run_on_a_small_disk(script, tmp_path)
    if done is None:  # no mount namespace here: a file-size limit fails the writes instead
        return _file_size_limit_instead(tiny_prior, config, tmp_path)
    assert "first=1" in done.stdout and "second=0" in done.stdout, done.stdout + done.stderr
    err = failure((tmp_path / "first.err").read_text())
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("rlmusic tune: error: No space left on device writing ") and "--resume" in err
    assert not [p for p in kept.rglob("*") if p.name.endswith(".tmp")]  # nothing half-written
    assert sorted(p.name for p in (kept / "checkpoints").glob("*.json")) == [
        "step_0000000128.json", "step_0000000256.json"]
    assert [r["timesteps"] for r in read_jsonl(tmp_path / "final" / "eval.jsonl")] == [0, 640]
    load_model(tmp_path / "final")


def _file_size_limit_instead(tiny_prior, config, tmp_path):
    out = tmp_path / "run"

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))  # a checkpoint is 80 KB

    command = [sys.executable, "-m", "rlmusic", "tune", "--no-progress", "--threads", "1", "--device", "cpu",
               "--prior", str(tiny_prior), "--out", str(out), "--config", str(config), "--timesteps", "640"]
    first = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit, cwd=ROOT)
    assert first.returncode == 1 and failure(first.stderr).count("\n") == 1, first.stderr
    assert "File too large writing" in first.stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert tune("--out", out, "--resume") == 0
    assert [r["timesteps"] for r in read_jsonl(out / "eval.jsonl")][-1] == 640


def test_extending_a_finished_run_keeps_its_model_and_refuses_while_its_clips_are_queued(
        tiny_prior, config, tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'ratings.db'}"
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    out = tmp_path / "run"
    assert tune("--prior", tiny_prior, "--out", out, "--config", config, "--timesteps", 256) == 0
    finished = (out / "model.safetensors").read_bytes()
    with sqlite3.connect(tmp_path / "ratings.db") as conn:  # a database file without the schema
        conn.execute("CREATE TABLE unrelated (x)")
    # extending: the finished model is kept in previous/ before it is replaced
    assert tune("--out", out, "--resume", "--timesteps", 384) == 0
    kept = out / "previous" / "step_0000000256"
    assert (kept / "model.safetensors").read_bytes() == finished
    assert load_provenance(kept).extra["timesteps"] == 256 and load_provenance(out).extra["timesteps"] == 384
    load_model(kept)
    # once clips of it are in the rating queue, it is never replaced
    db.upgrade(url)
    engine = db.get_engine(url)
    model_id = db.register_model(engine, name="run", directory=out, kind="tuned")
    db.enqueue_clips(engine, model_id, [{"tokens": [3, 1, 1, 1], "midi_path": str(tmp_path / "0000.mid")}])
    now = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert tune("--out", out, "--resume", "--timesteps", 512) == 1
    err = one_line(capsys.readouterr().err, "tune")
    assert "has 1 clips in the rating queue" in err and "extend the copy" in err
    assert tune("--prior", tiny_prior, "--out", out, "--config", config, "--force") == 1  # nor restarted
    assert (out / "model.safetensors").read_bytes() == now
    db.dispose_engine(url)


def test_a_damaged_checkpoint_is_one_line(tiny_prior, config, tmp_path, capsys):
    out = tmp_path / "run"
    args = ("--prior", tiny_prior, "--out", out, "--config", config, "--timesteps", 384)
    assert tune(*args, "--stop-after-checkpoints", 1) == 0
    (zip_path,) = (out / "checkpoints").glob("*.zip")
    data = bytearray(zip_path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte
    zip_path.write_bytes(bytes(data))
    capsys.readouterr()
    assert tune(*args, "--resume") == 1
    err = one_line(failure(capsys.readouterr().err), "tune")
    assert f"checkpoint {zip_path} is damaged" in err


def test_round_never_reuses_a_folder_whose_clips_are_queued(tmp_path):
    from rlmusic.feedback.rounds import prepare_folder

    out = tmp_path / "round"
    (out / "clips").mkdir(parents=True)
    (out / "round.json").write_text("{}")
    (out / "clips" / "manifest.jsonl").write_text(json.dumps({"clip_id": 7, "midi": "0000.mid"}) + "\n")
    with pytest.raises(ValueError, match="1 clips are in the rating queue; choose another --out"):
        prepare_folder(out, force=True)
    assert (out / "clips" / "manifest.jsonl").is_file()  # nothing removed
    os.remove(out / "clips" / "manifest.jsonl")
    prepare_folder(out, force=True)  # a failed round that queued nothing may be reused
    assert not (out / "clips").exists()
    shutil.rmtree(out)
