"""``rlmusic vae train|interpolate|sample|vary``: the melody VAE's latent space.

- ``train --out DIR [--corpus SOURCES] [--window 32|64] [--resume]``: train a VAE (progress,
  ``metrics.csv``, ``checkpoint.pt``, provenance);
- ``interpolate A.mid B.mid --n 7 --out DIR``: points along the latent path from A to B
  (the first and last are the reconstructions of A and B);
- ``sample -n N --out DIR``: new melodies from z ~ N(0, I);
- ``vary MELODY.mid --amount X -n N --out DIR``: melodies near one (X latent std devs).

Each writes ``NNNN.mid`` and ``manifest.jsonl`` (the rows of ``rlmusic generate`` plus
where the point lies). ``--vae DIR`` picks the VAE, ``--model 2bar|4bar`` one shipped in the
package (default: the 2-bar one).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rlmusic.cli.options import (
    add_config_flags,
    add_device,
    add_threads,
    apply_threads,
    config_from_flags,
)
from rlmusic.models.vae_train import VAETrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = sub.add_parser("train", help="train a VAE on 2- or 4-bar windows of a corpus")
    train.add_argument("--out", required=True, help="VAE directory to write (config.json, weights, log, checkpoint)")
    train.add_argument("--config", help="TOML file of VAETrainConfig keys (the flags below override it)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_flags(train, VAETrainConfig)

    inter = sub.add_parser("interpolate", help="melodies along the latent path between two MIDI melodies")
    inter.add_argument("a", help="first melody (MIDI file, at most one window long)")
    inter.add_argument("b", help="second melody (MIDI file)")
    inter.add_argument("--n", type=int, default=7, help="points on the path, both ends included (default 7)")
    inter.add_argument("--method", choices=("slerp", "lerp"), default="slerp",
                       help="spherical (MusicVAE's choice) or linear interpolation (default slerp)")
    samp = sub.add_parser("sample", help="new melodies decoded from random points of the latent space")
    samp.add_argument("-n", type=int, default=8, help="melodies to sample (default 8)")
    var = sub.add_parser("vary", help="variations of one MIDI melody: points near it in the latent space")
    var.add_argument("melody", help="the melody (MIDI file, at most one window long)")
    var.add_argument("--amount", type=float, default=0.5,
                     help="how far to move, in standard deviations of the latent prior (0: the "
                          "reconstruction; default 0.5)")
    var.add_argument("-n", type=int, default=8, help="variations to write (default 8)")
    for p, temp in ((inter, 0.0), (samp, 0.5), (var, 0.0)):
        p.add_argument("--out", required=True, help="folder for NNNN.mid and manifest.jsonl")
        which = p.add_mutually_exclusive_group()
        which.add_argument("--vae", help="VAE directory (default: the 2-bar VAE shipped in the package)")
        which.add_argument("--model", choices=("2bar", "4bar"),
                           help="a VAE shipped in the package: 2bar (the default) or 4bar")
        p.add_argument("--temperature", type=float, default=temp,
                       help=f"0 decodes greedily (the most likely token each step), above 0 samples (default {temp})")
        p.add_argument("--seed", type=int, default=0, help="seeds the latent draws and sampling (default 0)")
        p.add_argument("--track", type=int, help="which non-drum track of an input MIDI file to read (0-based)")
        p.add_argument("--top-line", action="store_true",
                       help="accept polyphonic input: keep its top line (default: polyphony is an error)")
    for p in (train, inter, samp, var):
        add_device(p)
        add_threads(p)


def main(args: argparse.Namespace) -> int:
    apply_threads(args)
    if args.action == "train":
        from rlmusic.models.vae_train import train_vae

        config = config_from_flags(args, VAETrainConfig)
        best = train_vae(config, args.out, args.device, args.resume, progress=not args.no_progress)
        print(f"vae train: held-out reconstruction (greedy, from mu): tokens {best['valid_token_accuracy']:.3f}, "
              f"onsets {best['valid_onset_accuracy']:.3f}; KL {best['valid_kl']:.2f} nats/window -> {args.out}")
        return 0
    from rlmusic.cli.stored_clips import check_stored_clip
    from rlmusic.models import vae_explore as explore
    from rlmusic.models.vae import default_vae_dir, load_vae
    from rlmusic.runtime import resolve_device

    inputs = {"interpolate": ("a", "b"), "vary": ("melody",)}.get(args.action, ())
    for name in inputs:  # a stored clip's file is read only while it is what was stored
        check_stored_clip(getattr(args, name))
    vae = load_vae(args.vae or default_vae_dir(args.model or "2bar"), device=resolve_device(args.device))
    window, vocab = vae.config.window, vae.vocab

    def read(path: str):
        tokens, how = explore.read_melody(path, vocab, window, args.track, args.top_line)
        print(f"vae {args.action}: {path}: {how}")
        return tokens

    if args.action == "interpolate":
        a, b = read(args.a), read(args.b)
        tokens, alphas = explore.interpolate(vae, a, b, args.n, args.method, args.temperature, args.seed)
        extra = [{"alpha": float(x), "method": args.method, "a": str(Path(args.a).resolve()),
                  "b": str(Path(args.b).resolve())} for x in alphas]
    elif args.action == "sample":
        tokens = explore.sample(vae, args.n, args.seed, args.temperature)
        extra = [{"temperature": args.temperature}] * len(tokens)
    else:
        melody = read(args.melody)
        tokens = explore.vary(vae, melody, args.amount, args.n, args.seed, args.temperature)
        extra = [{"amount": args.amount, "source": str(Path(args.melody).resolve())}] * len(tokens)
    rows = explore.write_points(tokens, args.out, vae, args.seed, extra)
    print(f"vae {args.action}: {len(rows)} melodies of {window} steps -> {args.out}/manifest.jsonl")
    return 0
