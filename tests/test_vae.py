"""The melody VAE: training reconstructs held-out melodies better than chance, the latent
path's ends reconstruct its inputs, the commands write their clips, and bad MIDI input
gets one clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pretty_midi
import pytest
import torch
from seeding import seed

from rlmusic.cli.main import main as cli_main
from rlmusic.corpus.cache import load_corpus
from rlmusic.models import vae_explore as explore
from rlmusic.models.vae import MelodyVAE, VAEConfig, load_vae, save_vae, slerp
from rlmusic.models.vae_train import (
    VAETrainConfig,
    VAETrainer,
    accuracies,
    elbo_terms,
    evaluate_vae,
)
from rlmusic.models.windows import melody_windows
from rlmusic.music.representation import (
    DEFAULT_VOCAB,
    EmptyMelodyError,
    NotMonophonicError,
    load_midi,
    midi_to_tokens,
    tokens_to_midi,
)

DATA = Path(__file__).parent / "data"
TINY = dict(embed_dim=16, encoder_hidden=32, latent_dim=16, decoder_hidden=64, batch_size=32, lr=1e-2,
            kl_weight=0.1, kl_anneal_steps=100, free_bits=0.25, token_dropout=0.3, patience=99)


@pytest.fixture(scope="module")
def irish():
    return load_corpus("irish", progress=False)


@pytest.fixture(scope="module")
def trained(irish, tmp_path_factory):
    """A tiny VAE trained for a few seconds on 2-bar windows of 120 Irish tunes (the epoch
    kept chosen on 10 valid tunes); held out: the windows of all 75 valid tunes (no tune of
    the training windows among them). On 60 tunes its own-z onset gain over another
    window's z was 0.041-0.071 over test seeds 0-9, too close to the 0.04 asked."""
    torch.manual_seed(seed(0))
    train = melody_windows(irish.split("train")[:120], 32, hop=32)
    valid = melody_windows(irish.split("valid"), 32, hop=32)
    out = tmp_path_factory.mktemp("vae")
    select = melody_windows(irish.split("valid")[:10], 32, hop=32)
    trainer = VAETrainer(VAETrainConfig(**TINY, max_epochs=14, seed=seed(0)), train, select, out, torch.device("cpu"),
                         progress=False)
    trainer.run()
    return load_vae(out), train, valid, out


@pytest.fixture(scope="module")
def memorised(irish, tmp_path_factory):
    """A tiny VAE that has 8 Irish 2-bar windows by heart (240 full-batch steps: after
    120, windows 3 and 6 came back at token accuracy 0.86-0.97 over test seeds 0-4; after
    240, 0.95-1.0 over seeds 0-11, 1.0 on most)."""
    torch.manual_seed(seed(0))
    eight = melody_windows(irish.split("train")[:60], 32, hop=32)[::50][:8]
    out = tmp_path_factory.mktemp("memorised")
    config = VAETrainConfig(**{**TINY, "batch_size": 8, "token_dropout": 0.0}, seed=seed(0))
    trainer = VAETrainer(config, eight, eight, out, torch.device("cpu"), progress=False)
    for _ in range(240):
        trainer.train_step(trainer.train_windows)
    trainer.save_best(evaluate_vae(trainer.model, eight))
    return load_vae(out), eight, out


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("step_codes", [0, 6])
def test_free_running_decoding_agrees_with_the_teacher_forced_pass_on_its_own_output(step_codes):
    """decode (step by step) and decode_logits (all steps at once) read the same z and,
    with step codes, the same code at each step: greedy output fed back gives itself."""
    torch.manual_seed(0)
    vae = MelodyVAE(VAEConfig(embed_dim=8, encoder_hidden=8, latent_dim=4, decoder_hidden=16, step_codes=step_codes))
    z = torch.randn(5, 4)
    out = vae.decode(z)
    with torch.no_grad():
        again = vae.decode_logits(z, vae.with_bos(out)).argmax(-1)
    assert torch.equal(out, again)
    assert (vae.to_steps is None) == (step_codes == 0)
    with pytest.raises(ValueError, match="step_codes must be >= 0"):
        VAEConfig(step_codes=-1).validate()


