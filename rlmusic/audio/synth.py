"""The synthesiser: General MIDI instruments, the soundfont, and the process's synth.

Two routes, tried in order (``RLMUSIC_SYNTH=fluidsynth|tinysoundfont`` forces one):

- ``fluidsynth``: pyfluidsynth over Debian's libfluidsynth (reverb included);
- ``tinysoundfont``: the ``tinysoundfont`` wheel from PyPI, which bundles its own
  synthesiser, for machines without libfluidsynth (no root).

Soundfont: ``RLMUSIC_SOUNDFONT`` when set, else Debian's FluidR3_GM, else the
TimGM6mb soundfont bundled with pretty_midi. With no synthesiser at all ``AudioError``
says what to install: there is no fallback to sine beeps.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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

DEBIAN_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
VELOCITY = 90  # MIDI velocity of token notes
ROUTES = ("fluidsynth", "tinysoundfont")


class AudioError(RuntimeError):
    """No synthesiser or soundfont is available, or the synthesiser failed."""


@dataclass(frozen=True)
class Event:
    """A note-on or note-off at ``time`` seconds on a MIDI channel."""

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

    def play(self, events: list[Event], programs: dict[int, int], n_samples: int) -> np.ndarray:
        """Mono float32 of ``n_samples``: events played from silence, then everything reset."""
        total = -(-n_samples // self.block) * self.block
        with self.lock:
            self._reset()
            for channel, program in programs.items():
                self._program(channel, program)
            chunks, cursor = [], 0
            for ev in sorted(events, key=Event.sort_key):
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
