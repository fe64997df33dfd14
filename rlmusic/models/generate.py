"""Batched generation: seeded sampling (``sample_tokens``), primers from MIDI, and the
clip files a batch is written to (``NNNN.mid``, optional audio, ``manifest.jsonl``).

The same (model, n, steps, seed, temperature, top_k, primer, batch_size) gives the same
melodies. ``rlmusic generate`` (``rlmusic.cli.generate``) adds the rating queue.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from rlmusic.audio.render import render_to_file
from rlmusic.audio.synth import instrument_program
from rlmusic.models.checkpoint import default_prior_dir, load_model, model_ref
from rlmusic.models.lstm import MelodyLSTM
from rlmusic.music.metrics import melody_scores
from rlmusic.music.representation import (
    Note,
    Vocabulary,
    load_midi,
    midi_melody,
    notes_to_tokens,
    tokens_to_midi,
)
from rlmusic.runtime import resolve_device

MANIFEST = "manifest.jsonl"


def sample_tokens(
    model: MelodyLSTM,
    n: int,
    steps: int,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    primer: list[int] | None = None,
    batch_size: int = 512,
) -> np.ndarray:
    """``n`` melodies of ``steps`` tokens, sampled in batches -> (n, steps) int64.

    One generator seeded with ``seed`` drives all batches, so the output depends only on
    (model, n, steps, seed, temperature, top_k, primer, batch_size).
    """
    if n < 1 or steps < 1:
        raise ValueError(f"need n >= 1 and steps >= 1, got n={n}, steps={steps}")
    generator = torch.Generator().manual_seed(seed)
    out = [
        model.sample(min(batch_size, n - i), steps, temperature, top_k, primer, generator).numpy()
        for i in range(0, n, batch_size)
    ]
    return np.concatenate(out)


def primer_tokens(path: str | Path, vocab: Vocabulary, track: int | None = None) -> tuple[list[int], str]:
    """A primer melody from a MIDI file, read as ``midi_melody`` reads it (one track, or the
    top line of all), folded into the vocabulary's range; and how it was read, in words."""
    notes, how = midi_melody(load_midi(path), track)
    folded, moved = fold_into_range(notes, vocab)
    if moved:
        how += f", {moved} note(s) moved by octaves into {vocab.min_pitch}..{vocab.max_pitch}"
    return notes_to_tokens(folded, vocab).tolist(), how


def fold_into_range(notes: list[Note], vocab: Vocabulary) -> tuple[list[Note], int]:
    """``notes`` moved by whole octaves into the vocabulary's pitch range, and how many moved."""
    folded = []
    for note in notes:
        pitch = note.pitch
        while pitch < vocab.min_pitch:
            pitch += 12
        while pitch > vocab.max_pitch:
            pitch -= 12
        folded.append(Note(note.start, note.duration, pitch))
    return folded, sum(a.pitch != b.pitch for a, b in zip(notes, folded))


def write_clips(
    tokens: np.ndarray,
    out: Path,
    vocab: Vocabulary,
    model_name: str,
    seed: int,
    tempo: float = 120.0,
    program: int = 0,
    audio_format: str | None = None,
    instrument: str = "piano",
) -> list[dict]:
    """Write NNNN.mid (and NNNN.<audio_format>) for each melody; returns manifest rows."""
    out.mkdir(parents=True, exist_ok=True)
    scores = melody_scores(tokens, vocab)  # per-melody theory/structure scores
    rows = []
    for i, melody in enumerate(tokens):
        name = f"{i:04d}"
        row = {
            "clip_id": None,
            "midi": f"{name}.mid",
            "tokens": [int(t) for t in melody],
            "model": model_name,
            "seed": seed,
            "index": i,
            "steps": len(melody),
            "scores": scores[i],
        }
        if not np.any(melody >= Vocabulary.FIRST_PITCH_TOKEN):
            row["empty"] = True  # all rests/holds: no MIDI notes to write
        tokens_to_midi(melody, vocab, tempo=tempo, program=program).write(str(out / row["midi"]))
        if audio_format:
            row["audio"] = f"{name}.{audio_format}"
            render_to_file(melody, out / row["audio"], vocab=vocab, tempo=tempo,
                           instrument=instrument, fmt=audio_format)
        rows.append(row)
    return rows


def write_manifest(out: str | Path, rows: list[dict]) -> Path:
    """``OUT/manifest.jsonl``, one JSON object per clip, written atomically."""
    path = Path(out) / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    with open(tmp, "w") as fh:
        fh.writelines(json.dumps(row) + "\n" for row in rows)
    tmp.replace(path)
    return path


def read_manifest(out: str | Path) -> list[dict]:
    """The rows of ``OUT/manifest.jsonl`` (``out`` may also name the file itself)."""
    path = Path(out)
    path = path / MANIFEST if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def generate_clips(
    model_dir: str | Path | None,
    n: int,
    out: str | Path,
    steps: int = 64,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    primer: str | Path | None = None,
    primer_track: int | None = None,
    audio_format: str | None = None,
    tempo: float = 120.0,
    instrument: str = "piano",
    device: str = "auto",
    batch_size: int = 512,
) -> tuple[list[dict], str | None]:
    """Sample ``n`` clips from a model directory (None: the shipped prior) and write them
    to ``out``: ``NNNN.mid`` (+ audio) and ``manifest.jsonl``. Returns the manifest rows and,
    with a primer, how the primer was read."""
    program = instrument_program(instrument)  # an unknown instrument raises before sampling
    model_dir = Path(model_dir) if model_dir is not None else default_prior_dir()
    model = load_model(model_dir, device=resolve_device(device))
    vocab = model.vocab
    if steps > model.config.max_steps:
        warnings.warn(f"steps={steps} is longer than the {model.config.max_steps} steps the model "
                      "was trained on", stacklevel=2)
    primer_seq, how = primer_tokens(primer, vocab, primer_track) if primer else (None, None)
    tokens = sample_tokens(model, n, steps, seed, temperature, top_k, primer_seq, batch_size)
    out = Path(out)
    rows = write_clips(tokens, out, vocab, model_ref(model_dir), seed, tempo, program, audio_format, instrument)
    write_manifest(out, rows)
    return rows, how
