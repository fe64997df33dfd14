"""``rlmusic harmony corpus|train|evaluate``: the four-voice chorale corpus, training a
harmony model (masked or feedforward), and judging one against Bach's held-out chorales."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

from rlmusic.cli.harmonize import add_gibbs
from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.harmony.train import HarmonyTrainConfig
from rlmusic.runtime import field_docs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="harmony_command", required=True, metavar="{corpus,train,evaluate}")
    p = sub.add_parser("corpus", help="build (or load) the four-voice chorale corpus and describe it")
    p.add_argument("--rebuild", action="store_true", help="ignore cached and shipped copies and parse again")
    p.add_argument("--out", type=Path, default=None, help="also write the corpus file into this folder")
    p.add_argument("--workers", type=int, default=2, help="parallel parser processes (when building)")

    p = sub.add_parser("train", help="train a harmony model on the chorales (best model by valid NLL)")
    p.add_argument("--out", required=True, help="model directory to write (config.json, weights, metrics.csv)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    defaults, docs = HarmonyTrainConfig(), field_docs(HarmonyTrainConfig)
    for f in fields(HarmonyTrainConfig):
        if f.name == "model":
            continue
        default = getattr(defaults, f.name)
        p.add_argument("--" + f.name.replace("_", "-"), type=type(default), default=default,
                       help=f"{docs.get(f.name, f.name)} (default {default})".replace("%", "%%"))
    p.add_argument("--model-config", type=json.loads, default={},
                   help='model config keys as JSON, e.g. \'{"channels": 96}\' (see rlmusic.harmony.masked)')
    add_device(p)
    add_threads(p)

    p = sub.add_parser("evaluate", help="NLL and voice-leading rates of a model vs Bach's held-out chorales")
    p.add_argument("--model", help="harmony model directory (default: the shipped one)")
    p.add_argument("--split", default="test", choices=("train", "valid", "test"), help="chorales to judge on")
    p.add_argument("--seed", type=int, default=0, help="sampling seed of the harmonisations (chorale i: seed + i)")
    p.add_argument("--greedy", action="store_true", help="argmax every cell given the soprano (the seed's way)")
    p.add_argument("--framewise", action="store_true", help="also Coconet's framewise NLL (masked model; slow)")
    p.add_argument("--orderings", type=int, default=5, help="orderings averaged by the framewise NLL (Coconet: 5)")
    p.add_argument("--crop", type=int, default=None, help="framewise NLL on the first N frames of each chorale")
    p.add_argument("--json", type=Path, default=None, help="write the result as JSON")
    add_gibbs(p)
    add_device(p)
    add_threads(p)


def main(args: argparse.Namespace) -> int:
    from rlmusic.corpus.chorale_corpus import load_chorales, save_chorales

    if args.harmony_command == "corpus":
        corpus = load_chorales(rebuild=args.rebuild, workers=args.workers)
        print(corpus.describe())
        if args.out is not None:
            print(f"wrote {save_chorales(corpus, args.out)}")
        return 0
    apply_threads(args)
    corpus = load_chorales(progress=False)
    if args.harmony_command == "train":
        from rlmusic.harmony.train import train_harmonizer

        values = {f.name: getattr(args, f.name) for f in fields(HarmonyTrainConfig) if f.name != "model"}
        config = HarmonyTrainConfig(**values, model=args.model_config)
        from rlmusic.runtime import resolve_device

        model = train_harmonizer(corpus, config, args.out, progress=not args.no_progress,
                                 device=resolve_device(args.device))
        from rlmusic.harmony.checkpoint import read_harmony_meta

        metrics = read_harmony_meta(args.out)["provenance"]["metrics"]
        print(f"harmony train: best valid ATB|S NLL {metrics['valid_atb_nll_per_frame']:.4f} nats/frame "
              f"at step {metrics['train_steps']} ({model.kind}) -> {args.out}")
        return 0
    from rlmusic.harmony.checkpoint import harmony_ref, load_harmonizer
    from rlmusic.harmony.evaluate import evaluate_harmonizer, format_evaluation
    from rlmusic.harmony.gibbs import GibbsConfig
    from rlmusic.runtime import json_safe, resolve_device

    model = load_harmonizer(args.model, resolve_device(args.device))
    gibbs = GibbsConfig(steps=args.gibbs_steps, temperature=args.temperature, repair_rounds=args.repair_rounds)
    result = evaluate_harmonizer(model, corpus, args.split, args.seed, gibbs, args.framewise, args.orderings,
                                 args.crop, args.greedy, progress=True)
    result["model"] = harmony_ref(model.source_dir)
    print(format_evaluation(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_safe(result), indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
