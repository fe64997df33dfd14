"""Melodies to audio files: tokens (or a ``PrettyMIDI``) played on the process's synth,
loudness-normalised, with a short release tail, encoded as OGG Vorbis (WAV on request).

``clip_audio`` caches each clip's file by a hash of everything that changes its sound,
so each clip renders once. A 16-second clip renders in tens of milliseconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlmusic.audio.synth import VELOCITY, Event, get_synth, instrument_program
from rlmusic.fileio import write_atomic
from rlmusic.music.representation import (
    DEFAULT_VOCAB,
    STEPS_PER_QUARTER,
    Vocabulary,
    tokens_to_notes,
)
from rlmusic.runtime import home

RELEASE_TAIL = 0.5  # seconds of audio kept after the clip's last step (release, reverb)
FADE_OUT = 0.03  # seconds of linear fade at the very end, so the cut never clicks
TARGET_RMS_DBFS = -20.0  # loudness target of every clip
PEAK_LIMIT_DBFS = -1.0  # ... unless that would push a peak above this
FORMATS: dict[str, tuple[str, str]] = {  # fmt -> (soundfile format, subtype)
    "ogg": ("OGG", "VORBIS"),
    "wav": ("WAV", "PCM_16"),
}
OGG_COMPRESSION = 0.5  # soundfile's compression_level for Vorbis (0 best quality .. 1 smallest)
_CACHE_VERSION = 1  # bump when a change here alters the sound of a cached clip


# --------------------------------------------------------------------------- rendering


def step_seconds(tempo: float) -> float:
    """Length of one 16th-note step at ``tempo`` quarter notes per minute."""
    if not tempo > 0:
        raise ValueError(f"tempo must be positive, got {tempo}")
    return 60.0 / tempo / STEPS_PER_QUARTER


def duration_seconds(tokens: Sequence[int], tempo: float = 120.0) -> float:
    """Length of the audio ``render`` makes of ``tokens``: every step, then the release tail."""
    return len(tokens) * step_seconds(tempo) + RELEASE_TAIL


def _token_events(tokens, vocab: Vocabulary, tempo: float) -> tuple[list[Event], float]:
    if len(tokens) == 0:
        raise ValueError("cannot render an empty token sequence")
    step = step_seconds(tempo)
    events = []
    for n in tokens_to_notes(tokens, vocab):
        events.append(Event(n.start * step, True, 0, n.pitch, VELOCITY))
        events.append(Event(n.end * step, False, 0, n.pitch, 0))
    return events, len(tokens) * step


def _midi_events(pm) -> tuple[list[Event], dict[int, int], float]:
    channels = [c for c in range(16) if c != 9]  # channel 10 is General MIDI drums
    tracks = [i for i in pm.instruments if i.notes]
    drums = [i for i in tracks if i.is_drum]
    if drums:
        warnings.warn(f"skipped {len(drums)} drum track(s): only pitched instruments are rendered", stacklevel=3)
    tracks = [i for i in tracks if not i.is_drum]
    if len(tracks) > len(channels):
        raise ValueError(f"MIDI has {len(tracks)} pitched instruments; at most {len(channels)} can be rendered")
    events, programs = [], {}
    for channel, inst in zip(channels, tracks):
        programs[channel] = inst.program
        for n in inst.notes:
            events.append(Event(n.start, True, channel, n.pitch, n.velocity))
            events.append(Event(n.end, False, channel, n.pitch, 0))
    return events, programs, float(pm.get_end_time())


def _normalise(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS to ``TARGET_RMS_DBFS`` capped so the peak stays under ``PEAK_LIMIT_DBFS``; fade out."""
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if rms > 1e-3:  # below -60 dBFS it is silence (dither): leave it alone
        gain = min(10 ** (TARGET_RMS_DBFS / 20) / rms, 10 ** (PEAK_LIMIT_DBFS / 20) / peak)
        x = x * np.float32(gain)
    fade = min(len(x), int(FADE_OUT * sample_rate))
    if fade:
        x[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return x


def render_samples(
    tokens_or_pm,
    *,
    vocab: Vocabulary = DEFAULT_VOCAB,
    tempo: float = 120.0,
    instrument: str | int | None = "piano",
    sample_rate: int = 44100,
) -> np.ndarray:
    """Mono float32 samples in [-1, 1], normalised, ``duration_seconds`` long for tokens.

    ``instrument=None`` keeps a PrettyMIDI's own programs (tokens then play the piano).
    """
    if hasattr(tokens_or_pm, "instruments"):
        events, programs, end = _midi_events(tokens_or_pm)
        if instrument is not None:
            programs = dict.fromkeys(programs, instrument_program(instrument))
    else:
        events, end = _token_events(tokens_or_pm, vocab, tempo)
        programs = {0: instrument_program("piano" if instrument is None else instrument)}
    n_samples = int(round((end + RELEASE_TAIL) * sample_rate))
    x = get_synth(sample_rate).play(events, programs, n_samples)
    return _normalise(x, sample_rate)


def encode(samples: np.ndarray, sample_rate: int, fmt: str = "ogg") -> bytes:
    """Encode mono float samples as ``fmt`` (``ogg`` Vorbis or ``wav`` 16-bit)."""
    import soundfile

    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; valid: {', '.join(FORMATS)}")
    container, subtype = FORMATS[fmt]
    buf = io.BytesIO()
    extra = {"compression_level": OGG_COMPRESSION} if fmt == "ogg" else {}
    soundfile.write(buf, samples, sample_rate, format=container, subtype=subtype, **extra)
    return buf.getvalue()


def render(
    tokens_or_pm,
    *,
    vocab: Vocabulary = DEFAULT_VOCAB,
    tempo: float = 120.0,
    instrument: str | int | None = "piano",
    fmt: str = "ogg",
    sample_rate: int = 44100,
) -> bytes:
    """Tokens or a ``PrettyMIDI`` to encoded audio bytes (OGG Vorbis by default)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; valid: {', '.join(FORMATS)}")
    samples = render_samples(
        tokens_or_pm, vocab=vocab, tempo=tempo, instrument=instrument, sample_rate=sample_rate
    )
    return encode(samples, sample_rate, fmt)


def render_to_file(tokens_or_pm, path, *, fmt: str | None = None, **kwargs) -> Path:
    """``render`` into ``path``; the format defaults to the file's suffix (.ogg or .wav)."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    write_atomic(path, render(tokens_or_pm, fmt=fmt, **kwargs), fsync=False)
    return path


def cache_key(
    tokens: Sequence[int],
    *,
    vocab: Vocabulary = DEFAULT_VOCAB,
    tempo: float = 120.0,
    instrument: str | int = "piano",
    fmt: str = "ogg",
    sample_rate: int = 44100,
) -> str:
    """Hash of everything that changes a clip's sound: tokens, instrument, tempo, synth, soundfont."""
    synth = get_synth(sample_rate)
    sf = synth.soundfont
    blob = {
        "v": _CACHE_VERSION,
        "tokens": [int(t) for t in vocab.validate(tokens)],
        "vocab": [vocab.min_pitch, vocab.max_pitch],
        "tempo": float(tempo),
        "program": instrument_program(instrument),
        "fmt": fmt,
        "sample_rate": sample_rate,
        "route": synth.route,
        "soundfont": [sf.name, sf.stat().st_size],
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def default_cache_dir() -> Path:
    """``$RLMUSIC_HOME/audio``: where the app and ``generate --enqueue`` keep clip audio."""
    return home() / "audio"


def clip_audio(
    clip_id_or_key: int | str,
    tokens: Sequence[int],
    cache_dir=None,
    *,
    vocab: Vocabulary = DEFAULT_VOCAB,
    tempo: float = 120.0,
    instrument: str | int = "piano",
    fmt: str = "ogg",
    sample_rate: int = 44100,
    refresh: bool = False,
) -> Path:
    """The clip's audio file under ``cache_dir``, rendered only when not there yet (or,
    with ``refresh``, again: the file's bytes failed a check).

    The file name is ``<clip>-<hash>.<fmt>``: the hash covers tokens, instrument, tempo,
    synthesiser and soundfont, so a changed clip or setting never plays stale audio.
    ``cache_dir`` defaults to ``default_cache_dir()``. Safe under concurrent callers
    (files are renamed into place).
    """
    name = str(clip_id_or_key)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name.startswith("."):
        raise ValueError(f"clip id or key must be 1-64 of [A-Za-z0-9_.-], got {name!r}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown audio format {fmt!r}; valid: {', '.join(FORMATS)}")
    key = cache_key(
        tokens, vocab=vocab, tempo=tempo, instrument=instrument, fmt=fmt, sample_rate=sample_rate
    )
    path = Path(cache_dir or default_cache_dir()) / f"{name}-{key}.{fmt}"
    if refresh or not path.is_file():
        data = render(
            tokens, vocab=vocab, tempo=tempo, instrument=instrument, fmt=fmt, sample_rate=sample_rate
        )
        write_atomic(path, data, fsync=False)
    return path
