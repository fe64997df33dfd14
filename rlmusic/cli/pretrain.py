"""``rlmusic pretrain --corpus SOURCES --out DIR``: train the LSTM prior on a corpus."""

from __future__ import annotations

import argparse

from rlmusic.cli.options import (
    add_config_flags,
    add_device,
    add_threads,
    apply_threads,
    config_from_flags,
)
from rlmusic.models.pretrain import PretrainConfig, pretrain


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="model directory to write (config.json, weights, log, checkpoint)")
    parser.add_argument("--config", help="TOML file of PretrainConfig keys (the flags below override it)")
    add_device(parser)
    add_threads(parser)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_flags(parser, PretrainConfig)


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    return config_from_flags(args, PretrainConfig)


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    apply_threads(args)
    best = pretrain(config, args.out, args.device, args.resume, progress=not args.no_progress)
    print(f"pretrain: best valid NLL {best['valid_nll']:.4f} nats/token, accuracy {best['valid_accuracy']:.3f}, "
          f"note accuracy {best.get('valid_note_accuracy', float('nan')):.3f} -> {args.out}")
    return 0