def test_own_inputs_feed_the_decoder_its_own_greedy_predictions(memorised):
    vae, eight, _ = memorised
    tokens = torch.as_tensor(eight)
    mu, _ = vae.encode(tokens)
    with torch.no_grad():
        _, _, plain = elbo_terms(vae, tokens, sample=False)
        _, _, own = elbo_terms(vae, tokens, sample=False, own=1.0)
        guess = vae.decode_logits(mu, vae.with_bos(tokens)).argmax(-1)
        want = vae.decode_logits(mu, vae.with_bos(guess))  # BOS, then its teacher-forced guesses
    torch.testing.assert_close(own, want)
    torch.testing.assert_close(plain, vae.decode_logits(mu, vae.with_bos(tokens)).detach())
    config = VAETrainConfig(**TINY, own_inputs=0.6, own_inputs_steps=10)
    trainer = VAETrainer(config, eight, eight, Path("unused"), torch.device("cpu"), progress=False)
    assert trainer.own_share() == 0.0
    trainer.step = 5
    assert trainer.own_share() == pytest.approx(0.3)
    trainer.step = 50
    assert trainer.own_share() == pytest.approx(0.6)
    with pytest.raises(ValueError, match="own_inputs must be in"):
        VAETrainConfig(own_inputs=1.0).validate()
    with pytest.raises(ValueError, match="select must be one of loss, reconstruction"):
        VAETrainConfig(select="best").validate()


def test_windows_start_cleanly_and_count_what_they_drop():
    held = [5, 1, 1, 1, 0, 0, 0, 0]  # a note held across the window edge, then silence
    counts = {}
    windows = melody_windows([np.array(held * 2)], window=4, hop=2, min_notes=1, counts=counts)
    # windows start at steps 0, 2, (4: silent, dropped), 6, 8, 10, (12: dropped)
    assert windows.tolist() == [[5, 1, 1, 1], [5, 1, 0, 0], [0, 0, 5, 1], [5, 1, 1, 1], [5, 1, 0, 0]]
    assert counts == {"windows": 5, "restruck": 2, "few_notes": 2, "short_pieces": 0}  # re-struck: 2 and 10
    with pytest.raises(ValueError, match="no window of 99 steps"):
        melody_windows([np.array(held)], window=99)


@pytest.mark.statistical
def test_tiny_vae_reconstructs_held_out_melodies_better_than_chance(trained, record_property):
    """Over test seeds 0-4: own z minus another's z, onsets +0.085-0.113, tokens +0.047-0.064."""
    vae, train, valid, out = trained
    held = evaluate_vae(vae, valid)
    for key in ("onset_accuracy", "other_z_onset_accuracy", "token_accuracy", "other_z_token_accuracy", "kl"):
        record_property(key, round(float(held[key]), 4))
    record_property("active_units", int(held["active_units"]))
    # the decoder guided by the melody's own z beats the same decoder given another melody's z
    # (it gets about 0.21 against 0.10 of 1,035 windows' onsets, 0.59 against 0.53 of their tokens)
    assert held["onset_accuracy"] > held["other_z_onset_accuracy"] + 0.04
    assert held["token_accuracy"] > held["other_z_token_accuracy"] + 0.02
    majority = max(np.mean(valid == t) for t in range(DEFAULT_VOCAB.size))  # always the commonest token
    assert held["token_accuracy"] > majority
    assert held["kl"] > 1.0 and held["active_units"] >= 4  # the latent is used
    prov = json.loads((out / "config.json").read_text())["provenance"]
    assert prov["kind"] == "vae" and prov["metrics"]["valid_onset_accuracy"] > 0
    assert (out / "metrics.csv").read_text().count("\n") == 15  # header + 14 epochs


@pytest.mark.statistical
def test_interpolation_ends_are_the_reconstructions_of_its_inputs(memorised, trained, record_property):
    """Over test seeds 0-4: the memorised ends come back at token and onset accuracy 1.0.
    A model that has its windows by heart maps the path between two of them onto little
    else (2-3 distinct melodies of 5 on most seeds), so the path moving through other
    melodies is asked of the VAE trained on 120 tunes, whose latent is smooth: 4-5 of 5."""
    vae, train, _ = memorised
    a, b = train[3], train[6]
    path, alphas = explore.interpolate(vae, a, b, n=5)
    assert path.shape == (5, 32) and alphas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    recon = vae.decode(vae.posterior_mean(torch.as_tensor(np.stack([a, b]))))
    np.testing.assert_array_equal(path[[0, -1]], recon.numpy())
    ends = accuracies(torch.as_tensor(path[[0, -1]]), torch.as_tensor(np.stack([a, b])))
    record_property("ends_token_accuracy", round(float(ends["token_accuracy"]), 4))
    record_property("ends_onset_accuracy", round(float(ends["onset_accuracy"]), 4))
    assert ends["token_accuracy"] > 0.9 and ends["onset_accuracy"] > 0.85
    smooth, _ = explore.interpolate(trained[0], a, b, n=5)
    record_property("distinct_path_melodies", len({p.tobytes() for p in smooth}))
    assert len({p.tobytes() for p in smooth}) >= 3  # the path moves through other melodies


