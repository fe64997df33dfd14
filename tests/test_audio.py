"""rlmusic.audio: real synthesis on the grid, loudness, formats, cache, routes and errors."""

from __future__ import annotations

import io
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rlmusic.audio import render as render_module
from rlmusic.audio import synth
from rlmusic.audio.render import (
    PEAK_LIMIT_DBFS,
    RELEASE_TAIL,
    TARGET_RMS_DBFS,
    clip_audio,
    duration_seconds,
    render,
    render_samples,
    render_to_file,
)
from rlmusic.audio.synth import AudioError, find_soundfont, instrument_program, synth_route
from rlmusic.music.representation import DEFAULT_VOCAB as V
from rlmusic.music.representation import load_midi

DATA = Path(__file__).parent / "data"
SR = 22050  # tests render at a lower rate to stay fast


def melody(pitches=(60, 64, 67, 72), note_steps=4, rest_steps=0) -> list[int]:
    tokens = []
    for p in pitches:
        tokens += [V.pitch_to_token(p)] + [V.HOLD] * (note_steps - 1) + [V.REST] * rest_steps
    return tokens


def decode(data: bytes) -> tuple[np.ndarray, int]:
    x, sr = soundfile.read(io.BytesIO(data), dtype="float32")
    return x, sr


def dominant_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


def installed_routes() -> list[str]:
    routes = []
    for route, module in (("fluidsynth", "fluidsynth"), ("tinysoundfont", "tinysoundfont")):
        try:
            __import__(module)
        except (ImportError, OSError):
            continue
        routes.append(route)
    return routes


ROUTES = installed_routes()


@pytest.fixture(params=ROUTES)
def route(request, monkeypatch):
    monkeypatch.setenv("RLMUSIC_SYNTH", request.param)
    return request.param


def test_synth_route_names_synthesiser_and_soundfont():
    text = synth_route()
    assert text.split()[0] in synth.ROUTES
    assert ".sf2" in text


def test_at_least_one_route_is_installed():
    assert ROUTES, "neither pyfluidsynth+libfluidsynth nor tinysoundfont is installed"


@pytest.mark.parametrize("instrument,pitch", [("flute", 69), ("violin", 76), ("piano", 57)])
def test_plays_the_pitch_asked_for(route, instrument, pitch):
    # one long note: the strongest partial of the sustained part is the fundamental
    tokens = [V.pitch_to_token(pitch)] + [V.HOLD] * 15
    x = render_samples(tokens, instrument=instrument, sample_rate=SR)
    sustained = x[int(0.3 * SR) : int(1.8 * SR)]
    expected = 440.0 * 2 ** ((pitch - 69) / 12)
    assert dominant_hz(sustained, SR) == pytest.approx(expected, rel=0.02)


def test_instruments_sound_different(route):
    tokens = melody()
    piano = render_samples(tokens, instrument="piano", sample_rate=SR)
    flute = render_samples(tokens, instrument="flute", sample_rate=SR)
    assert piano.shape == flute.shape
    corr = np.corrcoef(piano, flute)[0, 1]
    assert abs(corr) < 0.5


def test_notes_start_on_the_grid(route):
    # note at step 0, silence, note at step 16 (= 2.0 s at 120 bpm)
    tokens = [V.pitch_to_token(67)] + [V.HOLD] * 3 + [V.REST] * 12 + [V.pitch_to_token(67)] + [V.HOLD] * 3
    x = render_samples(tokens, tempo=120, instrument="flute", sample_rate=SR)

    def rms(a, b):
        return float(np.sqrt(np.mean(x[int(a * SR) : int(b * SR)] ** 2)))

    assert rms(1.85, 1.98) < 0.2 * rms(2.05, 2.3)  # quiet before the second onset, loud after
    assert rms(0.05, 0.3) > 5 * rms(1.85, 1.98)


