"""Harmonisations of held-out chorale sopranos to listen to and look at: Bach's own, the
shipped masked model with and without repair, the feedforward baseline (argmax), as
four-track MIDI files (choir) and one piano-roll picture per chorale.

    python docs/harmony_results/examples.py --feedforward runs/harmony-ff --out docs/harmony_results/examples
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rlmusic.corpus.chorale_corpus import load_chorales
from rlmusic.harmony.checkpoint import load_harmonizer
from rlmusic.harmony.gibbs import GibbsConfig, greedy_fill
from rlmusic.harmony.harmonize import Harmonization, harmonize_tokens
from rlmusic.harmony.midi_io import Placement, write_midi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feedforward", type=Path, required=True, help="feedforward model directory")
    parser.add_argument("--out", type=Path, required=True, help="folder for the MIDI files and pictures")
    parser.add_argument("--chorales", type=int, default=2, help="first N test chorales")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    corpus = load_chorales(progress=False)
    masked, ff = load_harmonizer(), load_harmonizer(args.feedforward)
    args.out.mkdir(parents=True, exist_ok=True)
    for c in corpus.split("test")[: args.chorales]:
        s = torch.from_numpy(c.tokens[0])
        versions = {
            "bach": c.tokens,
            "masked": harmonize_tokens(masked, c.tokens[0], c.bar_steps, c.phase, 0),
            "masked_raw": harmonize_tokens(masked, c.tokens[0], c.bar_steps, c.phase, 0, GibbsConfig(repair_rounds=0)),
            "feedforward_argmax": greedy_fill(ff, s, torch.from_numpy(c.bar_position())).numpy(),
        }
        fig = Figure(figsize=(12, 2.4 * len(versions)), dpi=80)
        name = c.id.split(":")[1]
        for k, (label, tokens) in enumerate(versions.items()):
            h = Harmonization(tokens, Placement(c.transposed_by, c.key, c.mode), corpus.vocab, c.bar_steps, 90.0)
            write_midi(h.midi("choir"), args.out / f"{name}_{label}.mid")
            ax = fig.add_subplot(len(versions), 1, k + 1)
            for voice, colour in zip(h.voices(), ("#4c72b0", "#dd8452", "#55a868", "#c44e52")):
                for n in voice:
                    ax.broken_barh([(n.start / 4, n.duration / 4)], (n.pitch - 0.4, 0.8), color=colour)
            ax.set_title(f"{name} ({c.key}): {label}", fontsize=9)
            ax.set_xlim(0, c.steps / 4)
        fig.tight_layout()
        fig.savefig(args.out / f"{name}.png")
        print(f"wrote {name}: {', '.join(versions)}")


if __name__ == "__main__":
    main()
