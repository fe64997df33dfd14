import json
import re

import numpy as np
import pytest
import torch

from rlmusic.models.checkpoint import Provenance, load_model, load_provenance, save_model
from rlmusic.models.lstm import MelodyLSTM, ModelConfig
from rlmusic.music.representation import Vocabulary, VocabularyMismatchError

TINY = dict(embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0)


def tiny(**kw) -> MelodyLSTM:
    torch.manual_seed(0)
    return MelodyLSTM(ModelConfig(**{**TINY, **kw})).eval()


def test_forward_shapes_and_vocab_sizes():
    m = tiny()
    x = torch.randint(0, m.vocab.input_size, (3, 10))
    logits, (h, c) = m(x)
    assert logits.shape == (3, 10, m.vocab.size)
    assert h.shape == c.shape == (2, 3, 16)
    assert m.embedding.num_embeddings == m.vocab.size + 1  # BOS is input-only


def test_step_matches_forward():
    m = tiny()
    x = torch.randint(0, m.vocab.size, (4, 12))
    full, _ = m(x)
    state = None
    for t in range(12):
        logits, state = m.step(x[:, t], state)
        torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


def test_log_probs_sum_matches_stepwise_softmax():
    m = tiny()
    tokens = torch.randint(0, m.vocab.size, (2, 8))
    lp = m.log_probs(tokens)
    state, token, manual = None, torch.full((2,), m.vocab.BOS), []
    for t in range(8):
        logits, state = m.step(token, state)
        manual.append(torch.log_softmax(logits, -1).gather(1, tokens[:, t : t + 1])[:, 0])
        token = tokens[:, t]
    torch.testing.assert_close(lp, torch.stack(manual, 1), atol=1e-5, rtol=1e-5)


