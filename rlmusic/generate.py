"""Batched generation: a model directory -> NNNN.mid (+ .ogg/.wav) and manifest.jsonl.

``rlmusic generate --model DIR -n N --out DIR [--steps T] [--seed S] [--temperature X]
[--top-k K] [--primer FILE.mid] [--wav] [--enqueue]``. The same seed gives the same
melodies. With ``--enqueue`` every clip is registered in the rating queue (with its audio)
against its model, and the manifest's ``clip_id`` is the database id.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from rlmusic.audio import instrument_program, render_to_file
from rlmusic.metrics import melody_scores
from rlmusic.model import MelodyLSTM, default_prior_dir, load_model, read_model_meta
from rlmusic.representation import (
    Vocabulary,
    load_midi,
    midi_to_notes,
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


def primer_tokens(path: str | Path, vocab: Vocabulary) -> list[int]:
    """A primer melody from a monophonic MIDI file, folded into the vocabulary's range."""
    notes = midi_to_notes(load_midi(path))
    folded = []
    for note in notes:
        pitch = note.pitch
        while pitch < vocab.min_pitch:
            pitch += 12
        while pitch > vocab.max_pitch:
            pitch -= 12
        folded.append(type(note)(note.start, note.duration, pitch))
    return notes_to_tokens(folded, vocab).tolist()


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


def enqueue(rows: list[dict], out: Path, model_dir: Path, vocab: Vocabulary, tempo: float,
            instrument: str) -> None:
    """Register the model and put every clip (with rendered audio) in the rating queue."""
    import db

    engine = db.get_engine()
    db.check_schema(engine)
    meta = read_model_meta(model_dir)
    prov = meta.get("provenance", {})
    parent_id = None
    if prov.get("parent_model"):
        parent = Path(prov["parent_model"])
        parent_id = db.register_model(engine, name=parent.name, directory=str(parent.resolve()),
                                      kind="prior", provenance=None)
    model_id = db.register_model(engine, name=model_dir.name if model_dir.name != "prior" else "shipped-prior",
                                 directory=str(model_dir.resolve()), kind=prov.get("kind", "prior"),
                                 parent_id=parent_id, provenance=prov)
    clips = []
    for row in rows:
        audio = row.get("audio")
        if audio is None:
            audio = f"{Path(row['midi']).stem}.ogg"
            render_to_file(row["tokens"], out / audio, vocab=vocab, tempo=tempo, instrument=instrument, fmt="ogg")
            row["audio"] = audio
        clips.append({"tokens": row["tokens"], "steps": row["steps"], "seed": row["seed"],
                      "midi_path": str((out / row["midi"]).resolve()),
                      "audio_path": str((out / audio).resolve())})
    for row, clip_id in zip(rows, db.enqueue_clips(engine, model_id, clips)):
        row["clip_id"] = clip_id


def generate(
    model_dir: str | Path | None,
    n: int,
    out: str | Path,
    steps: int = 64,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    primer: str | Path | None = None,
    audio_format: str | None = None,
    do_enqueue: bool = False,
    tempo: float = 120.0,
    instrument: str = "piano",
    device: str = "auto",
    batch_size: int = 512,
) -> list[dict]:
    """The whole command: sample, write files and manifest, optionally enqueue."""
    program = instrument_program(instrument)  # an unknown instrument raises before sampling
    model_dir = Path(model_dir) if model_dir is not None else default_prior_dir()
    model = load_model(model_dir, device=resolve_device(device))
    vocab = model.vocab
    if steps > model.config.max_steps:
        warnings.warn(f"steps={steps} is longer than the {model.config.max_steps} steps the model "
                      "was trained on", stacklevel=2)
    primer_seq = primer_tokens(primer, vocab) if primer else None
    tokens = sample_tokens(model, n, steps, seed, temperature, top_k, primer_seq, batch_size)
    out = Path(out)
    rows = write_clips(tokens, out, vocab, str(model_dir), seed, tempo, program, audio_format, instrument)
    if do_enqueue:
        enqueue(rows, out, model_dir, vocab, tempo, instrument)
    tmp = out / (MANIFEST + ".tmp")
    with open(tmp, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    tmp.replace(out / MANIFEST)
    return rows


def read_manifest(out: str | Path) -> list[dict]:
    with open(Path(out) / MANIFEST) as fh:
        return [json.loads(line) for line in fh if line.strip()]


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model directory (default: the shipped prior)")
    parser.add_argument("-n", type=int, default=16, help="number of clips")
    parser.add_argument("--out", required=True, help="output folder for NNNN.mid and manifest.jsonl")
    parser.add_argument("--steps", type=int, default=64, help="16th-note steps per clip (64 = 4 bars)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same clips")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens")
    parser.add_argument("--primer", help="monophonic MIDI file whose notes open every clip")
    parser.add_argument("--wav", action="store_true", help="also render NNNN.wav (FluidSynth)")
    parser.add_argument("--ogg", action="store_true", help="also render NNNN.ogg (compact, for browsers)")
    parser.add_argument("--enqueue", action="store_true", help="register clips in the rating queue (DB)")
    parser.add_argument("--tempo", type=float, default=120.0, help="quarter notes per minute")
    parser.add_argument("--instrument", default="piano", help="General MIDI instrument: piano, flute, violin")
    parser.add_argument("--batch-size", type=int, default=512, help="melodies sampled per forward batch")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")


def main(args: argparse.Namespace) -> int:
    audio_format = "wav" if args.wav else ("ogg" if args.ogg else None)
    rows = generate(args.model, args.n, args.out, args.steps, args.seed, args.temperature, args.top_k,
                    args.primer, audio_format, args.enqueue, args.tempo, args.instrument, args.device,
                    args.batch_size)
    queued = sum(r["clip_id"] is not None for r in rows)
    print(f"generate: wrote {len(rows)} clips to {args.out}" + (f", {queued} enqueued" if args.enqueue else ""))
    return 0

