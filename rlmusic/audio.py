"""Melodies to audio: a General MIDI soundfont played by a software synthesiser.

Tokens (or a ``pretty_midi.PrettyMIDI``) are played note by note on one synthesiser
that is loaded once per process and reused, so a 16-second clip renders in tens of
milliseconds. The output is mono, loudness-normalised (so a clip is not preferred for
being louder), ends with a short release tail and is encoded for the browser as OGG
Vorbis (WAV on request). ``clip_audio`` caches each clip's file by a hash of
everything that changes its sound, so each clip renders once.

Two routes, tried in order (``RLMUSIC_SYNTH=fluidsynth|tinysoundfont`` forces one):

- ``fluidsynth``: pyfluidsynth over Debian's libfluidsynth (reverb included);
- ``tinysoundfont``: the ``tinysoundfont`` wheel from PyPI, which bundles its own
  synthesiser, for machines without libfluidsynth (no root).

Soundfont: ``RLMUSIC_SOUNDFONT`` when set, else Debian's FluidR3_GM, else the
TimGM6mb soundfont bundled with pretty_midi. With no synthesiser at all ``AudioError``
says what to install: there is no fallback to sine beeps.

This module knows nothing of the database, the app or training.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlmusic.representation import (
    DEFAULT_VOCAB,
    STEPS_PER_QUARTER,
    Vocabulary,
    tokens_to_notes,
)
from rlmusic.runtime import home

# General MIDI programs (0-based) of the instruments offered by name.
INSTRUMENTS: dict[str, int] = {
    "piano": 0,  # Acoustic Grand Piano
    "electric_piano": 4,
    "harpsichord": 6,
    "vibraphone": 11,
    "marimba": 12,
    "organ": 19,  # Church Organ
    "guitar": 24,  # Acoustic Guitar (nylon)
    "violin": 40,
    "cello": 42,
    "strings": 48,  # String Ensemble 1
    "trumpet": 56,
    "oboe": 68,
    "clarinet": 71,
    "flute": 73,
    "recorder": 74,
}

RELEASE_TAIL = 0.5  # seconds of audio kept after the clip's last step (release, reverb)
FADE_OUT = 0.03  # seconds of linear fade at the very end, so the cut never clicks
TARGET_RMS_DBFS = -20.0  # loudness target of every clip
PEAK_LIMIT_DBFS = -1.0  # ... unless that would push a peak above this
VELOCITY = 90  # MIDI velocity of token notes
FORMATS: dict[str, tuple[str, str]] = {  # fmt -> (soundfile format, subtype)
    "ogg": ("OGG", "VORBIS"),
    "wav": ("WAV", "PCM_16"),
}
OGG_COMPRESSION = 0.5  # soundfile's compression_level for Vorbis (0 best quality .. 1 smallest)
_CACHE_VERSION = 1  # bump when a change here alters the sound of a cached clip

DEBIAN_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
ROUTES = ("fluidsynth", "tinysoundfont")


class AudioError(RuntimeError):
    """No synthesiser or soundfont is available, or the synthesiser failed."""


@dataclass(frozen=True)
class _Event:
    time: float  # seconds
    on: bool
    channel: int
    pitch: int
    velocity: int

    def sort_key(self) -> tuple:
        return (self.time, self.on, self.channel, self.pitch)  # note-offs first at a tie


# --------------------------------------------------------------------------- instruments, soundfont


def instrument_program(instrument: str | int) -> int:
    """A General MIDI program 0..127 from a name in ``INSTRUMENTS`` or a number."""
    if isinstance(instrument, (int, np.integer)) and not isinstance(instrument, bool):
        if not 0 <= int(instrument) <= 127:
            raise ValueError(f"instrument program must be 0..127, got {instrument}")
        return int(instrument)
    key = str(instrument).strip().lower().replace(" ", "_")
    if key not in INSTRUMENTS:
        raise ValueError(f"unknown instrument {instrument!r}; valid: {', '.join(INSTRUMENTS)}")
    return INSTRUMENTS[key]


def find_soundfont() -> Path:
    """``RLMUSIC_SOUNDFONT``, else Debian's FluidR3_GM, else pretty_midi's TimGM6mb."""
    env = os.environ.get("RLMUSIC_SOUNDFONT")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise AudioError(f"RLMUSIC_SOUNDFONT={env} is not a file")
        return path
    for candidate in DEBIAN_SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    try:
        import pretty_midi

        bundled = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    except ImportError:  # pragma: no cover - pretty_midi is a dependency
        bundled = None
    if bundled is not None and bundled.is_file():
        return bundled
    raise AudioError(
        "no General MIDI soundfont found: install Debian's fluid-soundfont-gm "
        "or set RLMUSIC_SOUNDFONT to an .sf2 file"
    )


# --------------------------------------------------------------------------- synthesisers


class _Synth:
    """One loaded soundfont on one synthesiser; ``play`` is serialised by a lock."""

    route: str
    block = 1  # events are applied at multiples of this many samples

    def __init__(self, soundfont: Path, sample_rate: int):
        self.soundfont = soundfont
        self.sample_rate = sample_rate
        self.lock = threading.Lock()

    def play(self, events: list[_Event], programs: dict[int, int], n_samples: int) -> np.ndarray:
        """Mono float32 of ``n_samples``: events played from silence, then everything reset."""
        total = -(-n_samples // self.block) * self.block
        with self.lock:
            self._reset()
            for channel, program in programs.items():
                self._program(channel, program)
            chunks, cursor = [], 0
            for ev in sorted(events, key=_Event.sort_key):
                at = int(round(ev.time * self.sample_rate / self.block)) * self.block
                at = min(at, total)
                if at > cursor:
                    chunks.append(self._samples(at - cursor))
                    cursor = at
                if ev.on:
                    self._noteon(ev.channel, ev.pitch, ev.velocity)
                else:
                    self._noteoff(ev.channel, ev.pitch)
            if total > cursor:
                chunks.append(self._samples(total - cursor))
            self._reset()
        stereo = np.concatenate(chunks) if chunks else np.zeros((0, 2), np.float32)
        return stereo[:n_samples].mean(axis=1).astype(np.float32)


class _FluidSynth(_Synth):
    route = "fluidsynth"
    block = 64  # FluidSynth's internal block: keeping to it makes renders repeatable

    def __init__(self, soundfont: Path, sample_rate: int):
        super().__init__(soundfont, sample_rate)
        import fluidsynth  # raises ImportError when libfluidsynth is missing

        if not hasattr(fluidsynth, "Synth"):
            raise ImportError("the installed 'fluidsynth' module is not pyfluidsynth")
        # Reverb on (a dry sample sounds boxy); chorus off (it smears a solo line).
        # The reverb's modulation is not reset between renders, so two renders of a
        # clip differ by a faint reverb residual (about -40 dB); note timing is exact.
        settings = {"synth.chorus.active": 0}
        self._fs = fluidsynth.Synth(gain=0.5, samplerate=float(sample_rate), **settings)
        self._sfid = self._fs.sfload(str(soundfont))
        if self._sfid < 0:
            raise AudioError(f"FluidSynth could not load the soundfont {soundfont}")
        self.library = getattr(fluidsynth, "lib", None) or "libfluidsynth"

    def _reset(self) -> None:
        self._fs.system_reset()  # voices, controllers, programs

    def _program(self, channel: int, program: int) -> None:
        self._fs.program_select(channel, self._sfid, 0, program)

    def _noteon(self, channel: int, pitch: int, velocity: int) -> None:
        self._fs.noteon(channel, pitch, velocity)

    def _noteoff(self, channel: int, pitch: int) -> None:
        self._fs.noteoff(channel, pitch)

    def _samples(self, n: int) -> np.ndarray:
        raw = np.asarray(self._fs.get_samples(n), dtype=np.int16)  # interleaved stereo
        return raw.reshape(-1, 2).astype(np.float32) / 32768.0


class _TinySoundFont(_Synth):
    route = "tinysoundfont"

    def __init__(self, soundfont: Path, sample_rate: int):
        super().__init__(soundfont, sample_rate)
        import tinysoundfont

        self._ts = tinysoundfont.Synth(samplerate=sample_rate)
        try:
            self._sfid = self._ts.sfload(str(soundfont))
        except Exception as exc:  # the extension raises plain Exceptions
            raise AudioError(f"TinySoundFont could not load the soundfont {soundfont}: {exc}") from exc
        self.library = "tinysoundfont"

    def _reset(self) -> None:
        self._ts.sounds_off()

    def _program(self, channel: int, program: int) -> None:
        self._ts.program_select(channel, self._sfid, 0, program)

    def _noteon(self, channel: int, pitch: int, velocity: int) -> None:
        self._ts.noteon(channel, pitch, velocity)

    def _noteoff(self, channel: int, pitch: int) -> None:
        self._ts.noteoff(channel, pitch)

    def _samples(self, n: int) -> np.ndarray:
        raw = np.frombuffer(self._ts.generate_simple(n), dtype=np.float32)
        return raw.reshape(-1, 2).copy()


_SYNTH_CLASSES = {"fluidsynth": _FluidSynth, "tinysoundfont": _TinySoundFont}
_synths: dict[tuple, _Synth] = {}
_synths_lock = threading.Lock()


def _routes() -> tuple[str, ...]:
    forced = os.environ.get("RLMUSIC_SYNTH", "").strip().lower()
    if not forced:
        return ROUTES
    if forced not in ROUTES:
        raise ValueError(f"RLMUSIC_SYNTH={forced!r} is not a synthesiser route; valid: {', '.join(ROUTES)}")
    return (forced,)


def get_synth(sample_rate: int = 44100) -> _Synth:
    """The process's synthesiser for this sample rate (loaded on first use, then reused)."""
    if sample_rate < 8000 or sample_rate > 192000:
        raise ValueError(f"sample_rate must be 8000..192000 Hz, got {sample_rate}")
    routes = _routes()
    soundfont = find_soundfont()
    key = (routes, str(soundfont), sample_rate)
    with _synths_lock:
        if key in _synths:
            return _synths[key]
        reasons = []
        for route in routes:
            try:
                synth = _SYNTH_CLASSES[route](soundfont, sample_rate)
            except (ImportError, OSError) as exc:
                reasons.append(f"{route}: {exc}")
                continue
            _synths[key] = synth
            return synth
    raise AudioError(
        "no synthesiser available (" + "; ".join(reasons) + "). Install Debian's "
        "libfluidsynth3 (apt-get install fluidsynth), or `pip install --no-deps tinysoundfont`"
    )


