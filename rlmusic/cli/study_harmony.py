"""``rlmusic study create NAME --harmonizers A B --melodies SRC``: a blind study of two
harmonisers on the same sopranos.

A and B are harmony model directories, ``shipped`` (the harmony model in the package) or
``bach`` (Bach's own alto, tenor and bass; only with ``--melodies chorales``). SRC is a
folder of MIDI melodies (the first ``--clips`` files by name, each cut to ``--steps``) or
``chorales`` (excerpts of the held-out chorales: ``rlmusic.harmony.study_clips``). Each
soprano is harmonised once by A and once by B; both versions are written as four-track
MIDI on the choir with their audio (``STUDY/a``, ``STUDY/b``, ``manifest.jsonl``), stored
as harmony clips whose ``tokens`` are the shared soprano, and paired, sides and order
drawn with ``--seed``, as a melody study's clips are. ``--gold K`` adds checks whose
broken version keeps the soprano and puts every note of alto, tenor and bass off the key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHIPPED = "shipped"  # --harmonizers: the harmony model in the package


def load(name: str, device: str):
    """``bach``, or the harmony model ``name`` names (``shipped`` or a directory)."""
    from rlmusic.harmony.checkpoint import default_harmony_dir, load_harmonizer
    from rlmusic.harmony.study_clips import BACH
    from rlmusic.runtime import resolve_device

    if name == BACH:
        return BACH
    directory = default_harmony_dir() if name == SHIPPED else Path(name)
    if not directory.is_dir():
        raise ValueError(f"--harmonizers {name!r} is not a harmony model directory, {SHIPPED!r} or {BACH!r}")
    return load_harmonizer(directory, resolve_device(device))


def register(eng, harmoniser) -> int:
    """The harmoniser's model id (Bach is registered under the chorale corpus he wrote)."""
    import db
    from rlmusic.corpus.cache import SHIPPED_DIR
    from rlmusic.corpus.chorale_corpus import chorale_key
    from rlmusic.harmony.checkpoint import harmony_ref, read_harmony_meta
    from rlmusic.harmony.study_clips import BACH

    if harmoniser == BACH:
        return db.register_model(eng, name=BACH, directory=SHIPPED_DIR / chorale_key(), kind="harmony",
                                 provenance={"kind": "harmony", "corpus": chorale_key(),
                                             "note": "J.S. Bach's own alto, tenor and bass"})
    directory = harmoniser.source_dir
    return db.register_model(eng, name=harmony_ref(directory), directory=directory, kind="harmony",
                             provenance=read_harmony_meta(directory).get("provenance"))


def write_version(h, out: Path, index: int, row: dict) -> dict:
    """``NNNN.mid`` and ``NNNN.ogg`` of harmonisation ``h`` in ``out``; its manifest row
    and its clip (for ``db.enqueue_clips``) as ``row["clip"]``."""
    from rlmusic.audio.render import render_to_file
    from rlmusic.harmony.midi_io import write_midi
    from rlmusic.harmony.study_clips import INSTRUMENTS, soprano_melody

    pm = h.midi(INSTRUMENTS)
    midi = write_midi(pm, out / f"{index:04d}.mid")
    ogg = render_to_file(pm, out / f"{index:04d}.ogg", instrument=None)
    tokens = soprano_melody(h).tolist()
    row = {**row, "midi": midi.name, "audio": ogg.name, "steps": h.steps, "seed": h.seed, "tokens": tokens,
           "voices": h.tokens.tolist(), "key": h.placement.key,
           "voice_leading": {k: v for k, v in h.report.items() if k.endswith("_rate")}}
    row["clip"] = {"kind": "harmony", "tokens": tokens, "voices": row["voices"], "seed": h.seed,
                   "midi_path": str(midi.resolve()), "audio_path": str(ogg.resolve()),
                   "broken": bool(row.get("broken"))}
    return row


def enqueue(eng, model_id: int, rows: list[dict]) -> None:
    """Queue ``rows``' clips under ``model_id``; each row gets its ``clip_id``."""
    import db

    ids = db.enqueue_clips(eng, model_id, [row.pop("clip") for row in rows])
    for row, clip_id in zip(rows, ids):
        row["clip_id"] = clip_id