def test_slerp_keeps_the_ends_and_the_norm_between_them():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    z = slerp(a, b, torch.linspace(0, 1, 5))
    torch.testing.assert_close(z[0], a)
    torch.testing.assert_close(z[-1], b)
    assert ((z.norm(dim=1) >= 1 - 1e-6) & (z.norm(dim=1) <= 2 + 1e-6)).all()


def test_sample_and_vary_are_seeded_and_amount_zero_reconstructs(trained):
    vae, train, _, _ = trained
    np.testing.assert_array_equal(explore.sample(vae, 4, seed=3), explore.sample(vae, 4, seed=3))
    same = explore.vary(vae, train[5], amount=0.0, n=3)
    np.testing.assert_array_equal(same, np.repeat(same[:1], 3, axis=0))
    far = explore.vary(vae, train[5], amount=3.0, n=6, seed=1)
    assert (far != same[0]).mean() > (same != same[0]).mean()
    with pytest.raises(ValueError, match="amount must be >= 0"):
        explore.vary(vae, train[5], amount=-1.0, n=2)


def test_a_melody_model_is_not_a_vae(tmp_path):
    from rlmusic.models.checkpoint import save_model
    from rlmusic.models.lstm import MelodyLSTM, ModelConfig

    save_model(MelodyLSTM(ModelConfig(hidden_size=8, embed_dim=4, num_layers=1)), tmp_path / "lstm")
    with pytest.raises(ValueError, match="not a VAE directory"):
        load_vae(tmp_path / "lstm")
    vae = MelodyVAE(VAEConfig(window=16, embed_dim=4, encoder_hidden=4, latent_dim=2, decoder_hidden=8))
    loaded = load_vae(save_vae(vae, tmp_path / "vae"))
    torch.testing.assert_close(loaded.state_dict(), vae.state_dict())
    weights = tmp_path / "vae" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + bytes(8))  # not the file config.json recorded
    with pytest.raises(ValueError, match="damaged or was replaced"):
        load_vae(tmp_path / "vae")


# --------------------------------------------------------------------------- MIDI in, clips out


def write_window_midis(folder: Path, windows: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, w in enumerate(windows):
        paths.append(folder / f"m{i}.mid")
        tokens_to_midi(w).write(str(paths[-1]))
    return paths


def vae_cli(*args) -> int:
    return cli_main(["vae", *map(str, args)])


def test_vae_commands_train_resume_interpolate_sample_vary(memorised, trained, tmp_path, capsys):
    vae, eight, vae_dir = memorised
    a, b = write_window_midis(tmp_path / "in", eight[[3, 6]])
    out = tmp_path / "path"
    assert vae_cli("interpolate", a, b, "--n", 4, "--out", out, "--vae", vae_dir, "--device", "cpu") == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["alpha"] for r in rows] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert all((out / r["midi"]).is_file() and r["steps"] == 32 for r in rows)
    want, _ = explore.interpolate(vae, eight[3], eight[6], n=4)
    assert [r["tokens"] for r in rows] == want.tolist()  # MIDI in -> the same melodies as tokens in
    assert vae_cli("sample", "-n", 3, "--out", tmp_path / "s", "--vae", vae_dir) == 0
    assert len((tmp_path / "s" / "manifest.jsonl").read_text().splitlines()) == 3
    assert vae_cli("vary", a, "--amount", 0.8, "-n", 2, "--out", tmp_path / "v", "--vae", vae_dir) == 0
    assert json.loads((tmp_path / "v" / "manifest.jsonl").read_text().splitlines()[0])["amount"] == 0.8

    corpus = tmp_path / "corpus"
    write_window_midis(corpus, trained[1][:24])
    flags = ["--corpus", f"midi:{corpus}", "--window", 32, "--embed-dim", 8, "--encoder-hidden", 8,
             "--latent-dim", 4, "--decoder-hidden", 16, "--batch-size", 16, "--no-progress", "--device", "cpu"]
    run = tmp_path / "run"
    assert vae_cli("train", "--out", run, "--max-epochs", 1, *flags) == 0
    assert "held-out reconstruction" in capsys.readouterr().out
    assert vae_cli("train", "--out", run, "--max-epochs", 1, *flags) == 1
    assert "already holds a training run" in capsys.readouterr().err
    assert vae_cli("train", "--out", run, "--max-epochs", 2, "--resume", *flags) == 0
    assert (run / "metrics.csv").read_text().count("\n") == 3  # header + epochs 1 and 2
    # a trained VAE may go on with its own predictions as inputs; other keys stay as they were
    assert vae_cli("train", "--out", run, "--max-epochs", 3, "--resume", "--own-inputs", 0.5, "--select",
                   "reconstruction", *flags) == 0
    assert (run / "metrics.csv").read_text().count("\n") == 4
    assert json.loads((run / "config.json").read_text())["provenance"]["metrics"]["epoch"] == 3  # best by the new yardstick
    assert vae_cli("train", "--out", run, "--max-epochs", 4, "--resume", "--kl-weight", 0.9, *flags) == 1
    assert "different config than the checkpoint's" in capsys.readouterr().err
    assert json.loads((run / "examples.json").read_text())  # held-out openings for Explore


