"""Held-out negative log-likelihoods of the harmony models, in nats per frame (a frame is
one 16th step of all four voices).

- ``atb_nll_per_frame`` (both models, same information): -log p(alto, tenor, bass tokens
  of a frame | the whole soprano), each cell from the model's conditional given the
  soprano alone, summed over the three voices, averaged over every frame.
- ``coconet_framewise_nll`` (the masked model): Coconet's framewise evaluation (Huang et
  al. 2017, Algorithm 1; ``FrameEvaluator`` in Magenta's ``coconet/lib_evaluation.py``):
  the frames in a random order; frame ``l`` of the order is predicted given the true frames
  before it in the order, its four voices in a random order, each voice given the
  model's argmax for the voices of the frame already predicted; the log-likelihoods of
  ``orderings`` orders are averaged in probability space, frame by frame. Reported as
  the mean over all frames (Magenta's unit-level mean) and per chorale with its standard
  error.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rlmusic.corpus.chorales import Chorale


@torch.no_grad()
def atb_nll_per_frame(model, chorales: list[Chorale]) -> float:
    """Mean over frames of -log p(alto, tenor, bass tokens | soprano) in nats (see module)."""
    was = model.training
    model.eval()
    total = frames = 0.0
    for c in chorales:
        tokens = torch.from_numpy(c.tokens)
        logp = model.atb_log_probs(tokens[0], torch.from_numpy(c.bar_position()))  # (3, T, V)
        total -= float(logp.gather(-1, tokens[1:, :, None]).sum())
        frames += c.steps
    model.train(was)
    return total / frames


@torch.no_grad()
def framewise_log_likelihoods(model, tokens: torch.Tensor, position: torch.Tensor,
                              rng: np.random.Generator, chunk: int = 32) -> np.ndarray:
    """Log-likelihood of every frame of one piece under one random ordering: (T,).

    Canvas ``l`` reveals the true frames that come before position ``l`` of the order, so
    the T frames are predicted in one stack of T canvases, voice turn by voice turn.
    """
    t = tokens.shape[1]
    frames = torch.from_numpy(rng.permutation(t))  # frame predicted by canvas l
    voices = torch.from_numpy(np.stack([rng.permutation(4) for _ in range(t)]))  # (T, 4): voice order of frame f
    states = tokens[None].repeat(t, 1, 1)  # (T canvases, 4, T)
    hidden = torch.zeros(t, 4, t, dtype=torch.bool)
    rank = torch.empty(t, dtype=torch.long)
    rank[frames] = torch.arange(t)  # position of each frame in the order
    hidden[:] = (rank[None, None, :] >= torch.arange(t)[:, None, None])
    lls = torch.zeros(t, dtype=torch.float64)
    rows = torch.arange(t)
    pos = position[None].expand(t, t)
    for turn in range(4):
        voice = voices[frames, turn]  # (T,) the voice canvas l predicts this turn
        logp = torch.empty(t, model.vocab.size)
        for a in range(0, t, chunk):
            b = min(a + chunk, t)
            inputs = states[a:b].masked_fill(hidden[a:b], model.mask_token)
            out = model(inputs.to(model.device), pos[a:b].to(model.device))  # (c, 4, T, V)
            sel = out[torch.arange(b - a), voice[a:b], frames[a:b]]  # (c, V)
            logp[a:b] = torch.log_softmax(sel.float(), dim=-1).cpu()
        lls[frames] += logp[rows, tokens[voice, frames]].double()
        states[rows, voice, frames] = logp.argmax(dim=-1)
        hidden[rows, voice, frames] = False
    return lls.numpy()


def coconet_framewise_nll(model, chorales: list[Chorale], orderings: int = 5, seed: int = 0,
                          crop: int | None = None, progress: bool = False) -> dict:
    """Coconet's framewise NLL (see module) over ``chorales``, each cut to its first
    ``crop`` frames when given."""
    from tqdm import tqdm

    if orderings < 1:
        raise ValueError(f"orderings must be >= 1, got {orderings}")
    was = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    per_piece, all_frames = [], []
    for c in tqdm(chorales, desc="framewise NLL", disable=not progress, dynamic_ncols=True):
        tokens = torch.from_numpy(c.tokens)
        position = torch.from_numpy(c.bar_position())
        if crop is not None:
            tokens, position = tokens[:, :crop], position[:crop]
        lls = np.stack([framewise_log_likelihoods(model, tokens, position, rng) for _ in range(orderings)])
        frame_nll = -(np.logaddexp.reduce(lls, axis=0) - math.log(orderings))  # (T,)
        per_piece.append(float(frame_nll.mean()))
        all_frames.append(frame_nll)
    model.train(was)
    pieces = np.array(per_piece)
    frames = np.concatenate(all_frames)
    return {"frame_mean": float(frames.mean()), "frame_sem": float(frames.std() / math.sqrt(len(frames))),
            "piece_mean": float(pieces.mean()), "piece_sem": float(pieces.std() / math.sqrt(len(pieces))),
            "pieces": len(pieces), "frames": int(len(frames)), "orderings": orderings, "crop": crop}
