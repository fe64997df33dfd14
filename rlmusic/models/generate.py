"""Batched generation: seeded sampling (``sample_tokens``), primers from MIDI, and the
clip files a batch is written to (``NNNN.mid``, optional audio, ``manifest.jsonl``).

Seeding is per chunk: a batch of ``n`` melodies is cut into chunks of ``batch_size``
(``chunks``); chunk ``i`` holds melodies ``i*batch_size ...`` and is sampled with its own
``torch.Generator`` seeded ``chunk_seed(seed, i)`` (chunk 0: ``seed`` itself; chunk i >= 1:
a seed drawn from numpy's ``SeedSequence([seed, i])``, so seeds s and s+1 share no chunk).
A chunk's melodies therefore depend only on (model, seed, chunk index, batch_size, steps,
temperature, top_k, primer), never on which process samples it: the same batch comes out
whether one process samples all chunks (``generate_clips``) or Ray tasks sample a few
each (``rlmusic.jobs.distributed``), and each chunk writes its own clip files
(``generate_part``). ``rlmusic generate`` (``rlmusic.cli.generate``) adds the rating queue.

Clip files are never written over: the output folder must be new or empty
(``check_new_folder``), so a clip in the rating queue keeps the files it was stored with.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rlmusic.audio.render import render_to_file
from rlmusic.audio.synth import instrument_program
from rlmusic.fileio import write_atomic
from rlmusic.models.checkpoint import load_model, model_path, model_ref, read_model_meta
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


def chunk_seed(seed: int, index: int) -> int:
    """The sampling seed of chunk ``index`` of a batch seeded ``seed`` (module docstring)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seeds and chunk indices are >= 0, got seed={seed}, index={index}")
    if index == 0:
        return int(seed)
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def chunks(n: int, batch_size: int) -> list[tuple[int, int, int]]:
    """``(index, first melody, count)`` of each chunk of a batch of ``n``."""
    if n < 1 or batch_size < 1:
        raise ValueError(f"need n >= 1 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    return [(i, start, min(batch_size, n - start)) for i, start in enumerate(range(0, n, batch_size))]


def sample_chunk(model: MelodyLSTM, index: int, count: int, steps: int, seed: int = 0, temperature: float = 1.0,
                 top_k: int | None = None, primer: list[int] | None = None) -> np.ndarray:
    """Chunk ``index`` of a batch seeded ``seed``: ``count`` melodies -> (count, steps) int64."""
    generator = torch.Generator().manual_seed(chunk_seed(seed, index))
    return model.sample(count, steps, temperature, top_k, primer, generator).numpy()


def sample_tokens(
    model: MelodyLSTM,
    n: int,
    steps: int,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    primer: list[int] | None = None,
    batch_size: int = 512,
    progress: bool = False,
) -> np.ndarray:
    """``n`` melodies of ``steps`` tokens, sampled chunk by chunk -> (n, steps) int64.

    Depends only on (model, n, steps, seed, temperature, top_k, primer, batch_size);
    ``progress`` shows a bar of melodies on stderr.
    """
    if n < 1 or steps < 1:
        raise ValueError(f"need n >= 1 and steps >= 1, got n={n}, steps={steps}")
    from tqdm.auto import tqdm

    out = []
    with tqdm(total=n, unit="melody", desc="sample", disable=not progress) as bar:
        for i, _, count in chunks(n, batch_size):
            out.append(sample_chunk(model, i, count, steps, seed, temperature, top_k, primer))
            bar.update(count)
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


def check_new_folder(out: str | Path) -> Path:
    """``out`` as a Path, when it does not exist or is an empty folder; else ``ValueError``:
    clips already there may be in the rating queue, and their files must never change."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} is not empty: clips are never written over earlier ones (a queued "
                         "clip must keep its files); choose a new folder")
    return out


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
    start: int = 0,
) -> list[dict]:
    """Write NNNN.mid (and NNNN.<audio_format>) for each melody, numbered from ``start``;
    returns manifest rows."""
    out.mkdir(parents=True, exist_ok=True)
    scores = melody_scores(tokens, vocab)  # per-melody theory/structure scores
    rows = []
    for i, melody in enumerate(tokens, start=start):
        name = f"{i:04d}"
        row = {
            "clip_id": None,
            "midi": f"{name}.mid",
            "tokens": [int(t) for t in melody],
            "model": model_name,
            "seed": seed,
            "index": i,
            "steps": len(melody),
            "scores": scores[i - start],
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
    return write_atomic(Path(out) / MANIFEST, "".join(json.dumps(row) + "\n" for row in rows))


def read_manifest(out: str | Path) -> list[dict]:
    """The rows of ``OUT/manifest.jsonl`` (``out`` may also name the file itself)."""
    path = Path(out)
    path = path / MANIFEST if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_for_generation(model_dir: str | Path | None, steps: int, device: str = "auto") -> tuple[MelodyLSTM, Path]:
    """The model of ``model_dir`` (None: the shipped prior) and its folder; warns when
    ``steps`` is longer than the melodies it was trained on."""
    model_dir = model_path(model_dir)
    model = load_model(model_dir, device=resolve_device(device))
    if steps > model.config.max_steps:
        warnings.warn(f"steps={steps} is longer than the {model.config.max_steps} steps the model "
                      "was trained on", stacklevel=3)
    return model, model_dir


def generate_part(
    model_dir: str | Path | None,
    plan: list[tuple[int, int, int]],
    out: str | Path,
    steps: int = 64,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    primer: list[int] | None = None,
    audio_format: str | None = None,
    tempo: float = 120.0,
    instrument: str = "piano",
    device: str = "auto",
    on_chunk: Callable[[int], bool] | None = None,
) -> list[dict]:
    """Sample and write the chunks of ``plan`` (``chunks``) into ``out``: their clip files
    and manifest rows (the manifest itself is the caller's). ``on_chunk(melodies written)``
    after each chunk; returning True stops there."""
    program = instrument_program(instrument)  # an unknown instrument raises before sampling
    model, model_dir = load_for_generation(model_dir, steps, device)
    rows: list[dict] = []
    for index, start, count in plan:
        tokens = sample_chunk(model, index, count, steps, seed, temperature, top_k, primer)
        rows += write_clips(tokens, Path(out), model.vocab, model_ref(model_dir), seed, tempo, program,
                            audio_format, instrument, start=start)
        if on_chunk is not None and on_chunk(len(rows)):
            break
    return rows


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
    on_chunk: Callable[[int], bool] | None = None,
    executor: Callable[[list[tuple[int, int, int]], dict], list[dict]] | None = None,
) -> tuple[list[dict], str | None]:
    """Sample ``n`` clips from a model directory (None: the shipped prior) and write them
    to ``out``: ``NNNN.mid`` (+ audio) and ``manifest.jsonl``. Returns the manifest rows and,
    with a primer, how the primer was read. ``on_chunk`` as in ``generate_part`` (a stop
    leaves the clips written so far, and a manifest of them). ``executor(plan, part)``
    runs ``generate_part(plan=..., **part)`` over the chunks elsewhere and returns their
    rows (``rlmusic.jobs.distributed.RayExecutor``); default: here, chunk after chunk."""
    if n < 1 or steps < 1:
        raise ValueError(f"need n >= 1 and steps >= 1, got n={n}, steps={steps}")
    instrument_program(instrument)  # an unknown instrument raises before sampling
    check_new_folder(out)  # so does an output folder that holds files
    primer_seq, how = read_primer(model_dir, primer, primer_track)
    part = dict(model_dir=model_dir, out=out, steps=steps, seed=seed, temperature=temperature, top_k=top_k,
                primer=primer_seq, audio_format=audio_format, tempo=tempo, instrument=instrument, device=device)
    plan = chunks(n, batch_size)
    if executor is None:
        rows = generate_part(plan=plan, on_chunk=on_chunk, **part)
    else:
        rows = sorted(executor(plan, part), key=lambda row: row["index"])
    write_manifest(out, rows)
    return rows, how


def read_primer(model_dir: str | Path | None, primer: str | Path | None,
                track: int | None = None) -> tuple[list[int] | None, str | None]:
    """The primer's tokens in the vocabulary of ``model_dir`` and how it was read, or (None, None)."""
    if not primer:
        return None, None
    vocab = Vocabulary.from_dict(read_model_meta(model_path(model_dir))["vocabulary"])
    return primer_tokens(primer, vocab, track)
