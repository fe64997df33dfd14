"""``rlmusic harmonize MELODY.mid --out OUT.mid``: the melody as the soprano, alto, tenor
and bass written by a harmony model, four tracks, and the voice-leading report beside
Bach's own rates on the held-out chorales."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.cli.stored_clips import check_stored_clip
from rlmusic.harmony.gibbs import GibbsConfig
from rlmusic.harmony.midi_io import INSTRUMENTATIONS

MIDI_SUFFIXES = (".mid", ".midi")


def add_gibbs(parser: argparse.ArgumentParser) -> None:
    defaults = GibbsConfig()
    parser.add_argument("--gibbs-steps", type=int, default=defaults.steps,
                        help=f"blocked Gibbs rounds after the first draw (masked model; default {defaults.steps})")
    parser.add_argument("--temperature", type=float, default=defaults.temperature,
                        help=f"softmax temperature of every draw (lower: safer chords; default {defaults.temperature})")
    parser.add_argument("--repair-rounds", type=int, default=defaults.repair_rounds,
                        help="redraws of the cells of parallel fifths/octaves and voice crossings after sampling "
                             f"(masked model; 0: the model's raw sample; default {defaults.repair_rounds})")


def check_out(path: str) -> Path:
    out = Path(path)
    if out.suffix.lower() not in MIDI_SUFFIXES:
        raise ValueError(f"--out must name a .mid file, got {path}")
    if out.is_dir():
        raise IsADirectoryError(f"--out {path} is a folder; name a .mid file")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("melody", help="MIDI file with the melody (one track, or pick one with --track)")
    parser.add_argument("--out", required=True, help="four-track MIDI file to write (Soprano, Alto, Tenor, Bass)")
    parser.add_argument("--model", help="harmony model directory (default: the one shipped with rlmusic)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same harmonisation")
    parser.add_argument("--track", type=int, default=None,
                        help="read this track as the melody (0-based, non-drum tracks with notes)")
    parser.add_argument("--instruments", default="choir", choices=sorted(INSTRUMENTATIONS),
                        help="General MIDI programs of the four tracks: choir (Choir Aahs) or strings")
    add_gibbs(parser)
    add_device(parser)
    add_threads(parser)


def main(args: argparse.Namespace) -> int:
    from rlmusic.corpus.chorale_corpus import load_chorales
    from rlmusic.harmony.checkpoint import harmony_ref, load_harmonizer
    from rlmusic.harmony.evaluate import bach_reference
    from rlmusic.harmony.harmonize import harmonize_file
    from rlmusic.harmony.midi_io import write_midi
    from rlmusic.harmony.voice_leading import format_report
    from rlmusic.runtime import resolve_device

    apply_threads(args)
    out = check_out(args.out)
    check_stored_clip(args.melody)
    gibbs = GibbsConfig(steps=args.gibbs_steps, temperature=args.temperature, repair_rounds=args.repair_rounds)
    model = load_harmonizer(args.model, resolve_device(args.device))
    h = harmonize_file(args.melody, model, args.seed, args.track, gibbs)
    write_midi(h.midi(args.instruments), out)
    print(f"harmonize: {args.melody}: {h.steps} steps, key {h.placement.key} "
          f"(moved {h.placement.shift:+d} semitones for the model), {model.kind} model "
          f"{harmony_ref(model.source_dir)}, seed {args.seed}")
    print("voice leading (alto, tenor, bass against the soprano):")
    print(format_report(h.report, bach_reference(load_chorales(progress=False))))
    print(f"harmonize: wrote {out} (Soprano kept note for note, Alto, Tenor, Bass; {args.instruments})")
    return 0
