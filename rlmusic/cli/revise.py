"""``rlmusic revise MELODY.mid --steps A:B --out OUT.mid``: regenerate 16th steps A..B-1 of
a melody (or, with ``--voice``, of one voice of a four-track harmonisation) and keep every
other note as it was."""

from __future__ import annotations

import argparse

from rlmusic.cli.harmonize import add_gibbs, check_out
from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.cli.stored_clips import check_stored_clip
from rlmusic.harmony.voice_leading import VOICES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("melody", help="MIDI file: a melody (one track, or --track), or a harmonisation with --voice")
    parser.add_argument("--steps", required=True,
                        help="span A:B to regenerate, in 16th steps from the start of the file (A included, B not)")
    parser.add_argument("--out", required=True, help="MIDI file to write (same tracks as the input)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same revision")
    parser.add_argument("--voice", choices=VOICES, default=None,
                        help="revise this voice of a four-track harmonisation (masked harmony model)")
    parser.add_argument("--track", type=int, default=None,
                        help="the melody track (0-based, non-drum tracks with notes); other tracks are copied")
    parser.add_argument("--model", help="melody model directory (default: the shipped prior); with --voice, "
                                        "a masked harmony model directory (default: the shipped one)")
    parser.add_argument("--candidates", type=int, default=64,
                        help="spans drawn from the melody model and weighed by how well the rest follows")
    add_gibbs(parser)
    add_device(parser)
    add_threads(parser)


def main(args: argparse.Namespace) -> int:
    from rlmusic.harmony.gibbs import GibbsConfig
    from rlmusic.harmony.midi_io import write_midi
    from rlmusic.harmony.revise import revise_file
    from rlmusic.runtime import resolve_device

    apply_threads(args)
    out = check_out(args.out)
    if args.voice is not None and args.track is not None:
        raise ValueError("--voice revises a voice of a harmonisation, --track a melody track: give one")
    check_stored_clip(args.melody)
    device = resolve_device(args.device)
    prior = harmony = None
    if args.voice is not None:
        from rlmusic.harmony.checkpoint import load_harmonizer

        harmony = load_harmonizer(args.model, device)
    else:
        from rlmusic.models.checkpoint import load_model

        prior = load_model(args.model, device)
    gibbs = GibbsConfig(steps=args.gibbs_steps, temperature=args.temperature, repair_rounds=args.repair_rounds)
    pm, info = revise_file(args.melody, args.steps, args.seed, args.voice, args.track, prior, harmony,
                           args.candidates, gibbs)
    write_midi(pm, out)
    a, b = info["span"]
    if args.voice is not None:
        print(f"revise: {args.voice} steps {a}..{b - 1} of {args.melody} (key {info['key']}) regenerated "
              f"by blocked Gibbs; {info['changed_steps']} step(s) changed")
    else:
        print(f"revise: melody steps {a}..{b - 1} of {args.melody} (key {info['key']}): "
              f"{info['candidates']} candidates, {info['distinct_from_original']} new, effective sample size "
              f"{info['effective_sample_size']:.1f}; the rest follows at {info['suffix_nll_per_step']:.3f} "
              f"nats/step" + ("; the note at B struck again" if info["restruck"] else ""))
    print(f"revise: wrote {out} (everything outside steps {a}..{b - 1} kept note for note)")
    return 0
