"""``rlmusic generate``: sample clips to ``NNNN.mid`` (+ audio) and ``manifest.jsonl``;
with ``--enqueue`` every clip also goes in the rating queue, its manifest ``clip_id``
the database id. The schema is checked before any file is written. A ``--primer`` that is
a stored clip's MIDI file is used only while it holds what was stored
(``rlmusic.cli.stored_clips``).

``--executor ray`` splits the batch across Ray tasks (``rlmusic.jobs.distributed``): the
same chunks with the same seeds, so the same melodies, files and manifest as the local
path; ``--batch-size`` is the chunk (the unit of seeding and of distribution).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlmusic.audio.render import render_to_file
from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.cli.stored_clips import check_stored_clip
from rlmusic.models.checkpoint import (
    model_path,
    model_ref,
    read_model_meta,
    resolve_model_ref,
)
from rlmusic.models.generate import generate_clips, write_manifest
from rlmusic.music.representation import Vocabulary


def register_model(engine, model_dir: Path) -> int:
    """The database id of a model directory (registered, with its parent, if new)."""
    import db

    prov = read_model_meta(model_dir).get("provenance", {})
    parent_id = None
    parent = resolve_model_ref(prov.get("parent_model"), model_dir)
    if parent is not None:
        parent_id = register_model(engine, parent)
    name = "shipped-prior" if model_ref(model_dir) == "shipped-prior" else model_dir.name
    kind = prov.get("kind", "prior")
    return db.register_model(engine, name=name, directory=str(model_dir.resolve()),
                             kind=kind if kind in db.MODEL_KINDS else "prior", parent_id=parent_id,
                             provenance=prov)


def enqueue_rows(engine, rows: list[dict], out: Path, model_dir: Path, vocab: Vocabulary,
                 tempo: float = 120.0, instrument: str = "piano", audio: bool = True) -> list[int]:
    """Put the clips of ``rows`` (written to ``out``) in the rating queue against their
    model, rendering their audio first when ``audio`` and not rendered yet; sets each row's
    ``clip_id`` and rewrites the manifest. A row with ``broken`` true is the broken melody
    of a gold check (``rlmusic study create``): never served on its own."""
    import db

    model_id = register_model(engine, model_dir)
    clips = []
    for row in rows:
        clip = {"tokens": row["tokens"], "steps": row["steps"], "seed": row["seed"],
                "midi_path": str((out / row["midi"]).resolve()), "broken": bool(row.get("broken"))}
        if audio:
            if row.get("audio") is None:
                row["audio"] = f"{Path(row['midi']).stem}.ogg"
                render_to_file(row["tokens"], out / row["audio"], vocab=vocab, tempo=tempo,
                               instrument=instrument, fmt="ogg")
            clip["audio_path"] = str((out / row["audio"]).resolve())
        clips.append(clip)
    ids = db.enqueue_clips(engine, model_id, clips)
    for row, clip_id in zip(rows, ids):
        row["clip_id"] = clip_id
    write_manifest(out, rows)
    return ids


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model directory (default: the shipped prior)")
    parser.add_argument("-n", type=int, default=16, help="number of clips")
    parser.add_argument("--out", required=True, help="output folder for NNNN.mid and manifest.jsonl")
    parser.add_argument("--steps", type=int, default=64, help="16th-note steps per clip (64 = 4 bars)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same clips")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (lower: safer)")
    parser.add_argument("--top-k", type=int, default=None, help="sample from the k most likely tokens only")
    parser.add_argument("--primer", help="MIDI file whose melody opens every clip (any MIDI corpus build reads)")
    parser.add_argument("--track", type=int, default=None,
                        help="with --primer: read this track (0-based, non-drum tracks with notes) "
                             "instead of the top line of all tracks")
    parser.add_argument("--wav", action="store_true", help="also render NNNN.wav (FluidSynth)")
    parser.add_argument("--ogg", action="store_true", help="also render NNNN.ogg (compact, for browsers)")
    parser.add_argument("--enqueue", action="store_true", help="register the clips in the rating queue (database)")
    parser.add_argument("--tempo", type=float, default=120.0, help="quarter notes per minute")
    parser.add_argument("--instrument", default="piano", help="General MIDI instrument: piano, flute, violin, ...")
    parser.add_argument("--batch-size", type=int, default=512,
                        help="melodies per chunk: one forward batch, one seed (chunk_seed), one unit of Ray work")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: this process samples every chunk; ray: chunks are split across Ray tasks")
    parser.add_argument("--address", help="with --executor ray: the Ray cluster (default: start a local Ray)")
    parser.add_argument("--ray-cpus", type=int, default=None,
                        help="with --executor ray and no --address: CPUs of the local Ray (default 2)")
    add_device(parser)
    add_threads(parser)


def main(args: argparse.Namespace) -> int:
    run(args, None)
    return 0


def check(args: argparse.Namespace) -> None:
    """The mistakes in ``args`` found before anything runs (``ValueError`` names them)."""
    if args.n < 1 or args.steps < 1:
        raise ValueError(f"need n >= 1 and steps >= 1, got n={args.n}, steps={args.steps}")
    if args.track is not None and not args.primer:
        raise ValueError("--track reads a track of --primer; give --primer FILE.mid")
    if args.executor == "local" and (args.address or args.ray_cpus):
        raise ValueError("--address and --ray-cpus go with --executor ray")
    if args.address and args.ray_cpus:
        raise ValueError("--ray-cpus sizes a local Ray; the cluster at --address has its own CPUs")


def run(args: argparse.Namespace, recorder) -> dict | None:
    """``rlmusic generate`` reporting to ``recorder`` (a job's, or None): progress after
    every chunk; a cancel stops after the current chunk (the manifest lists what was
    written, nothing is enqueued) and returns None. Else returns what was made."""
    apply_threads(args)
    check(args)
    if args.primer:
        check_stored_clip(args.primer)
    engine = None
    if args.enqueue:  # a database problem stops here, before any file is written
        import db

        engine = db.get_engine()
        db.check_schema(engine)
    audio_format = "wav" if args.wav else ("ogg" if args.ogg else None)
    common = (args.model, args.n, args.out, args.steps, args.seed, args.temperature, args.top_k, args.primer,
              args.track, audio_format, args.tempo, args.instrument, args.device, args.batch_size)
    if args.executor == "ray":
        from rlmusic.jobs.distributed import RayExecutor

        rows, how = generate_clips(*common, executor=RayExecutor(args.address, args.ray_cpus,
                                                                 threads=args.threads or 1))
    else:
        on_chunk = None if recorder is None else (lambda done: recorder.progress(done / args.n, step=done))
        rows, how = generate_clips(*common, on_chunk=on_chunk)
    if how is not None:
        print(f"generate: primer {args.primer}: {how}")
    if recorder is not None and recorder.stop_requested:
        print(f"generate: stopped after {len(rows)} of {args.n} clips (in {args.out}); none enqueued")
        return None
    if engine is not None:
        model_dir = model_path(args.model)
        enqueue_rows(engine, rows, Path(args.out), model_dir, Vocabulary.from_dict(
            read_model_meta(model_dir)["vocabulary"]), args.tempo, args.instrument)
    queued = sum(r["clip_id"] is not None for r in rows)
    print(f"generate: wrote {len(rows)} clips to {args.out}" + (f", {queued} enqueued" if args.enqueue else ""))
    return {"clips": len(rows), "enqueued": queued, "out": str(Path(args.out).resolve())}