def synth_route(sample_rate: int = 44100) -> str:
    """Which synthesiser and soundfont render audio here, in words (raises ``AudioError``)."""
    synth = get_synth(sample_rate)
    return f"{synth.route} ({synth.library}) with soundfont {synth.soundfont}"


# --------------------------------------------------------------------------- rendering


def step_seconds(tempo: float) -> float:
    """Length of one 16th-note step at ``tempo`` quarter notes per minute."""
    if not tempo > 0:
        raise ValueError(f"tempo must be positive, got {tempo}")
    return 60.0 / tempo / STEPS_PER_QUARTER


def duration_seconds(tokens: Sequence[int], tempo: float = 120.0) -> float:
    """Length of the audio ``render`` makes of ``tokens``: every step, then the release tail."""
    return len(tokens) * step_seconds(tempo) + RELEASE_TAIL


def _token_events(tokens, vocab: Vocabulary, tempo: float) -> tuple[list[_Event], float]:
    if len(tokens) == 0:
        raise ValueError("cannot render an empty token sequence")
    step = step_seconds(tempo)
    events = []
    for n in tokens_to_notes(tokens, vocab):
        events.append(_Event(n.start * step, True, 0, n.pitch, VELOCITY))
        events.append(_Event(n.end * step, False, 0, n.pitch, 0))
    return events, len(tokens) * step


def _midi_events(pm) -> tuple[list[_Event], dict[int, int], float]:
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
            events.append(_Event(n.start, True, channel, n.pitch, n.velocity))
            events.append(_Event(n.end, False, channel, n.pitch, 0))
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


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_to_file(tokens_or_pm, path, *, fmt: str | None = None, **kwargs) -> Path:
    """``render`` into ``path``; the format defaults to the file's suffix (.ogg or .wav)."""
    path = Path(path)
    fmt = fmt or path.suffix.lstrip(".").lower()
    _write_atomic(path, render(tokens_or_pm, fmt=fmt, **kwargs))
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
) -> Path:
    """The clip's audio file under ``cache_dir``, rendered only when not there yet.

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
    if not path.is_file():
        data = render(
            tokens, vocab=vocab, tempo=tempo, instrument=instrument, fmt=fmt, sample_rate=sample_rate
        )
        _write_atomic(path, data)
    return path
