"""What the Studio page shares: the loaded harmony model, versions of a harmonisation,
their audio and picture, and storing a rated version as a harmony clip.

A *version* is one four-voice texture (model key, the model's vocabulary) with how it
came about; the page keeps a list of them in ``st.session_state`` so versions stay side
by side while the user regenerates spans.
"""

from __future__ import annotations

import functools
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import streamlit as st

import db
from app.common import roll_png
from rlmusic.audio.render import render
from rlmusic.harmony.checkpoint import (
    default_harmony_dir,
    harmony_ref,
    load_harmonizer,
    read_harmony_meta,
)
from rlmusic.harmony.harmonize import Harmonization, harmonize_notes
from rlmusic.harmony.midi_io import melody_track, read_score, write_midi
from rlmusic.harmony.revise import revise_voice
from rlmusic.harmony.study_clips import INSTRUMENTS
from rlmusic.harmony.voice_leading import voice_leading
from rlmusic.music.representation import DEFAULT_VOCAB, Note, notes_to_tokens, tokens_to_notes
from rlmusic.runtime import home, set_threads


@st.cache_resource(show_spinner=False)
def model():
    """The shipped harmony model, loaded once per server (torch on one thread, as every
    command by default: spinning threads collapse on a busy machine, docs/benchmarks.md)."""
    set_threads(1)
    return load_harmonizer()


@dataclass(frozen=True)
class Version:
    """One harmonisation on the page."""

    number: int  # 1, 2, ... in the order made
    label: str  # how it came about, in words
    harmony: Harmonization
    clip_id: int | None = None  # the harmony clip it was stored as, once rated


def clip_notes(clip: db.ClipInfo) -> list[Note]:
    """A melody clip's notes (clips hold tokens of the default melody vocabulary)."""
    return tokens_to_notes(clip.tokens, DEFAULT_VOCAB)


def uploaded_notes(data: bytes, name: str):
    """(notes, tempo, bar steps, track) of an uploaded MIDI file's melody (raises
    ``ValueError`` and music errors with the reason, as the command line does)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        score = read_score(path)
        track = melody_track(score)
    return track.notes, score.tempo, score.bar_steps, track


def harmonise(notes: list[Note], seed: int, tempo: float = 120.0, bar_steps: int = 16, track=None) -> Harmonization:
    return harmonize_notes(notes, model(), seed, bar_steps, tempo, track)


def revise(version: Version, voice: str, start: int, end: int, seed: int) -> Harmonization:
    """A copy of ``version`` with steps start..end-1 of ``voice`` regenerated."""
    h = version.harmony
    tokens = revise_voice(model(), h.tokens, voice, start, end, h.bar_steps, 0, seed)
    return replace(h, tokens=tokens, seed=seed,
                   report=voice_leading(tokens, h.vocab, h.placement.mode, h.placement.shift))


@functools.lru_cache(maxsize=64)
def _audio(tokens: bytes, shape: tuple[int, int], placement, tempo: float, bar_steps: int, vocab) -> bytes:
    h = Harmonization(np.frombuffer(tokens, dtype=np.int64).reshape(shape), placement, vocab, bar_steps, tempo)
    return render(h.midi(INSTRUMENTS), instrument=None, fmt="ogg")


def audio(h: Harmonization) -> bytes:
    """OGG of a version on the choir (rendered once per distinct version)."""
    tokens = np.ascontiguousarray(h.tokens, dtype=np.int64)
    return _audio(tokens.tobytes(), tokens.shape, h.placement, h.tempo, h.bar_steps, h.vocab)


def picture(h: Harmonization) -> bytes:
    """A piano roll of the four voices (time in beats), as PNG bytes."""
    return roll_png(tuple(map(tuple, h.voices())), h.steps)


def save_rated(eng, rater: str, version: Version, stars: int) -> int:
    """Store ``version`` as a harmony clip (once; four-track MIDI and audio under
    ``RLMUSIC_HOME/studio``) and ``rater``'s stars for it; returns the clip id."""
    clip_id = version.clip_id
    if clip_id is None:
        h = version.harmony
        folder = home() / "studio"
        name = uuid.uuid4().hex[:12]
        midi = write_midi(h.midi(INSTRUMENTS), folder / f"{name}.mid")
        ogg = folder / f"{name}.ogg"
        ogg.write_bytes(audio(h))
        directory = default_harmony_dir()
        model_id = db.register_model(eng, name=harmony_ref(directory), directory=directory, kind="harmony",
                                     provenance=read_harmony_meta(directory).get("provenance"))
        soprano = tokens_to_notes(h.tokens[0], h.vocab)
        [clip_id] = db.enqueue_clips(eng, model_id, [{
            "kind": "harmony", "tokens": notes_to_tokens(soprano, DEFAULT_VOCAB, h.steps).tolist(),
            "voices": h.tokens.tolist(), "midi_path": str(midi), "audio_path": str(ogg), "seed": h.seed}])
    db.add_rating(eng, rater, clip_id, stars)
    return clip_id