def test_ogg_duration_loudness_and_mono(route):
    tokens = melody(rest_steps=4)  # ends with a rest: the rest still counts in the length
    data = render(tokens, tempo=100, sample_rate=SR)
    assert data[:4] == b"OggS"
    x, sr = decode(data)
    assert sr == SR and x.ndim == 1
    assert len(x) / sr == pytest.approx(duration_seconds(tokens, 100), abs=1e-3)
    assert duration_seconds(tokens, 100) == pytest.approx(32 * 0.15 + RELEASE_TAIL)
    rms_db = 20 * np.log10(np.sqrt(np.mean(x**2)))
    assert rms_db == pytest.approx(TARGET_RMS_DBFS, abs=1.5)
    assert np.abs(x).max() <= 10 ** (PEAK_LIMIT_DBFS / 20) + 0.05  # Vorbis may overshoot a bit
    assert np.abs(x[-20:]).max() < 0.01  # faded out: no click at the end


def test_loudness_is_normalised_across_instruments_and_velocity():
    quiet = render_samples(melody(), instrument="flute", sample_rate=SR)
    loud = render_samples(melody(), instrument="trumpet", sample_rate=SR)
    for x in (quiet, loud):
        assert 20 * np.log10(np.sqrt(np.mean(x**2))) == pytest.approx(TARGET_RMS_DBFS, abs=1.0)


def test_wav_on_request_and_render_to_file(tmp_path):
    tokens = melody()
    data = render(tokens, fmt="wav", sample_rate=SR)
    assert data[:4] == b"RIFF"
    x, sr = decode(data)
    assert len(x) / sr == pytest.approx(duration_seconds(tokens), abs=1e-3)
    path = render_to_file(tokens, tmp_path / "clip.wav", sample_rate=SR)
    assert path.read_bytes()[:4] == b"RIFF"
    ogg = render_to_file(tokens, tmp_path / "clip.ogg", sample_rate=SR)
    assert ogg.read_bytes()[:4] == b"OggS"


def test_timing_is_repeatable():
    tokens = melody()
    a = render_samples(tokens, sample_rate=SR)
    b = render_samples(tokens, sample_rate=SR)
    assert a.shape == b.shape
    # only a faint reverb residual may differ (FluidSynth's reverb keeps its modulation)
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.1 * np.sqrt(np.mean(a**2))


def test_renders_from_pretty_midi():
    pm = load_midi(DATA / "melody.mid")
    x, sr = decode(render(pm, sample_rate=SR))
    assert len(x) / sr == pytest.approx(pm.get_end_time() + RELEASE_TAIL, abs=1e-3)
    assert np.sqrt(np.mean(x**2)) > 0.05
    chords = load_midi(DATA / "chords.mid")  # polyphony is fine for audio
    y, _ = decode(render(chords, instrument=None, fmt="wav", sample_rate=SR))
    assert np.sqrt(np.mean(y**2)) > 0.05


