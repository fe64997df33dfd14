"""A blind A/B study judged by simulated raters, through the commands a real study uses.

``rlmusic study create`` (clips, audio, gold checks), each simulated rater
(``rlmusic.feedback.simulate``) judging every pair as the Compare page shows it (sides as
drawn), the judgements written as pairwise rows and imported with ``rlmusic ratings
import``, then ``rlmusic study report --json``. The figures in docs/studies.md come from:

    .venv/bin/python scripts/simulated_study.py --out /tmp/aa-study

Raters of the ``pitch`` taste (notes of the tonic triad) prefer the intact clip of a gold
check; raters of the ``contour`` taste (lines that turn) like the broken copy's random
leaps and fail the checks: the report leaves them out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="a new folder: RLMUSIC_HOME and the database of the run")
    parser.add_argument("--models", nargs=2, default=["prior", "prior"], help="A and B (default: prior prior, an A/A study)")
    parser.add_argument("--clips", type=int, default=32, help="pairs of A and B clips")
    parser.add_argument("--gold", type=int, default=8, help="gold checks")
    parser.add_argument("--steps", type=int, default=64, help="steps per clip")
    parser.add_argument("--raters", default="pitch:5,contour:2", help="TASTE:N,... simulated raters")
    parser.add_argument("--noise", type=float, default=0.5, help="std of each judgement's noise, in stars")
    parser.add_argument("--seed", type=int, default=0, help="seeds the study and the raters")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"--out {out} is not empty")
    os.environ["RLMUSIC_HOME"] = str(out / "home")
    os.environ["RLMUSIC_DATABASE_URL"] = f"sqlite:///{out / 'rlmusic.db'}"

    import db
    from rlmusic.cli.main import main as rlmusic
    from rlmusic.feedback.simulate import make_raters, taste_score

    db.upgrade(os.environ["RLMUSIC_DATABASE_URL"])
    engine = db.get_engine()
    if rlmusic(["study", "create", "sim", "--models", *args.models, "--clips", str(args.clips), "--gold",
                str(args.gold), "--steps", str(args.steps), "--seed", str(args.seed)]):
        return 1
    pairs = db.study_pairs(engine, "sim")
    rows = []
    for i, spec in enumerate(args.raters.split(",")):
        taste, n = spec.split(":")
        for rater in make_raters(int(n), taste, args.noise, seed=args.seed + 100 * i):
            rng = np.random.default_rng([args.seed, i, len(rows)])
            for p in pairs:  # in order of service, each as the page shows it
                left, right = (p["clip_b"], p["clip_a"]) if p["swap"] else (p["clip_a"], p["clip_b"])
                tokens = [np.asarray(db.get_clip(engine, c).tokens)[None, :] for c in (left, right)]
                [winner] = rater.winners(taste_score(tokens[0], taste), taste_score(tokens[1], taste), rng)
                rows.append((left, right, rater.name, winner))
    judged = out / "judgements.csv"
    with judged.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("clip_a", "clip_b", "rater", "winner"))
        writer.writerows(rows)
    if rlmusic(["ratings", "import", str(judged), "--no-progress"]):
        return 1
    if rlmusic(["study", "report", "sim", "--json", str(out / "report.json")]):
        return 1
    report = json.loads((out / "report.json").read_text())
    print(json.dumps({k: report[k] for k in ("n_comparisons", "wins_a", "wins_b", "ties", "win_rate", "ci_low",
                                              "ci_high", "p_value", "n_raters", "krippendorff_alpha",
                                              "n_raters_excluded")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
