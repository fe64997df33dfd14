"""A harmony model against Bach on held-out chorales: its NLL, and the voice-leading rates
of its harmonisations of the held-out sopranos next to Bach's own rates on the same
chorales (``rlmusic harmony evaluate``; docs/harmony.md).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from rlmusic.corpus.chorale_corpus import ChoraleCorpus
from rlmusic.corpus.chorales import Chorale
from rlmusic.harmony.gibbs import GibbsConfig, greedy_fill
from rlmusic.harmony.harmonize import harmonize_tokens
from rlmusic.harmony.likelihood import atb_nll_per_frame, coconet_framewise_nll
from rlmusic.harmony.voice_leading import RATES, rates, total, voice_leading_counts


def bach_counts(chorales: list[Chorale], vocab) -> dict[str, int]:
    """Voice-leading counts of Bach's own chorales, added up."""
    return total(voice_leading_counts(c.tokens, vocab, c.mode, c.transposed_by) for c in chorales)


def bach_reference(corpus: ChoraleCorpus, split: str = "test") -> dict[str, float]:
    """Bach's rates on one split, as ``voice_leading`` names them (``<figure>_rate``)."""
    counts = bach_counts(corpus.split(split), corpus.vocab)
    return counts | {f"{k}_rate": v for k, v in rates(counts).items()}


def model_counts(model, chorales: list[Chorale], seed: int = 0, gibbs: GibbsConfig | None = None,
                 greedy: bool = False) -> dict[str, int]:
    """Voice-leading counts of the model's harmonisations of the chorales' sopranos (one
    each, seed ``seed + i``), judged in each chorale's own key and register."""
    counts = []
    for i, c in enumerate(chorales):
        if greedy:
            tokens = greedy_fill(model, torch.from_numpy(c.tokens[0]),
                                 torch.from_numpy(c.bar_position())).numpy()
        else:
            tokens = harmonize_tokens(model, c.tokens[0], c.bar_steps, c.phase, seed + i, gibbs)
        counts.append(voice_leading_counts(tokens, model.vocab, c.mode, c.transposed_by))
    return total(counts)


def evaluate_harmonizer(model, corpus: ChoraleCorpus, split: str = "test", seed: int = 0,
                        gibbs: GibbsConfig | None = None, framewise: bool = False, orderings: int = 5,
                        crop: int | None = None, greedy: bool = False, progress: bool = False) -> dict:
    """NLL and voice-leading of ``model`` on a split, with Bach's rates beside them."""
    chorales = corpus.split(split)
    t0 = time.perf_counter()
    counts = model_counts(model, chorales, seed, gibbs, greedy)
    out = {"kind": model.kind, "split": split, "chorales": len(chorales),
           "frames": int(sum(c.steps for c in chorales)), "sampling": "argmax" if greedy else "sampled",
           "gibbs": None if greedy or model.kind != "masked" else vars(gibbs or GibbsConfig()),
           "atb_nll_per_frame": atb_nll_per_frame(model, chorales),
           "voice_leading": counts | {f"{k}_rate": v for k, v in rates(counts).items()},
           "bach": bach_reference(corpus, split)}
    bach = out["bach"]
    out["ratio_to_bach"] = {k: (out["voice_leading"][f"{k}_rate"] / bach[f"{k}_rate"]
                                if bach[f"{k}_rate"] else float("nan")) for k in RATES}
    if framewise:
        if model.kind != "masked":
            raise ValueError("Coconet's framewise NLL needs the masked model (the feedforward one "
                             "models alto, tenor and bass given the soprano only)")
        out["coconet_framewise_nll"] = coconet_framewise_nll(model, chorales, orderings, seed, crop, progress)
    out["seconds"] = time.perf_counter() - t0
    return out


def format_evaluation(result: dict) -> str:
    """Lines: NLLs, then each voice-leading rate of the model beside Bach's."""
    lines = [f"{result['kind']} model ({result['sampling']}) on {result['chorales']} {result['split']} chorales, "
             f"{result['frames']:,} frames",
             f"  ATB|S NLL {result['atb_nll_per_frame']:.4f} nats per frame"]
    if "coconet_framewise_nll" in result:
        f = result["coconet_framewise_nll"]
        lines.append(f"  Coconet framewise NLL {f['frame_mean']:.4f} nats per frame (per chorale "
                     f"{f['piece_mean']:.4f} +- {f['piece_sem']:.4f}; {f['orderings']} orderings)")
    vl, bach = result["voice_leading"], result["bach"]
    for k in RATES:
        lines.append(f"  {k.replace('_', ' '):<22} model {100 * vl[k + '_rate']:5.2f}%   "
                     f"Bach {100 * bach[k + '_rate']:5.2f}%   ratio {result['ratio_to_bach'][k]:.2f}")
    return "\n".join(lines)


def mean_rates(results: list[dict]) -> dict[str, float]:
    """Mean of each voice-leading rate over several evaluations (e.g. seeds)."""
    return {k: float(np.mean([r["voice_leading"][f"{k}_rate"] for r in results])) for k in RATES}