def test_all_rests_render_silence_of_the_right_length():
    tokens = [V.REST] * 8
    x = render_samples(tokens, sample_rate=SR)
    assert len(x) == round(duration_seconds(tokens) * SR)
    assert np.all(np.isfinite(x)) and np.abs(x).max() < 1e-3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"instrument": "kazoo"}, "unknown instrument 'kazoo'; valid: piano"),
        ({"instrument": 128}, "0..127"),
        ({"fmt": "mp3"}, "unknown audio format 'mp3'"),
        ({"tempo": 0}, "tempo must be positive"),
        ({"sample_rate": 100}, "sample_rate"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render(melody(), **kwargs)


def test_empty_and_out_of_vocabulary_tokens_raise():
    with pytest.raises(ValueError, match="empty"):
        render([])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        render([V.size + 3])


def test_instrument_names_map_to_general_midi():
    assert instrument_program("piano") == 0
    assert instrument_program("Flute") == 73
    assert instrument_program("violin") == 40
    assert instrument_program(41) == 41


def test_clip_audio_renders_once_then_serves_from_cache(tmp_path, monkeypatch):
    tokens = melody()
    calls = []
    real_render = render
    monkeypatch.setattr(render_module, "render", lambda *a, **k: calls.append(1) or real_render(*a, **k))
    first = clip_audio(7, tokens, tmp_path, sample_rate=SR)
    assert first.parent == tmp_path and first.name.startswith("7-") and first.suffix == ".ogg"
    stamp = first.stat().st_mtime_ns
    second = clip_audio(7, tokens, tmp_path, sample_rate=SR)
    assert second == first and calls == [1] and first.stat().st_mtime_ns == stamp
    # anything that changes the sound is a different file
    flute = clip_audio(7, tokens, tmp_path, instrument="flute", sample_rate=SR)
    other = clip_audio(7, tokens[:-1], tmp_path, sample_rate=SR)
    assert len({first, flute, other}) == 3 and calls == [1, 1, 1]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left


def test_clip_audio_rejects_unsafe_keys(tmp_path):
    for bad in ("../x", "", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="clip id or key"):
            clip_audio(bad, melody(), tmp_path)


def test_concurrent_renders_do_not_mix(tmp_path):
    a_tokens, b_tokens = melody((60, 62)), melody((72, 74, 76, 77))
    results: dict[str, Path] = {}

    def work(name, tokens):
        results[name] = clip_audio(name, tokens, tmp_path, sample_rate=SR)

    threads = [threading.Thread(target=work, args=(n, t)) for n, t in (("a", a_tokens), ("b", b_tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, tokens in (("a", a_tokens), ("b", b_tokens)):
        x, sr = decode(results[name].read_bytes())
        assert len(x) / sr == pytest.approx(duration_seconds(tokens), abs=1e-3)


def test_no_synthesiser_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(synth, "_synths", {})
    monkeypatch.setenv("RLMUSIC_SYNTH", "tinysoundfont")
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)  # import fails
    with pytest.raises(AudioError, match="no synthesiser available.*fluidsynth"):
        render(melody())


def test_bad_route_and_soundfont_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("RLMUSIC_SYNTH", "beeper")
    with pytest.raises(ValueError, match="valid: fluidsynth, tinysoundfont"):
        synth_route()
    monkeypatch.delenv("RLMUSIC_SYNTH")
    monkeypatch.setenv("RLMUSIC_SOUNDFONT", str(tmp_path / "missing.sf2"))
    with pytest.raises(AudioError, match="is not a file"):
        synth_route()


def test_bundled_soundfont_when_debian_has_none(monkeypatch):
    monkeypatch.setattr(synth, "DEBIAN_SOUNDFONTS", ())
    monkeypatch.delenv("RLMUSIC_SOUNDFONT", raising=False)
    assert find_soundfont().name == "TimGM6mb.sf2"
    tokens = [V.pitch_to_token(69)] + [V.HOLD] * 15
    x = render_samples(tokens, instrument="flute", sample_rate=SR)
    assert dominant_hz(x[int(0.3 * SR) : int(1.8 * SR)], SR) == pytest.approx(440, rel=0.02)


@pytest.mark.skipif("tinysoundfont" not in ROUTES, reason="tinysoundfont not installed")
def test_pip_only_route_when_libfluidsynth_is_missing(monkeypatch):
    monkeypatch.setattr(synth, "_synths", {})
    monkeypatch.delenv("RLMUSIC_SYNTH", raising=False)
    monkeypatch.setitem(sys.modules, "fluidsynth", None)  # as without Debian's libfluidsynth
    assert synth_route().startswith("tinysoundfont")
    tokens = [V.pitch_to_token(69)] + [V.HOLD] * 15
    x = render_samples(tokens, instrument="violin", sample_rate=SR)
    assert dominant_hz(x[int(0.3 * SR) : int(1.8 * SR)], SR) == pytest.approx(440, rel=0.02)