def broken_version(h, rng):
    """``h`` with alto, tenor and bass each on random pitches off its key (same rhythm):
    the soprano, the one thing both sides share, is kept."""
    from dataclasses import replace

    from rlmusic.music.gold import broken_melody

    tokens = h.tokens.copy()
    for v in (1, 2, 3):
        tokens[v] = broken_melody(tokens[v], h.vocab, rng)
    return replace(h, tokens=tokens)


def create_harmony(args: argparse.Namespace, eng, name: str, folder: Path) -> int:
    """The harmony study ``name`` (its clips under ``folder``); see the module's text."""
    import numpy as np
    from tqdm import tqdm

    import db
    from rlmusic.harmony.study_clips import BACH, CHORALES, harmonise, sopranos
    from rlmusic.models.generate import write_manifest

    if not args.melodies:
        raise ValueError(f"--harmonizers needs --melodies: a folder of MIDI melodies or {CHORALES!r}")
    if BACH in args.harmonizers and args.melodies != CHORALES:
        raise ValueError(f"{BACH!r} harmonised only his own chorales: use --melodies {CHORALES} with it")
    sides = [load(h, args.device) for h in args.harmonizers]
    vocabs = {(v.min_pitch, v.max_pitch) for v in (s.vocab for s in sides if s != BACH)}
    if len(vocabs) > 1:
        raise ValueError(f"the two harmony models read different pitch ranges {sorted(vocabs)}; a study needs "
                         "both to harmonise the same soprano tokens")
    found, skipped = sopranos(args.melodies, args.clips, args.steps)
    for reason, n in sorted(skipped.items()):
        print(f"study: skipped {n} melodies: {reason}")
    if not found:
        raise ValueError(f"--melodies {args.melodies}: no usable soprano of {args.steps} steps "
                         f"({sum(skipped.values())} skipped)")
    if len(found) < args.clips:
        print(f"study: {len(found)} sopranos, not the {args.clips} asked for: {len(found)} pairs")
    if args.gold > 2 * len(found):
        raise ValueError(f"--gold {args.gold} must be at most {2 * len(found)} (each check reuses one version)")
    versions: list[list] = []
    for side, harmoniser, label in zip("ab", sides, args.harmonizers):
        out = folder / side
        out.mkdir(parents=True, exist_ok=True)
        rows, done = [], []
        for i, sop in enumerate(tqdm(found, desc=f"study: harmonising with {side.upper()} ({label})",
                                     disable=args.no_progress)):
            h = harmonise(harmoniser, sop, args.seed + i)
            rows.append(write_version(h, out, i, {"harmonizer": label, "source": sop.source, "start": sop.start}))
            done.append(h)
        enqueue(eng, register(eng, harmoniser), rows)
        write_manifest(out, rows)
        versions.append(list(zip(rows, done, [harmoniser] * len(rows))))
    rng = np.random.default_rng([args.seed, 1])
    pool = versions[0] + versions[1]
    gold = []
    for k, i in enumerate(rng.choice(len(pool), size=args.gold, replace=False)):
        row, h, harmoniser = pool[i]
        (folder / "gold").mkdir(parents=True, exist_ok=True)
        broken = write_version(broken_version(h, rng), folder / "gold", k, {
            "harmonizer": row["harmonizer"], "broken": True, "broken_from": row["clip_id"], "source": row["source"]})
        enqueue(eng, register(eng, harmoniser), [broken])
        gold.append(broken)
    if gold:
        write_manifest(folder / "gold", gold)
    pairs = [{"clip_a": a["clip_id"], "clip_b": b["clip_id"], "gold": False}
             for (a, _, _), (b, _, _) in zip(*versions)]
    pairs += [{"clip_a": row["broken_from"], "clip_b": row["clip_id"], "gold": True} for row in gold]
    order = rng.permutation(len(pairs))
    for position, p in zip(order, pairs):
        p |= {"position": int(position), "swap": bool(rng.random() < 0.5)}
    ids = [register(eng, s) for s in sides]
    db.create_study(eng, name, model_a_id=ids[0], model_b_id=ids[1], steps=args.steps, seed=args.seed,
                    pairs=pairs, folder=str(folder.resolve()))
    print(f"study {name}: {len(found)} pairs of harmonisations (A = {args.harmonizers[0]}, B = "
          f"{args.harmonizers[1]}, the same soprano on both sides, choir) + {len(gold)} gold checks, sides and "
          f"order drawn with seed {args.seed}; raters judge them first on the app's Compare page")
    print(f"study {name}: results with `rlmusic study report {name}`")
    return 0
