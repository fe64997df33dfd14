import json

import numpy as np
import pretty_midi
import pytest
import torch

from rlmusic.cli.main import main as cli
from rlmusic.models.checkpoint import save_model
from rlmusic.models.generate import read_manifest
from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.music.representation import Vocabulary, midi_to_tokens, tokens_to_notes


@pytest.fixture
def tiny_model(tmp_path):
    torch.manual_seed(0)
    model = MelodyLSTM(ModelConfig(embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0))
    return save_model(model, tmp_path / "tiny")


def test_generate_writes_midi_and_manifest_contract(tiny_model, tmp_path):
    out = tmp_path / "out"
    assert cli(["generate", "--model", str(tiny_model), "-n", "5", "--steps", "24", "--out", str(out),
                "--seed", "7"]) == 0
    rows = read_manifest(out)
    assert len(rows) == 5
    vocab = Vocabulary()
    for i, row in enumerate(rows):
        assert set(row) >= {"clip_id", "midi", "tokens", "model", "seed", "scores"}
        assert row["midi"] == f"{i:04d}.mid" and row["seed"] == 7 and row["clip_id"] is None
        assert len(row["tokens"]) == 24
        pm = pretty_midi.PrettyMIDI(str(out / row["midi"]))
        if tokens_to_notes(row["tokens"], vocab):
            # the file holds exactly the manifest's melody
            again = midi_to_tokens(pm, vocab, steps=24)
            np.testing.assert_array_equal(again, _canonical(row["tokens"], vocab))


def _canonical(tokens, vocab):
    """Tokens as they decode: a HOLD with nothing to hold is a rest."""
    from rlmusic.music.representation import notes_to_tokens

    return notes_to_tokens(tokens_to_notes(tokens, vocab), vocab, steps=len(tokens))


def test_same_seed_same_output_other_seed_other_output(tiny_model, tmp_path):
    def run(seed, name):
        cli(["generate", "--model", str(tiny_model), "-n", "4", "--steps", "16",
             "--out", str(tmp_path / name), "--seed", str(seed)])
        return [r["tokens"] for r in read_manifest(tmp_path / name)]

    first = run(1, "a")
    assert first == run(1, "b")
    assert first != run(2, "c")
    assert (tmp_path / "a" / "0000.mid").read_bytes() == (tmp_path / "b" / "0000.mid").read_bytes()


def test_primer_opens_every_clip(tiny_model, tmp_path):
    from rlmusic.music.representation import Note, notes_to_midi

    primer = tmp_path / "primer.mid"
    notes_to_midi([Note(0, 2, 60), Note(2, 2, 64), Note(4, 4, 43)]).write(str(primer))  # 43 folds to 55
    cli(["generate", "--model", str(tiny_model), "-n", "3", "--steps", "16", "--out", str(tmp_path / "p"),
         "--primer", str(primer)])
    v = Vocabulary()
    head = [v.pitch_to_token(60), 1, v.pitch_to_token(64), 1, v.pitch_to_token(55), 1, 1, 1]
    for row in read_manifest(tmp_path / "p"):
        assert row["tokens"][:8] == head


@pytest.mark.parametrize("argv,message", [
    (["-n", "0"], "need n >= 1"),
    (["--temperature", "0"], "temperature must be positive"),
    (["--instrument", "kazoo"], "unknown instrument 'kazoo'"),
])
def test_bad_arguments_give_one_clear_error(tiny_model, tmp_path, capsys, argv, message):
    code = cli(["generate", "--model", str(tiny_model), "--out", str(tmp_path / "x"), *argv])
    assert code == 1
    assert message in capsys.readouterr().err


def test_model_from_another_vocabulary_is_still_generated_in_its_own(tmp_path):
    torch.manual_seed(0)
    small = save_model(MelodyLSTM(ModelConfig(min_pitch=60, max_pitch=72, embed_dim=4, hidden_size=8,
                                              num_layers=1)), tmp_path / "small")
    cli(["generate", "--model", str(small), "-n", "2", "--steps", "16", "--out", str(tmp_path / "o")])
    meta = json.loads((small / "config.json").read_text())
    assert meta["vocabulary"]["min_pitch"] == 60
    for row in read_manifest(tmp_path / "o"):
        assert max(row["tokens"]) < Vocabulary(60, 72).size
