import csv

import numpy as np
import pytest
import torch
from seeding import seed

from rlmusic.cli.main import main as cli
from rlmusic.models.checkpoint import load_model, load_provenance
from rlmusic.models.pretrain import (
    PAD,
    PretrainConfig,
    inputs_for,
    make_chunks,
    pretrain,
    start_cleanly,
)

TINY = ["--embed-dim", "8", "--hidden-size", "32", "--num-layers", "1", "--dropout", "0.0",
        "--seq-len", "64", "--batch-size", "16", "--lr", "0.01", "--no-progress"]


def test_chunks_pad_and_teacher_forcing():
    seqs = [np.arange(2, 12), np.arange(2, 7)]
    chunks = make_chunks(seqs, seq_len=4, min_chunk=2)
    # 10 -> 4,4,2 ; 5 -> 4,(1 dropped)
    assert chunks.shape == (4, 4)
    assert chunks[2].tolist() == [10, 11, PAD, PAD]
    inputs = inputs_for(chunks, bos=39)
    assert inputs[2].tolist() == [39, 10, 11, 0]
    with pytest.raises(ValueError, match="no chunk of at least 16"):
        make_chunks([np.arange(5)], seq_len=32, min_chunk=16)


def test_chunks_never_start_on_a_hold_that_holds_nothing():
    R, H = 0, 1
    # a note (token 10) held across the chunk boundary at step 4, then a rest held across 8
    seq = np.array([10, H, H, H, H, H, 12, R, H, H, 14, H])
    counts = {}
    chunks = make_chunks([seq], seq_len=4, min_chunk=2, counts=counts)
    assert chunks[1].tolist() == [10, H, 12, R]  # the held note is struck again
    assert chunks[2].tolist() == [R, H, 14, H]  # a HOLD after a rest is a rest
    assert counts == {"restruck": 2, "short_tails": 0}
    assert not (chunks[:, 0] == H).any()
    untouched = np.array([11, H, H])
    assert start_cleanly(untouched, np.array([10]))[0] is untouched


@pytest.mark.statistical
def test_tiny_pretrain_on_real_tunes_lowers_validation_nll(tmp_path, record_property):
    """Over test seeds 0-4: valid NLL 1.31-1.88 after epoch 1, 1.06-1.10 after epoch 4
    (log 39 = 3.66), so it falls by at least 0.22 nats on every seed."""
    out = tmp_path / "prior"
    code = cli(["pretrain", "--corpus", "irish", "--corpus-limit", "40", "--out", str(out),
                "--max-epochs", "4", "--seed", str(seed(0)), *TINY])
    assert code == 0
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    nll = [float(r["valid_nll"]) for r in rows]
    record_property("first_valid_nll", round(nll[0], 4))
    record_property("last_valid_nll", round(nll[-1], 4))
    assert nll[-1] < nll[0] < np.log(39)  # learns, and beats the uniform guess
    model = load_model(out)
    prov = load_provenance(out)
    assert prov.kind == "prior" and "irish" in prov.corpus
    assert prov.environment["packages"]["numpy"] == np.__version__ and prov.environment["python"]
    assert prov.metrics["valid_nll"] == pytest.approx(min(nll))
    assert 0 < prov.metrics["valid_accuracy"] <= 1
    # note accuracy counts only onsets: lower than token accuracy, which is mostly HOLD
    assert 0 <= prov.metrics["valid_note_accuracy"] < prov.metrics["valid_accuracy"]
    assert all(0 <= float(r["valid_note_accuracy"]) <= 1 for r in rows)
    assert model.config.hidden_size == 32


def test_killed_run_resumes_and_ends_where_an_unbroken_run_ends(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    seqs = {"train": [rng.integers(0, 39, 64) for _ in range(20)], "valid": [rng.integers(0, 39, 64)]}
    cfg = PretrainConfig(embed_dim=4, hidden_size=8, num_layers=1, dropout=0.0, seq_len=32,
                         batch_size=8, max_epochs=3, patience=10)
    pretrain(cfg, tmp_path / "whole", device="cpu", progress=False, sequences=seqs)

    from rlmusic.models.pretrain import Trainer

    original = Trainer.save_checkpoint

    def save_then_die(self):
        original(self)
        raise KeyboardInterrupt  # killed right after the first checkpoint

    monkeypatch.setattr(Trainer, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, tmp_path / "killed", device="cpu", progress=False, sequences=seqs)
    monkeypatch.setattr(Trainer, "save_checkpoint", original)
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    with pytest.raises(ValueError, match="pass --resume"):
        pretrain(cfg, tmp_path / "killed", device="cpu", progress=False, sequences=seqs)
    longer = PretrainConfig(**{**cfg.__dict__, "max_epochs": 4})
    with pytest.raises(ValueError, match="different config"):
        pretrain(longer, tmp_path / "killed", device="cpu", resume=True, progress=False, sequences=seqs)
    pretrain(cfg, tmp_path / "killed", device="cpu", resume=True, progress=False, sequences=seqs)

    whole, resumed = load_model(tmp_path / "whole"), load_model(tmp_path / "killed")
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    with open(tmp_path / "killed" / "metrics.csv") as fh:
        assert [r["epoch"] for r in csv.DictReader(fh)] == ["1", "2", "3"]


def test_bad_config_key_is_named(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("hiden_size = 3\n")
    with pytest.raises(ValueError, match="hiden_size"):
        cli_strict(["pretrain", "--config", str(toml), "--out", str(tmp_path / "o")])


def cli_strict(argv):
    from rlmusic.cli.main import build_parser
    from rlmusic.cli.pretrain import config_from_args

    args = build_parser(argv[0]).parse_args(argv[1:])
    return config_from_args(args)
