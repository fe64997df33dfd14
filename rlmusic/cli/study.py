"""``rlmusic study create|list|pairs|report``: blind A/B studies between two models.

``study create NAME --models A B [--clips N] [--steps T] [--seed S] [--gold K]`` samples N
clips of T steps from each model (A and B are model directories or names of shipped
models: ``prior``, ...) into ``$RLMUSIC_HOME/studies/NAME/{a,b}`` as ``rlmusic generate``
writes them (``NNNN.mid``, ``NNNN.ogg``, ``manifest.jsonl`` with the clip ids), enqueues
them, and pairs clip i of A with clip i of B, each pair on a side of the screen drawn at
random. ``--gold K`` adds K attention checks in ``.../gold``: one of the study's clips
against a broken copy of it (``rlmusic.music.gold``: the same rhythm, every note off the
key), whose right answer is known. Pairs are served in one seeded random order; raters
judge them on the Compare page (or their judgements come from ``rlmusic ratings import``).
The same name, models, sizes and seed give the same clips, sides and order.
``study create NAME --harmonizers A B --melodies SRC`` pairs two harmonisations of the same
sopranos instead (``rlmusic/cli/study_harmony.py``).

``study pairs NAME --out F.csv`` writes ``clip_a,clip_b`` (clip_a from model A);
``study report NAME [--json F]`` lists the raters who judged every pair (their completion
codes, as the Compare page showed them) after the win rate of A with its interval, the sign
test, agreement and the gold checks (``db/study_stats.py``), and writes them as JSON.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from rlmusic.cli.db import add_url
from rlmusic.cli.options import add_device, add_threads, apply_threads


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="sample clips of two models, enqueue them and pair them blind")
    create.add_argument("name", help="the study's name (letters, digits, '.', '_', '-'; names its folder too)")
    which = create.add_mutually_exclusive_group(required=True)
    which.add_argument("--models", nargs=2, metavar=("A", "B"),
                       help="the two model directories (or shipped model names: prior, ...); "
                            "the report's win rate is A's")
    which.add_argument("--harmonizers", nargs=2, metavar=("A", "B"),
                       help="a study of harmonisations instead: two harmony model directories, 'shipped' or "
                            "'bach' (Bach's own parts, with --melodies chorales), each harmonising the same "
                            "sopranos; the win rate is A's")
    create.add_argument("--melodies",
                        help="with --harmonizers: a folder of MIDI melodies (the first --clips by name) or "
                             "'chorales' (excerpts of the held-out Bach chorales)")
    create.add_argument("--for", dest="for_rater", metavar="RATER",
                        help="a study for one rater, served only to them: model A must be tuned on their own reward "
                             "model (rlmusic reward fit --rater RATER), B typically on the population's")
    create.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    create.add_argument("--clips", type=int, default=16, help="clips per model, one pair each (default 16)")
    create.add_argument("--steps", type=int, default=64, help="16th-note steps per clip (default 64 = 4 bars)")
    create.add_argument("--seed", type=int, default=0, help="seeds the clips, the sides and the order (default 0)")
    create.add_argument("--gold", type=int, default=0,
                        help="attention checks: a study clip against a broken copy of it (default 0)")
    add_device(create)
    add_threads(create)
    add_url(create)
    listing = sub.add_parser("list", help="every study: its models, pairs and comparisons so far")
    add_url(listing)
    pairs = sub.add_parser("pairs", help="write the study's pairs as clip_a,clip_b (clip_a from model A)")
    pairs.add_argument("name", help="the study")
    pairs.add_argument("--out", required=True, help="CSV file to write")
    pairs.add_argument("--with-gold", action="store_true",
                       help="also the gold checks (clip_a the intact clip, clip_b the broken one)")
    add_url(pairs)
    report = sub.add_parser("report", help="win rate of A with its 95%% interval, sign test, agreement, gold checks")
    report.add_argument("name", help="the study")
    report.add_argument("--json", help="also write the report to this JSON file")
    report.add_argument("--max-gold-fail", type=float, default=None,
                        help="leave out raters who failed more than this share of their gold checks "
                             "(default 0.25)")
    add_url(report)


def engine(args: argparse.Namespace):
    import db

    eng = db.get_engine(args.url or db.database_url())
    db.check_schema(eng)
    return eng


# --------------------------------------------------------------------------- create


def check_create(args: argparse.Namespace) -> None:
    """The mistakes in ``args`` found before anything is written (``ValueError``)."""
    if args.clips < 1 or args.steps < 1:
        raise ValueError(f"need --clips >= 1 and --steps >= 1, got --clips {args.clips}, --steps {args.steps}")
    if not 0 <= args.gold <= 2 * args.clips:
        raise ValueError(f"--gold {args.gold} must be 0..{2 * args.clips} (each check reuses one of the "
                         f"{2 * args.clips} clips)")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.for_rater is not None and not args.models:
        raise ValueError("--for goes with --models (a rater's own melody model against the population's)")


def check_for_rater(eng, rater: str, model_a: Path) -> None:
    """``study create --for RATER``: RATER has judged, and model A was tuned on RATER's own
    reward model (``ValueError`` naming what is missing)."""
    import db
    from rlmusic.feedback.reward_model import read_reward_meta
    from rlmusic.models.checkpoint import read_model_meta

    if not db.rater_count(eng, rater):
        raise ValueError(f"no judgements by rater {rater!r}: a study --for a rater compares their own model, fitted "
                         "on their judgements, with the population's")
    recorded = (read_model_meta(model_a).get("provenance") or {}).get("reward_model")
    try:
        personal = read_reward_meta(recorded).get("personal") if recorded else None
    except FileNotFoundError:
        personal = None
    if not personal or personal.get("rater") != rater:
        raise ValueError(f"rater {rater!r} has no model of their own as A: {model_a} was tuned on "
                         f"{recorded or 'no reward model'}, not on {rater}'s (rlmusic reward fit --out RM --rater "
                         f"{rater}, then rlmusic tune --reward-model RM)")


def gold_rows(intact: list[tuple[dict, Path]], out: Path, seed: int) -> list[tuple[dict, Path]]:
    """Broken copies of ``intact`` (manifest row, model directory) written to ``out`` as
    ``NNNN.mid`` and manifest rows (``broken``, ``broken_from``), with their model."""
    import numpy as np

    from rlmusic.models.checkpoint import model_ref, read_model_meta
    from rlmusic.models.generate import write_clips
    from rlmusic.music.gold import broken_melody
    from rlmusic.music.representation import Vocabulary

    rng = np.random.default_rng([seed, 2])
    made = []
    for i, (row, model_dir) in enumerate(intact):
        vocab = Vocabulary.from_dict(read_model_meta(model_dir)["vocabulary"])
        broken = broken_melody(row["tokens"], vocab, rng)
        [new] = write_clips(broken[None, :], out, vocab, model_ref(model_dir), seed, start=i)
        made.append(({**new, "broken": True, "broken_from": row["clip_id"]}, model_dir))
    return made


def create(args: argparse.Namespace) -> int:
    import numpy as np

    import db
    from rlmusic.cli.generate import enqueue_rows, register_model
    from rlmusic.models.checkpoint import model_path, read_model_meta
    from rlmusic.models.generate import generate_clips, write_manifest
    from rlmusic.music.representation import Vocabulary

    apply_threads(args)
    check_create(args)
    eng = engine(args)
    name = db.check_study_name(args.name)
    if any(s["name"] == name for s in db.list_studies(eng)):
        raise ValueError(f"a study called {name!r} exists already (rlmusic study list)")
    folder = db.rlmusic_home() / "studies" / name
    if folder.exists() and any(folder.iterdir()):
        raise ValueError(f"{folder} is not empty (a `study create {name}` that stopped half-way?): its clips "
                         "may be queued and are never written over; choose another study name")
    if args.harmonizers:
        from rlmusic.cli.study_harmony import create_harmony

        return create_harmony(args, eng, name, folder)
    if args.melodies:
        raise ValueError("--melodies goes with --harmonizers (a study of harmonisations); --models samples its clips")
    dirs = [model_path(m).resolve() for m in args.models]
    vocabs = [Vocabulary.from_dict(read_model_meta(d)["vocabulary"]) for d in dirs]  # not a model: one line
    if args.for_rater is not None:
        check_for_rater(eng, args.for_rater, dirs[0])
    if dirs[0] == dirs[1]:
        print(f"study: A and B are the same model ({dirs[0]}): an A/A check, whose win rate should be near 0.5")
    clips: list[list[dict]] = []
    for side, model_dir, vocab, seed in zip("ab", dirs, vocabs, (args.seed, args.seed + 1)):
        print(f"study: {args.clips} clips of {args.steps} steps from model {side.upper()} ({model_dir})", flush=True)
        rows, _ = generate_clips(model_dir, args.clips, folder / side, args.steps, seed, device=args.device)
        enqueue_rows(eng, rows, folder / side, model_dir, vocab)
        clips.append(rows)
    rng = np.random.default_rng([args.seed, 1])
    pool = [(row, dirs[side]) for side in (0, 1) for row in clips[side]]
    chosen = [pool[i] for i in rng.choice(len(pool), size=args.gold, replace=False)]
    gold = gold_rows(chosen, folder / "gold", args.seed) if args.gold else []
    for model_dir, vocab in zip(dirs, vocabs):
        group = [row for row, d in gold if d == model_dir]
        if group:
            enqueue_rows(eng, group, folder / "gold", model_dir, vocab)
    if gold:
        write_manifest(folder / "gold", [row for row, _ in gold])  # each group rewrote it with its own rows
        print(f"study: {len(gold)} gold checks (broken copies of study clips) in {folder / 'gold'}")
    pairs = [{"clip_a": a["clip_id"], "clip_b": b["clip_id"], "gold": False} for a, b in zip(*clips)]
    pairs += [{"clip_a": row["broken_from"], "clip_b": row["clip_id"], "gold": True} for row, _ in gold]
    order = rng.permutation(len(pairs))
    for position, p in zip(order, pairs):
        p |= {"position": int(position), "swap": bool(rng.random() < 0.5)}
    db.create_study(eng, name, model_a_id=register_model(eng, dirs[0]), model_b_id=register_model(eng, dirs[1]),
                    steps=args.steps, seed=args.seed, pairs=pairs, folder=str(folder.resolve()),
                    for_rater=args.for_rater)
    who = "raters judge" if args.for_rater is None else f"{args.for_rater} alone judges"
    print(f"study {name}: {args.clips} pairs + {len(gold)} gold checks, sides and order drawn with seed "
          f"{args.seed}; {who} them first on the app's Compare page")
    print(f"study {name}: results with `rlmusic study report {name}`")
    return 0


# --------------------------------------------------------------------------- read


def pairs_csv(args: argparse.Namespace) -> int:
    import db
    from rlmusic.fileio import write_atomic

    rows = [p for p in db.study_pairs(engine(args), args.name) if args.with_gold or not p["gold"]]
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(("clip_a", "clip_b"))
    writer.writerows((p["clip_a"], p["clip_b"]) for p in rows)
    write_atomic(args.out, text.getvalue())
    print(f"study pairs: wrote {len(rows)} pairs to {args.out} (clip_a from model A"
          + ("; gold checks: clip_a intact, clip_b broken)" if args.with_gold else ")"))
    return 0


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def report_lines(r: dict[str, Any]) -> list[str]:
    """The report in words."""
    lines = [f"study {r['study']}: A = {r['model_a']} vs B = {r['model_b']}; {r['n_pairs']} pairs + "
             f"{r['n_gold']} gold checks, clips of {r['steps']} steps",
             f"comparisons {r['n_comparisons']}: A preferred {r['wins_a']}, B preferred {r['wins_b']}, "
             f"ties {r['ties']}; {r['n_raters']} raters",
             f"win rate of A {fmt(r['win_rate'])} (95% Wilson interval {fmt(r['ci_low'])}..{fmt(r['ci_high'])}), "
             f"two-sided sign test p = {fmt(r['p_value'], '.3g')} (ties left out); resampling pairs and raters: "
             f"{fmt(r['ci_low_clustered'])}..{fmt(r['ci_high_clustered'])}",
             f"agreement: Krippendorff's alpha {fmt(r['krippendorff_alpha'])} on {r['shared_pairs']} shared pairs"]
    if r["gold_checks"]:
        marks = [f"{name} {r['gold_failures'][name]}/{n}" + (" (excluded)" if name in r["excluded_raters"] else "")
                 for name, n in r["gold_checks"].items() if n]
        lines.append("gold checks failed: " + (", ".join(marks) or "none judged yet"))
    lines.append(f"raters excluded: {r['n_raters_excluded']} (more than {r['max_gold_fail']:.0%} of their gold "
                 "checks failed)")
    lines += [f"note: {n}" for n in r["notes"]]
    return lines


def report(args: argparse.Namespace) -> int:
    import db
    from rlmusic.fileio import write_json

    limit = db.MAX_GOLD_FAIL if args.max_gold_fail is None else args.max_gold_fail
    eng = engine(args)
    result = db.study_report(eng, args.name, max_gold_fail=limit)
    done = db.study_completions(eng, args.name)
    result["completions"] = [{**c, "completed_at": c["completed_at"].isoformat()} for c in done]
    for line in report_lines(result):
        print(line)
    print(f"completed (every pair judged, code shown on the Compare page): {len(done)} raters"
          + "".join(f"\n  {c['rater']}  {c['code']}  {c['completed_at']:%Y-%m-%d %H:%M} UTC" for c in done))
    if args.json:
        write_json(args.json, result)
        print(f"study report: wrote {args.json}")
    return 0


def listing(args: argparse.Namespace) -> int:
    import db

    eng = engine(args)
    studies = db.list_studies(eng)
    if not studies:
        print("study: none yet (rlmusic study create NAME --models A B)")
    for s in studies:
        n = db.study_report(eng, s["name"])["n_comparisons"]
        print(f"{s['name']}: A = {s['model_a']} vs B = {s['model_b']}, {s['n_pairs']} pairs + {s['n_gold']} gold "
              f"checks, {s['steps']} steps, {n} comparisons so far ({s['folder']})")
    return 0


def main(args: argparse.Namespace) -> int:
    actions = {"create": create, "list": listing, "pairs": pairs_csv, "report": report}
    return actions[args.action](args)
