"""``rlmusic harmonize`` with the shipped model on real held-out chorale sopranos: the
soprano comes back note for note, four one-line voices in their registers; and every
input it must refuse, refused in one line with nothing written."""

from __future__ import annotations

import pretty_midi
import pytest
from seeding import seed

from rlmusic.cli.main import main
from rlmusic.corpus.chorale_corpus import load_chorales
from rlmusic.harmony.checkpoint import default_harmony_dir, load_harmonizer, read_harmony_meta
from rlmusic.harmony.gibbs import GibbsConfig
from rlmusic.harmony.harmonize import harmonize_file
from rlmusic.harmony.midi_io import VOICE_NAMES, read_score
from rlmusic.harmony.voice_leading import VOICE_RANGES, VOICES
from rlmusic.music.representation import Note, check_monophonic, notes_to_midi, tokens_to_notes


@pytest.fixture(scope="module")
def corpus():
    return load_chorales(progress=False)


@pytest.fixture(scope="module")
def model():
    return load_harmonizer()


def soprano_midi(chorale, vocab, path, tempo: float = 90.0):
    """A held-out chorale's soprano as Bach wrote it (original key), one track."""
    notes = [Note(n.start, n.duration, n.pitch - chorale.transposed_by)
             for n in tokens_to_notes(chorale.tokens[0], vocab)]
    pm = notes_to_midi(notes, tempo=tempo, program=73)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(chorale.bar_steps // 4, 4, 0.0))
    pm.write(str(path))
    return pm


def test_the_shipped_model_is_the_masked_one_with_provenance():
    meta = read_harmony_meta(default_harmony_dir())
    assert meta["kind"] == "masked" and meta["provenance"]["corpus"].startswith("chorales-")
    assert meta["provenance"]["metrics"]["valid_atb_nll_per_frame"] < 3.0
    assert sum(f.stat().st_size for f in default_harmony_dir().iterdir()) < 5e6


@pytest.mark.statistical
@pytest.mark.parametrize("which", [0, 5])
def test_a_held_out_chorale_keeps_its_soprano_with_four_voices_in_range(corpus, model, tmp_path, capsys, which,
                                                                        record_property):
    """Over test seeds 0-4 (both chorales): alto, tenor, bass notes in range 0.98-1.0;
    neighbouring voices' mean pitches 5.0-5.9 semitones apart."""
    chorale = corpus.split("test")[which]
    soprano_midi(chorale, corpus.vocab, tmp_path / "soprano.mid")
    melody = pretty_midi.PrettyMIDI(str(tmp_path / "soprano.mid"))
    out = tmp_path / "satb.mid"
    assert main(["harmonize", str(tmp_path / "soprano.mid"), "--out", str(out), "--seed", str(seed(3))]) == 0
    printed = capsys.readouterr().out
    assert "parallel fifths" in printed and "Bach's held-out chorales" in printed
    pm = pretty_midi.PrettyMIDI(str(out))
    assert [i.name for i in pm.instruments] == list(VOICE_NAMES)
    assert {i.program for i in pm.instruments} == {52}  # choir
    got = [(n.pitch, pm.time_to_tick(n.start), pm.time_to_tick(n.end), n.velocity) for n in pm.instruments[0].notes]
    want = [(n.pitch, melody.time_to_tick(n.start), melody.time_to_tick(n.end), n.velocity)
            for n in melody.instruments[0].notes]
    assert got == want and len(got) > 20  # the soprano, note for note (to the MIDI tick)
    score = read_score(out)
    means, insides = [], {}
    for voice, track in zip(VOICES, score.tracks):
        check_monophonic(track.notes)
        low, high = VOICE_RANGES[voice]
        pitches = [n.pitch for n in track.notes]
        means.append(sum(pitches) / len(pitches))
        if voice != "soprano":
            insides[voice] = sum(low - 2 <= p <= high + 2 for p in pitches) / len(pitches)
            record_property(f"{voice}_in_range", round(insides[voice], 4))
    record_property("least_gap_of_voice_means", round(min(a - b for a, b in zip(means, means[1:])), 4))
    assert all(inside > 0.9 for inside in insides.values()), insides
    assert means == sorted(means, reverse=True)
    assert max(n.end for t in score.tracks for n in t.notes) == chorale.steps


def test_same_seed_same_harmonisation_and_strings(corpus, model, tmp_path):
    soprano_midi(corpus.split("test")[1], corpus.vocab, tmp_path / "s.mid")
    fast = GibbsConfig(steps=16, repair_rounds=4)
    a = harmonize_file(tmp_path / "s.mid", model, seed=7, gibbs=fast)
    b = harmonize_file(tmp_path / "s.mid", model, seed=7, gibbs=fast)
    c = harmonize_file(tmp_path / "s.mid", model, seed=8, gibbs=fast)
    assert (a.tokens == b.tokens).all() and (a.tokens != c.tokens).any()
    assert [i.program for i in a.midi("strings").instruments] == [40, 40, 41, 42]


def write_notes(path, *tracks: list[tuple[int, float, float]]):
    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    for notes in tracks:
        inst = pretty_midi.Instrument(0)
        inst.notes = [pretty_midi.Note(90, p, s, e) for p, s, e in notes]
        pm.instruments.append(inst)
    pm.write(str(path))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: write_notes(d / "chord.mid", [(60, 0, 1), (64, 0, 1), (67, 1, 2)]), "not one line"),
    (lambda d: write_notes(d / "two.mid", [(72, 0, 1)], [(48, 0, 1)]), "--track N"),
    (lambda d: write_notes(d / "empty.mid", []), "no (non-drum) notes"),
    (lambda d: write_notes(d / "wide.mid", [(40, 0, 0.5), (90, 0.5, 1)]), "cannot be moved by octaves"),
    (lambda d: write_notes(d / "swing.mid", [(72, 0, 0.33), (74, 0.33, 0.5)]), "off the 16th-note grid"),
    (lambda d: (d / "bad.mid").write_bytes(b"not midi") and d / "bad.mid", "cannot read MIDI"),
    (lambda d: d / "missing.mid", "missing.mid"),
])
def test_inputs_it_cannot_harmonise_are_one_line_errors(tmp_path, capsys, make, message):
    path = make(tmp_path)
    out = tmp_path / "out.mid"
    assert main(["harmonize", str(path), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlmusic harmonize: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_a_track_of_a_multitrack_file_and_a_bad_out(tmp_path, capsys):
    path = write_notes(tmp_path / "two.mid", [(72, 0, 0.5), (74, 0.5, 1), (76, 1, 2)], [(48, 0, 2)])
    assert main(["harmonize", str(path), "--track", "0", "--out", str(tmp_path / "o.mid")]) == 0
    assert [n.pitch for n in pretty_midi.PrettyMIDI(str(tmp_path / "o.mid")).instruments[0].notes] == [72, 74, 76]
    capsys.readouterr()
    assert main(["harmonize", str(path), "--track", "5", "--out", str(tmp_path / "p.mid")]) == 1
    assert "track 5 does not exist" in capsys.readouterr().err
    assert main(["harmonize", str(path), "--track", "0", "--out", str(tmp_path / "o.wav")]) == 1
    assert "--out must name a .mid file" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["harmonize"], ["revise"], ["harmony", "corpus"], ["harmony", "train"],
                                     ["harmony", "evaluate"]])
def test_every_harmony_command_explains_itself(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0 and "--" in capsys.readouterr().out
