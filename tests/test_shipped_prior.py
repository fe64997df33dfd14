"""The prior shipped in the package: loads on a fresh machine, reports its figures, and
its samples, read back by pretty_midi and by music21, are monophonic, in range and
mostly in key (the corpus is transposed to C major / A minor: the white keys)."""

import numpy as np
import pretty_midi
import pytest
from music21 import converter

from rlmusic.cli.main import main as cli
from rlmusic.models.checkpoint import default_prior_dir, load_model, load_provenance
from rlmusic.models.generate import read_manifest
from rlmusic.music.representation import DEFAULT_VOCAB

WHITE_KEYS = {0, 2, 4, 5, 7, 9, 11}


def test_shipped_prior_loads_with_default_vocabulary_and_provenance():
    model = load_model(None, vocab=DEFAULT_VOCAB)
    prov = load_provenance(default_prior_dir())
    assert prov.kind == "prior" and prov.corpus.startswith("irish")
    assert prov.git_commit and prov.command
    # figures reported in docs/prior.md; far below the uniform guess log(39) = 3.66 nats
    assert prov.metrics["valid_nll"] < 1.0
    assert prov.metrics["valid_accuracy"] > 0.6
    assert model.config.max_steps >= 128
    size = sum(p.stat().st_size for p in default_prior_dir().iterdir())
    assert size < 8 * 2**20  # a few MB


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    out = tmp_path_factory.mktemp("prior_samples")
    assert cli(["generate", "-n", "24", "--steps", "64", "--seed", "0", "--out", str(out)]) == 0
    return out, read_manifest(out)


def test_samples_read_back_by_pretty_midi_are_monophonic_in_range_in_key(samples):
    out, rows = samples
    pitches = []
    for row in rows:
        notes = sorted(pretty_midi.PrettyMIDI(str(out / row["midi"])).instruments[0].notes,
                       key=lambda n: n.start)
        assert notes, row["midi"]
        for a, b in zip(notes, notes[1:]):
            assert b.start >= a.end - 1e-6, f"{row['midi']}: overlapping notes"
        pitches += [n.pitch for n in notes]
    pitches = np.array(pitches)
    assert pitches.min() >= 48 and pitches.max() <= 84
    in_key = np.isin(pitches % 12, list(WHITE_KEYS)).mean()
    assert in_key > 0.9, f"only {in_key:.1%} of notes in C major / A minor"


def test_samples_read_back_by_music21_are_single_notes(samples):
    out, rows = samples
    for row in rows[:6]:
        score = converter.parse(str(out / row["midi"]))
        flat = score.flatten()
        assert len(flat.getElementsByClass("Chord")) == 0
        notes = list(flat.notes)
        assert notes and all(48 <= n.pitch.midi <= 84 for n in notes)


# --------------------------------------------------------------------------- the shipped tuned models


@pytest.mark.parametrize("name, steps", [("rl-tuner", 32), ("structure", 128)])
def test_shipped_tuned_models_load_by_name_with_complete_provenance(name, steps):
    from rlmusic.models.checkpoint import shipped_models

    assert name in shipped_models()
    model = load_model(name, vocab=DEFAULT_VOCAB)  # a shipped model by name, on a fresh machine
    prov = load_provenance(name)
    assert prov.kind == "tuned" and prov.corpus.startswith("irish") and prov.parent_model == "shipped-prior"
    assert prov.reward_model is None and prov.git_commit and prov.command.startswith("rlmusic tune --preset " + name)
    assert prov.extra["tune_config"]["steps"] == steps and prov.extra["timesteps"] <= 300_000
    assert model.config == load_model(None).config  # tuned from the shipped prior, same architecture
    size = sum(p.stat().st_size for p in shipped_models()[name].iterdir())
    assert size < 8 * 2**20


def test_the_shipped_rl_tuner_model_does_what_its_preset_asks(tmp_path):
    """RL Tuner's rows that the tuned model must have moved, Magenta's definitions, on fresh
    samples (not the figures of its own evaluation): first note on the tonic, out-of-key notes."""
    from rlmusic.evaluation.table import evaluate_model

    prior = evaluate_model(None, n=300, steps=32, seed=7, device="cpu", corpus="none")
    tuned = evaluate_model("rl-tuner", n=300, steps=32, seed=7, device="cpu", corpus="none")
    assert prior["rl_tuner/starts_with_tonic"] < 0.2 < 0.5 < tuned["rl_tuner/starts_with_tonic"]  # the bar: 50%
    assert tuned["rl_tuner/notes_not_in_key"] <= prior["rl_tuner/notes_not_in_key"]
    assert 0.1 < tuned["kl_per_step"] < 0.6