def test_sampling_is_seeded_and_respects_primer_and_top_k():
    m = tiny()
    a = m.sample(5, 20, generator=torch.Generator().manual_seed(1))
    b = m.sample(5, 20, generator=torch.Generator().manual_seed(1))
    c = m.sample(5, 20, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (5, 20) and int(a.max()) < m.vocab.size
    primed = m.sample(3, 10, primer=[10, 1, 1], generator=torch.Generator().manual_seed(0))
    assert (primed[:, :3] == torch.tensor([10, 1, 1])).all()
    # top_k=1 is greedy: every sample identical
    greedy = m.sample(4, 12, top_k=1, generator=torch.Generator().manual_seed(3))
    assert (greedy == greedy[0]).all()


def test_sampling_log_probs_are_the_forwards_and_give_the_same_kl():
    """The log-probabilities sampling returns are what a teacher-forced forward over the sampled
    melodies gives (at the temperature), and the exact KL computed from them is the same."""
    from rlmusic.evaluation.table import exact_kl

    m, prior = tiny(), tiny()
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    plain = m.sample(6, 24, temperature=0.7, generator=torch.Generator().manual_seed(4))
    tokens, log_probs = m.sample(6, 24, temperature=0.7, generator=torch.Generator().manual_seed(4),
                                 return_log_probs=True)
    assert torch.equal(tokens, plain) and log_probs.shape == (6, 24, m.vocab.size)
    with torch.no_grad():
        want = torch.log_softmax(m(m.with_bos(tokens))[0] / 0.7, dim=-1)
    torch.testing.assert_close(log_probs, want, atol=1e-5, rtol=0)
    by_forward = exact_kl(m, prior, tokens.numpy(), temperature=0.7)
    by_samples = exact_kl(None, prior, tokens.numpy(), model_log_probs=log_probs)
    assert by_forward["kl_per_step"] > 0.01
    for key, value in by_forward.items():
        assert by_samples[key] == pytest.approx(value, rel=1e-5)
    with pytest.raises(ValueError, match="needs the model or its log-probabilities"):
        exact_kl(None, prior, tokens.numpy())


@pytest.mark.parametrize("kw,match", [
    (dict(temperature=0), "temperature"),
    (dict(top_k=0), "top_k"),
    (dict(primer=[2] * 30), "primer has 30 steps"),
    (dict(primer=[99]), "outside the vocabulary"),
])
def test_sampling_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny().sample(2, 10, **kw)


def test_save_load_roundtrip_with_provenance(tmp_path):
    m = tiny()
    save_model(m, tmp_path / "m", Provenance(corpus="irish", git_commit="abc", metrics={"valid_nll": 1.5}))
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["vocabulary"]["tokens"][:3] == ["REST", "HOLD", "48"]
    loaded = load_model(tmp_path / "m")
    x = torch.randint(0, m.vocab.size, (2, 6))
    torch.testing.assert_close(loaded(x)[0], m(x)[0])
    assert load_provenance(tmp_path / "m").metrics["valid_nll"] == 1.5
    assert not loaded.training


def test_loading_another_vocabulary_raises(tmp_path):
    save_model(tiny(min_pitch=60, max_pitch=72), tmp_path / "small")
    with pytest.raises(VocabularyMismatchError, match="60..72"):
        load_model(tmp_path / "small", vocab=Vocabulary())


def test_unknown_config_key_and_missing_dir(tmp_path):
    with pytest.raises(ValueError, match="unknown model config keys \\['hidden'\\]"):
        ModelConfig.from_dict({"hidden": 3})
    with pytest.raises(FileNotFoundError, match="not a model directory"):
        load_model(tmp_path)


def test_weights_that_do_not_match_config_raise(tmp_path):
    save_model(tiny(), tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    meta["model"]["hidden_size"] = 32
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(VocabularyMismatchError, match="weights do not match"):
        load_model(tmp_path / "m")


def test_sample_tokens_batches_do_not_change_shape():
    from rlmusic.models.generate import sample_tokens

    m = tiny()
    out = sample_tokens(m, 10, 16, seed=3, batch_size=4)
    assert out.shape == (10, 16) and out.dtype == np.int64
    np.testing.assert_array_equal(out, sample_tokens(m, 10, 16, seed=3, batch_size=4))


# --------------------------------------------------------------------------- damaged model files


@pytest.fixture
def saved(tmp_path):
    return save_model(tiny(), tmp_path / "m")


def _edit_meta(directory, **changes):
    meta = json.loads((directory / "config.json").read_text())
    meta.update(changes)
    (directory / "config.json").write_text(json.dumps(meta))


def test_config_records_the_weights_checksum_and_the_shipped_prior_has_one(saved):
    import hashlib

    meta = json.loads((saved / "config.json").read_text())
    assert meta["weights_sha256"] == hashlib.sha256((saved / "model.safetensors").read_bytes()).hexdigest()
    from rlmusic.models.checkpoint import default_prior_dir, read_model_meta

    assert len(read_model_meta(default_prior_dir())["weights_sha256"]) == 64
    load_model()  # and it holds


def _flip_a_byte(directory):
    path = directory / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01
    path.write_bytes(bytes(data))


def _nan_weights(directory):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(directory / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name][0] = float("nan")
    save_file(tensors, str(directory / "model.safetensors"))
    _edit_meta(directory, weights_sha256=None)  # a model saved without a checksum


def _truncated(directory):
    path = directory / "model.safetensors"
    path.write_bytes(path.read_bytes()[:40])
    _edit_meta(directory, weights_sha256=None)


@pytest.mark.parametrize("damage, message", [
    (_flip_a_byte, "is damaged or was replaced: its SHA-256 differs"),
    (_nan_weights, "holds NaN or infinite values"),
    (_truncated, "is damaged (not a safetensors file"),
    (lambda d: _edit_meta(d, format_version=99), "format_version 99 is newer than this rlmusic reads"),
    (lambda d: _edit_meta(d, format_version="1"), "format_version '1' is not a positive integer"),
    (lambda d: (d / "config.json").write_text('{"format_version": 1, "model": {'), "is damaged (not valid JSON"),
    (lambda d: (d / "config.json").write_bytes(b"\xff\xfe{}"), "is damaged (not valid JSON"),
])
def test_damaged_model_files_are_one_clear_error(saved, damage, message, capsys):
    damage(saved)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_model(saved)
    from rlmusic.cli.main import main

    assert main(["generate", "--model", str(saved), "-n", "1", "--steps", "8", "--out", str(saved.parent / "g")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlmusic generate: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (saved.parent / "g").exists()
