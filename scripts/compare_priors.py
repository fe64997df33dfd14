"""Do Bach soprano lines help an Irish-tune prior? Scores priors on the same held-out
Irish tunes (valid and test splits of the irish corpus, chunks of 128 steps).

    .venv/bin/python scripts/compare_priors.py runs/prior-irish runs/prior-irish-bach
"""

from __future__ import annotations

import argparse

from rlmusic.corpus.cache import load_corpus
from rlmusic.models.checkpoint import load_model
from rlmusic.models.pretrain import evaluate_nll, make_chunks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="model directories")
    ap.add_argument("--corpus", default="irish", help="held-out tunes to score on")
    args = ap.parse_args()
    corpus = load_corpus(args.corpus, progress=False)
    print(f"held-out {args.corpus}: valid {len(corpus.split('valid'))} tunes, "
          f"test {len(corpus.split('test'))} tunes")
    print(f"{'model':40s} {'valid NLL':>10s} {'valid acc':>10s} {'note acc':>9s} "
          f"{'test NLL':>10s} {'test acc':>10s} {'note acc':>9s}")
    for directory in args.models:
        model = load_model(directory)
        row = []
        for split in ("valid", "test"):
            scores = evaluate_nll(model, make_chunks(corpus.split(split), model.config.max_steps))
            row += [scores["nll"], scores["accuracy"], scores["note_accuracy"]]
        print(f"{directory:40s} {row[0]:10.4f} {row[1]:10.3f} {row[2]:9.3f} {row[3]:10.4f} {row[4]:10.3f} {row[5]:9.3f}")


if __name__ == "__main__":
    main()
