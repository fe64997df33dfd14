"""Voice-leading repair: after blocked Gibbs, the cells of every parallel fifth or octave
and every voice crossing (``voice_leading.fault_cells``) that the sampler may change are
masked and drawn again from the model given everything else, a few Gibbs rounds at a
time; a redraw is kept when it leaves no more faults than before. Every note still comes
from the model's conditionals: the rules only choose which cells to draw again and which
draw to keep, as a teacher sends a student back to the bars with the fifths.

The voice-leading report names what the model writes raw (``repair_rounds = 0``) and
with repair apart (docs/harmony.md).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from rlmusic.harmony.gibbs import GibbsConfig, gibbs_fill
from rlmusic.harmony.voice_leading import fault_cells, fault_count

REPAIR_GIBBS_STEPS = 8  # Gibbs rounds of each redraw (its cells start masked, then anneal)


@torch.no_grad()
def repair(model, tokens: torch.Tensor, allowed: torch.Tensor, position: torch.Tensor,
           generator: torch.Generator, rounds: int, gibbs: GibbsConfig | None = None) -> tuple[torch.Tensor, dict]:
    """Redraw the faulty ``allowed`` cells of one (4, T) texture up to ``rounds`` times ->
    (texture, what happened: faults before and after, redraws kept)."""
    config = replace(gibbs or GibbsConfig(), steps=REPAIR_GIBBS_STEPS)
    vocab = model.vocab
    x = tokens.clone()
    faults = before = fault_count(x.numpy(), vocab)
    kept = 0
    for _ in range(rounds):
        if faults == 0:
            break
        cells = torch.from_numpy(fault_cells(x.numpy(), vocab)) & allowed
        if not cells.any():
            break
        drawn = gibbs_fill(model, x[None], cells[None], position[None], generator, config)[0]
        n = fault_count(drawn.numpy(), vocab)
        if n <= faults:
            x, faults, kept = drawn, n, kept + 1
    return x, {"faults_before": before, "faults_after": faults, "redraws_kept": kept}
