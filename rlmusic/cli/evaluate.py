"""``rlmusic evaluate``: the evaluation table of a model (sampled, seeded) or of a folder
of MIDI files (a stored clip's file that changed since it was stored is skipped and named);
``--compare A B`` shows two models side by side with the difference.

Each model is measured against its own reference, from its provenance (a tuned model's
prior, a prior itself; novelty against that prior's training corpus) unless ``--prior``
or ``--corpus`` say otherwise; the command prints which reference it used. For a model tuned
to targets (``[targets]`` in its provenance) it then prints each target met or missed on the
sampled melodies, with the 95% interval of its feature's mean (docs/targets.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.cli.stored_clips import CHANGED, changed_clips, describe
from rlmusic.evaluation.report import diff_tables, format_table, plot_tables
from rlmusic.evaluation.table import (
    evaluate_model,
    evaluate_tokens,
    load_reference_prior,
    midi_folder_files,
    read_midi_folder,
)
from rlmusic.models.checkpoint import model_ref, training_corpus
from rlmusic.runtime import json_safe, resolve_device


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model directory to sample from (default: the shipped prior)")
    parser.add_argument("--midi", default=None, help="evaluate the MIDI files of this folder instead of a model")
    parser.add_argument("--track", type=int, default=None,
                        help="with --midi: read this track of each file (0-based) instead of the top line of all")
    parser.add_argument("--compare", nargs="+", metavar="DIR",
                        help="B: compare --model (or the shipped prior) with B; A B: compare A with B")
    parser.add_argument("-n", type=int, default=1000, help="melodies sampled per model")
    parser.add_argument("--steps", type=int, default=32, help="16th-note steps per melody (MIDI: cropped/padded)")
    parser.add_argument("--json", default=None, help="write the table as one JSON object to this file")
    parser.add_argument("--plot", default=None, help="draw the table (and the comparison) to this PNG")
    parser.add_argument("--prior", default=None,
                        help="reference prior for log p and KL (default: each model's own, from its provenance)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same melodies")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling softmax temperature")
    parser.add_argument("--key", default="C major", help="key of the theory metrics: '<tonic> <mode>', e.g. 'A minor'")
    parser.add_argument("--corpus", default=None,
                        help="corpus (train split) for novelty and copied span: irish, bach, midi:DIR or none "
                             "(default: the reference prior's training corpus)")
    parser.add_argument("--max-copied-notes", type=int, default=16,
                        help="copied runs longer than this many notes count in copied_over_max")
    add_device(parser)
    add_threads(parser)


def main(args: argparse.Namespace) -> int:
    apply_threads(args)
    if args.n < 1 or args.steps < 1:
        raise ValueError(f"need -n >= 1 and --steps >= 1, got -n {args.n}, --steps {args.steps}")
    if args.temperature <= 0:
        raise ValueError(f"--temperature must be positive, got {args.temperature}")
    if args.midi and (args.model or args.compare):
        raise ValueError("--midi evaluates a folder of MIDI files; it cannot be combined with --model/--compare")
    if args.track is not None and not args.midi:
        raise ValueError("--track reads a track of each --midi file; give --midi DIR")
    if args.compare and len(args.compare) > 2:
        raise ValueError(f"--compare takes one or two model directories, got {len(args.compare)}")
    if args.compare and len(args.compare) == 2 and args.model:
        raise ValueError("give either --model A --compare B or --compare A B, not both")
    if args.midi:
        changed = changed_clips(midi_folder_files(args.midi))  # stored clips that changed: not read
        for path, entries in changed.items():
            what, how = describe(path, entries)
            print(f"evaluate: skipped {what}: it {how}")
        dev = resolve_device(args.device)
        prior = load_reference_prior(args.prior, dev)
        corpus = args.corpus if args.corpus is not None else training_corpus(args.prior)
        corpus = None if corpus is None or corpus.lower() == "none" else corpus
        tokens, skipped, how = read_midi_folder(args.midi, prior.vocab, args.steps, args.track,
                                               skip=dict.fromkeys(changed, CHANGED))
        print(f"read {len(tokens)} MIDI file(s): " + "; ".join(f"{n} x {w}" for w, n in how.most_common()))
        if skipped:
            print(f"skipped {sum(skipped.values())} MIDI file(s): " +
                  "; ".join(f"{n} x {r}" for r, n in skipped.most_common()))
        a = evaluate_tokens(tokens, prior.vocab, prior=prior, corpus=corpus, key=args.key,
                            max_copied_notes=args.max_copied_notes)
        a["skipped_files"] = int(sum(skipped.values()))
        a["skipped_changed_clips"] = sorted(e.clip_id for entries in changed.values() for e in entries)
        a["reference_prior"], a["reference_corpus"] = model_ref(prior_path(args.prior)), corpus
        tables, names, reports = [a], [str(args.midi)], [None]
    else:
        models = [args.model] if not args.compare else (
            args.compare if len(args.compare) == 2 else [args.model, args.compare[0]])
        common = dict(n=args.n, steps=args.steps, seed=args.seed, temperature=args.temperature,
                      prior_dir=args.prior, device=args.device, corpus=args.corpus, key=args.key)
        sampled = [evaluate_model(m, **common, return_tokens=True) for m in models]
        tables = [table for table, _ in sampled]
        names = [m or "shipped prior" for m in models]
        reports = [targets_report(m, tokens, args.prior) for m, (_, tokens) in zip(models, sampled)]
    for name, table in zip(names, tables):
        print(f"{name}: reference prior {table['reference_prior']}, "
              f"novelty against {table['reference_corpus'] or 'nothing (skipped)'}")
    a, b = tables[0], (tables[1] if len(tables) > 1 else None)
    print(format_table(a, b, tuple(names) if b is not None else (names[0], "")))
    for name, report in zip(names, reports):
        if report is not None:  # a model tuned to targets: each met or missed, with its 95% interval
            print(f"{name}: {report}")
    if args.json:
        obj = a if b is None else {"a": {**a, "model": names[0]}, "b": {**b, "model": names[1]},
                                   "diff": diff_tables(a, b)}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(json_safe(obj), indent=2) + "\n")
    if args.plot:
        plot_tables(args.plot, a, b, tuple(names) if b is not None else (names[0], ""))
    return 0


def targets_report(model: str | None, tokens, prior: str | None) -> str | None:
    """For a model tuned to targets, each target met or missed on its samples; else None."""
    from rlmusic.tuning.target_training import model_targets_report

    return None if model is None else model_targets_report(model, tokens, prior)


def prior_path(prior: str | None) -> Path:
    from rlmusic.models.checkpoint import default_prior_dir

    return Path(prior) if prior is not None else default_prior_dir()