def empty_midi(path: Path) -> Path:
    pm = pretty_midi.PrettyMIDI()
    pm.instruments.append(pretty_midi.Instrument(0))
    pm.write(str(path))
    return path


@pytest.mark.parametrize("name, error, words", [
    ("empty", EmptyMelodyError, "no (non-drum) notes"),
    ("chords.mid", NotMonophonicError, "is polyphonic"),
    ("satb.mid", NotMonophonicError, "4 tracks have notes"),
    ("melody.mid", ValueError, "120 steps long (7.5 bars of 4/4), longer than the VAE's window of 32 steps"),
])
def test_bad_melodies_get_one_clear_error(name, error, words, tmp_path, trained, capsys):
    vae_dir = trained[3]
    path = empty_midi(tmp_path / "empty.mid") if name == "empty" else DATA / name
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        explore.read_melody(path, DEFAULT_VOCAB, 32)
    assert vae_cli("vary", path, "--out", tmp_path / "o", "--vae", vae_dir) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlmusic vae: error: ") and words.split(" (")[0] in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_top_line_and_track_read_polyphonic_files(tmp_path):
    tokens, how = explore.read_melody(DATA / "satb.mid", DEFAULT_VOCAB, 128, track=0)
    assert how == "track 0 of 4" and len(tokens) == 128
    soprano = midi_to_tokens(load_midi(DATA / "satb.mid"), instrument=0)
    np.testing.assert_array_equal(tokens[: len(soprano)], soprano)
    chords, how = explore.read_melody(DATA / "chords.mid", DEFAULT_VOCAB, 128, top_line=True)
    assert "lower note(s) under the top line dropped" in how
    with pytest.raises(FileNotFoundError):
        explore.read_melody(tmp_path / "missing.mid", DEFAULT_VOCAB, 32)


def test_a_four_bar_vae_takes_what_a_two_bar_one_refuses(irish, tmp_path):
    four_bars = melody_windows(irish.split("test")[:1], 64, hop=64)[0]
    path = write_window_midis(tmp_path, four_bars[None])[0]
    with pytest.raises(ValueError, match="longer than the VAE's window of 32 steps"):
        explore.read_melody(path, DEFAULT_VOCAB, 32)
    tokens, _ = explore.read_melody(path, DEFAULT_VOCAB, 64)
    np.testing.assert_array_equal(tokens, four_bars)
    vae = MelodyVAE(VAEConfig(window=64, embed_dim=4, encoder_hidden=4, latent_dim=2, decoder_hidden=8))
    path, _ = explore.interpolate(vae, tokens, tokens[::-1].copy(), n=3)
    assert path.shape == (3, 64)
    with pytest.raises(ValueError, match="must be 64 steps"):
        explore.interpolate(vae, tokens[:32], tokens[:32], n=3)
