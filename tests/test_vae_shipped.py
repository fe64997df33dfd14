"""The VAE shipped in the package holds the melodies given to it: two-bar melodies written
here (tests/data/written_melodies.json, written before the model was trained, from no
corpus) and Bach chorale sopranos it never trained on come back from z = the posterior
mean by greedy free-running decoding on >= 95% of their 16th steps and >= 90% of their
onsets; the path between two of them passes through melodies in key. (The greedy paths'
smallest gap between the two likeliest tokens is 0.24 logits on the written melodies, so
another CPU's rounding cannot change a decoded token.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rlmusic.corpus.cache import load_corpus
from rlmusic.models import vae_explore as explore
from rlmusic.models.vae import load_vae
from rlmusic.models.vae_train import accuracies, evaluate_vae
from rlmusic.models.windows import melody_windows
from rlmusic.music.context import RuleContext
from rlmusic.music.metrics import music_theory_metrics
from rlmusic.music.representation import Note, notes_to_tokens

DATA = Path(__file__).parent / "data"


def written(vocab) -> dict[str, np.ndarray]:
    melodies = json.loads((DATA / "written_melodies.json").read_text())["melodies"]
    return {name: notes_to_tokens([Note(s, d, p) for p, s, d in notes], vocab, 32) for name, notes in melodies.items()}


def test_the_two_bar_vae_gives_back_melodies_written_here(record_property):
    vae = load_vae()
    mine = written(vae.vocab)
    x = torch.as_tensor(np.stack(list(mine.values())))
    got = vae.decode(vae.posterior_mean(x))
    each = {name: accuracies(got[i : i + 1], x[i : i + 1]) for i, name in enumerate(mine)}
    for name, acc in each.items():
        record_property(name, round(acc["token_accuracy"], 3))
    total = accuracies(got, x)
    assert total["token_accuracy"] >= 0.95 and total["onset_accuracy"] >= 0.90, each


def test_the_two_bar_vae_gives_back_bach_sopranos_it_never_trained_on(record_property):
    vae = load_vae()
    bach = load_corpus("bach", vocab=vae.vocab, progress=False)  # its test split: never trained on
    figures = evaluate_vae(vae, melody_windows(bach.split("test"), 32, hop=32))
    record_property("token_accuracy", round(figures["token_accuracy"], 4))
    record_property("onset_accuracy", round(figures["onset_accuracy"], 4))
    assert figures["token_accuracy"] >= 0.95 and figures["onset_accuracy"] >= 0.90


def test_the_path_between_two_written_melodies_stays_in_key():
    vae = load_vae()
    mine = written(vae.vocab)
    path, _ = explore.interpolate(vae, mine["twinkle"], mine["ode to joy"], 7)
    ctx = RuleContext(vocab=vae.vocab)
    for point in path:
        assert 1 - music_theory_metrics(point[None], ctx)["onsets_not_in_key"] >= 0.9
        rest_then_hold = (point[:-1] == vae.vocab.REST) & (point[1:] == vae.vocab.HOLD)
        assert not rest_then_hold.any()  # a hold after a rest holds nothing
