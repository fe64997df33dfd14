"""A reward model fine-tuned from the prior's own LSTM (``reward fit --model finetuned``).

As RLHF reward models start from the pretrained model: each of K ensemble members is a
copy of the prior's LSTM (its top layer, ``finetune_layers = "top"``, over the frozen
layers below; or every layer and the embedding, ``"all"``) with a scalar head on the
melody's final state and its mean state (and, when the feature set has ``stats``, the
melody statistics ``STAT_NAMES``, standardised on the training melodies), trained on the same loss as the frozen-feature
heads (``rlmusic.feedback.fit``: stars z-scored within each rater, Bradley-Terry on
comparisons, each member on its own bootstrap resample of the rows). The number of
epochs is chosen by early stopping on a clip-disjoint validation part of the training
rows (never the held-out rows the metrics are computed on); the saved model is refitted
on every row for that many epochs.

The out-of-distribution measure (``RewardModel.ood``) stays in the frozen feature space
of ``config.features``, so the guard reads both kinds of model the same way. The saved
model is a ``rlmusic.feedback.reward_model.FinetunedRewardModel``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rlmusic.feedback.features import STAT_NAMES, melody_statistics
from rlmusic.feedback.judgements import (
    Judgements,
    by_length,
    heldout_metrics,
    per_melody,
    split_rows,
    zscore_within_raters,
)
from rlmusic.models.lstm import MelodyLSTM

LAYERS = ("top", "all")


class FinetunedScorer(nn.Module):
    """K members over the prior's LSTM: tokens (B, T) -> scores (K, B). With ``stats``, each
    head reads the melody statistics (``STAT_NAMES``, standardised) beside the states."""

    def __init__(self, prior: MelodyLSTM, ensemble: int, layers: str = "top", stats: bool = False):
        super().__init__()
        if layers not in LAYERS:
            raise ValueError(f"finetune_layers must be one of {list(LAYERS)}, got {layers!r}")
        c = prior.config
        self.bos, self.layers, self.ensemble, self.hidden = prior.vocab.BOS, layers, ensemble, c.hidden_size
        self.vocab, self.n_stats = prior.vocab, len(STAT_NAMES) if stats else 0
        self.register_buffer("stat_mean", torch.zeros(self.n_stats))
        self.register_buffer("stat_std", torch.ones(self.n_stats))
        frozen_layers = c.num_layers - 1 if layers == "top" else 0
        self.embedding = copy.deepcopy(prior.embedding) if layers == "top" else None
        self.bottom = None
        if frozen_layers:
            self.bottom = nn.LSTM(c.embed_dim, c.hidden_size, num_layers=frozen_layers, batch_first=True)
            self.bottom.load_state_dict({k: v for k, v in prior.lstm.state_dict().items()
                                         if int(k.rsplit("_l", 1)[1]) < frozen_layers})
        for p in [*(self.embedding.parameters() if self.embedding is not None else []),
                  *(self.bottom.parameters() if self.bottom is not None else [])]:
            p.requires_grad_(False)
        members = []
        for _ in range(ensemble):
            if layers == "all":
                members.append(nn.ModuleDict({"embedding": copy.deepcopy(prior.embedding),
                                              "lstm": copy.deepcopy(prior.lstm)}))
            else:
                top = nn.LSTM(c.embed_dim if c.num_layers == 1 else c.hidden_size, c.hidden_size, batch_first=True)
                top.load_state_dict({k.rsplit("_l", 1)[0] + "_l0": v for k, v in prior.lstm.state_dict().items()
                                     if int(k.rsplit("_l", 1)[1]) == c.num_layers - 1})
                members.append(nn.ModuleDict({"lstm": top}))
        self.members = nn.ModuleList(members)
        self.heads = nn.ModuleList(nn.Linear(2 * c.hidden_size + self.n_stats, 1) for _ in range(ensemble))
        for head in self.heads:
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    def inputs(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T) melody tokens -> what the trained layers read: BOS + melody (B, T+1), or
        the frozen layers' output over it (B, T+1, H)."""
        x = torch.cat([torch.full_like(tokens[:, :1], self.bos), tokens], dim=1)
        if self.layers == "all":
            return x
        with torch.no_grad():
            x = self.embedding(x)
            return self.bottom(x)[0] if self.bottom is not None else x

    def statistics(self, tokens: np.ndarray) -> torch.Tensor:
        """(B, T) -> (B, S) standardised melody statistics (S = 0 without ``stats``)."""
        if not self.n_stats:
            return torch.zeros(len(tokens), 0, device=self.stat_mean.device)
        raw = torch.as_tensor(melody_statistics(tokens, self.vocab), device=self.stat_mean.device)
        return (raw - self.stat_mean) / self.stat_std

    def set_statistics(self, basis: torch.Tensor) -> None:
        """Standardise the statistics with the mean and std of ``basis`` (B, S) (raw)."""
        if self.n_stats:
            std = basis.std(0, unbiased=False)
            self.stat_mean.copy_(basis.mean(0))
            self.stat_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def score_inputs(self, x: torch.Tensor, stats: torch.Tensor) -> torch.Tensor:
        """``inputs`` (B, T+1[, H]) and ``statistics`` (B, S) -> (K, B) raw scores."""
        out = []
        for k in range(self.ensemble):
            m = self.members[k]
            h = m["lstm"](m["embedding"](x) if "embedding" in m else x)[0]  # (B, T+1, H)
            out.append(self.heads[k](torch.cat([h[:, 1:].mean(1), h[:, -1], stats], dim=1))[:, 0])
        return torch.stack(out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.score_inputs(self.inputs(tokens), self.statistics(tokens.cpu().numpy()))


class Inputs(list):
    """Each melody's ``scorer.inputs`` (computed once: the frozen part never changes) and,
    as ``.stats`` (M, S), its raw statistics."""

    stats: torch.Tensor


def _inputs_by_length(scorer: FinetunedScorer, melodies: list[tuple[int, ...]], device) -> Inputs:
    """``Inputs`` of every melody (one batch per length, at most 256 melodies)."""
    out: list[torch.Tensor | None] = [None] * len(melodies)
    for idx in by_length(melodies).values():
        for j in range(0, len(idx), 256):
            part = idx[j: j + 256]
            x = scorer.inputs(torch.as_tensor(np.array([melodies[i] for i in part]), device=device))
            for i, row in zip(part, x):
                out[i] = row
    inputs = Inputs(out)
    stats = per_melody(lambda tokens: melody_statistics(tokens, scorer.vocab), melodies) if scorer.n_stats \
        else np.zeros((len(melodies), 0), np.float32)
    inputs.stats = torch.as_tensor(stats, device=device)
    return inputs


def _scores(scorer: FinetunedScorer, inputs: Inputs, idx: np.ndarray) -> torch.Tensor:
    """(K, len(idx)) raw scores of the melodies ``idx`` (grouped by length)."""
    out = torch.zeros(scorer.ensemble, len(idx), device=inputs[0].device)
    for js in by_length([inputs[i] for i in idx]).values():
        rows = torch.as_tensor(idx[js])
        stats = (inputs.stats[rows] - scorer.stat_mean) / scorer.stat_std
        out[:, js] = scorer.score_inputs(torch.stack([inputs[i] for i in idx[js]]), stats)
    return out


def _row_loss(s: torch.Tensor, pos: dict[int, int], data: Judgements, star_z: np.ndarray, s_rows: np.ndarray,
              p_rows: np.ndarray, ws: torch.Tensor, wp: torch.Tensor, config) -> torch.Tensor:
    """Sum over members of each member's weighted loss on the given rows (s: (K, B))."""
    loss = s.new_zeros(())
    if len(s_rows) and config.star_weight:
        z = torch.as_tensor(star_z[s_rows], dtype=torch.float32, device=s.device)
        err = (s[:, [pos[int(i)] for i in data.star_idx[s_rows]]] - z) ** 2
        loss = loss + config.star_weight * ((ws * err).sum(1) / ws.sum(1).clamp_min(1)).sum()
    if len(p_rows) and config.pair_weight:
        d = s[:, [pos[int(i)] for i in data.pair_a[p_rows]]] - s[:, [pos[int(i)] for i in data.pair_b[p_rows]]]
        y = torch.as_tensor(data.pair_y[p_rows], dtype=torch.float32, device=s.device).expand_as(d)
        bce = F.binary_cross_entropy_with_logits(d, y, reduction="none")
        loss = loss + config.pair_weight * ((wp * bce).sum(1) / wp.sum(1).clamp_min(1)).sum()
    return loss


def train_scorer(scorer: FinetunedScorer, inputs: Inputs, data: Judgements, star_z: np.ndarray,
                 s_rows: np.ndarray, p_rows: np.ndarray, config, epochs: int, seed: int,
                 valid: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[int, list[float]]:
    """Train ``scorer`` on the given rows for up to ``epochs`` epochs (minibatches of
    ``config.finetune_batch`` rows; each member weights rows by its own bootstrap counts).
    With ``valid`` (star rows, pair rows, their star targets): after each epoch the
    ensemble mean's validation loss; training stops ``config.finetune_patience`` epochs
    after the best, and the best epoch's weights are restored. Returns (the number of
    epochs kept, the validation losses)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    k = scorer.ensemble
    counts_s = _bootstrap(rng, k, len(s_rows), config.bootstrap)
    counts_p = _bootstrap(rng, k, len(p_rows), config.bootstrap)
    params = [p for p in scorer.parameters() if p.requires_grad]
    heads = {id(p) for h in scorer.heads for p in h.parameters()}
    opt = torch.optim.Adam([{"params": [p for p in params if id(p) not in heads], "lr": config.finetune_lr},
                            {"params": [p for p in params if id(p) in heads], "lr": config.finetune_lr * 10}])
    rows = [("s", j) for j in range(len(s_rows))] + [("p", j) for j in range(len(p_rows))]
    batch = max(1, int(config.finetune_batch))
    best, best_epoch, best_state, losses = math.inf, epochs, None, []
    for epoch in range(1, epochs + 1):
        scorer.train()
        order = rng.permutation(len(rows))
        for start in range(0, len(rows), batch):
            part = [rows[i] for i in order[start: start + batch]]
            sj = np.array([j for t, j in part if t == "s"], dtype=np.int64)
            pj = np.array([j for t, j in part if t == "p"], dtype=np.int64)
            sr, pr = s_rows[sj], p_rows[pj]
            idx = np.unique(np.concatenate([data.star_idx[sr], data.pair_a[pr], data.pair_b[pr]]).astype(np.int64))
            s = _scores(scorer, inputs, idx)
            pos = {int(i): j for j, i in enumerate(idx)}
            loss = _row_loss(s, pos, data, star_z, sr, pr, counts_s[:, sj], counts_p[:, pj], config)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        if valid is None:
            continue
        loss = validation_loss(scorer, inputs, data, *valid, config)
        losses.append(loss)
        if loss < best - 1e-6:
            best, best_epoch, best_state = loss, epoch, copy.deepcopy(scorer.state_dict())
        elif epoch - best_epoch >= config.finetune_patience:
            break
    if best_state is not None:
        scorer.load_state_dict(best_state)
    return best_epoch, losses


@torch.no_grad()
def validation_loss(scorer: FinetunedScorer, inputs: Inputs, data: Judgements, s_rows: np.ndarray,
                    p_rows: np.ndarray, star_z: np.ndarray, config) -> float:
    """The ensemble mean's loss on validation rows (unweighted)."""
    scorer.eval()
    idx = np.unique(np.concatenate([data.star_idx[s_rows], data.pair_a[p_rows], data.pair_b[p_rows]]).astype(np.int64))
    if not len(idx):
        return 0.0
    s = _scores(scorer, inputs, idx).mean(0, keepdim=True)
    pos = {int(i): j for j, i in enumerate(idx)}
    return float(_row_loss(s, pos, data, star_z, s_rows, p_rows, torch.ones(1, len(s_rows)),
                           torch.ones(1, len(p_rows)), config))


def _bootstrap(rng: np.random.Generator, k: int, n: int, bootstrap: bool) -> torch.Tensor:
    if not bootstrap or n == 0:
        return torch.ones(k, n)
    return torch.as_tensor(np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(k)]),
                           dtype=torch.float32)


def _validation_split(data: Judgements, s_rows: np.ndarray, p_rows: np.ndarray, share: float, seed: int):
    """Training rows -> (fit star rows, fit pair rows, valid star rows, valid pair rows),
    clip-disjoint: every row touching a validation melody is a validation row."""
    seen = np.unique(np.concatenate([data.star_idx[s_rows], data.pair_a[p_rows], data.pair_b[p_rows]]))
    rng = np.random.default_rng(seed + 104729)
    held = set(rng.permutation(seen)[: max(1, round(share * len(seen)))].tolist())
    s_val = np.array([int(data.star_idx[i]) in held for i in s_rows], dtype=bool)
    p_val = np.array([int(data.pair_a[i]) in held or int(data.pair_b[i]) in held for i in p_rows], dtype=bool)
    return s_rows[~s_val], p_rows[~p_val], s_rows[s_val], p_rows[p_val]


def fit_finetuned(prior: MelodyLSTM, data: Judgements, config, device, evaluate: bool = True
                  ) -> tuple[FinetunedScorer, dict[str, Any], np.ndarray]:
    """The evaluation fit (the frozen model's held-out split; early stopping on a
    clip-disjoint validation part of its training rows), then the saved model refitted on
    every row for the kept number of epochs (``finetune_epochs`` without ``evaluate``).
    Returns (the scorer, held-out metrics, raw scores of every melody (K, M))."""
    metrics: dict[str, Any] = {}
    epochs, stats = int(config.finetune_epochs), "stats" in config.features.split("+")
    s_tr, s_te, p_tr, p_te, used = split_rows(data, config.split, config.holdout, config.seed)
    if evaluate and len(s_tr) + len(p_tr) and len(s_te) + len(p_te):
        z_tr, _ = zscore_within_raters(data.star_value, data.star_rater, s_tr)
        s_fit, p_fit, s_val, p_val = _validation_split(data, s_tr, p_tr, config.holdout, config.seed)
        scorer = FinetunedScorer(prior, config.ensemble, config.finetune_layers, stats).to(device)
        inputs = _inputs_by_length(scorer, data.melodies, device)
        seen = np.unique(np.concatenate([data.star_idx[s_fit], data.pair_a[p_fit], data.pair_b[p_fit]]))
        scorer.set_statistics(inputs.stats[torch.as_tensor(seen, dtype=torch.long)])  # training melodies only
        epochs, losses = train_scorer(scorer, inputs, data, z_tr, s_fit, p_fit, config, epochs, config.seed + 1000,
                                      valid=(s_val, p_val, z_tr))
        held = _all_scores(scorer, inputs).mean(0)
        metrics = {"split": used, **heldout_metrics(held, data, s_te, p_te, z_tr),
                   "n_train_ratings": int(len(s_tr)), "n_train_pairs": int(len(p_tr)),
                   "n_dropped_ratings": int(len(data.star_idx) - len(s_tr) - len(s_te)),
                   "n_dropped_pairs": int(len(data.pair_a) - len(p_tr) - len(p_te)),
                   "finetune_epochs_kept": epochs, "finetune_valid_losses": losses}
    elif evaluate:
        metrics = {"split": used, "note": "held-out part or training part empty: no held-out metrics"}
    scorer = FinetunedScorer(prior, config.ensemble, config.finetune_layers, stats).to(device)
    inputs = _inputs_by_length(scorer, data.melodies, device)
    scorer.set_statistics(inputs.stats)
    train_scorer(scorer, inputs, data, data.star_z, np.arange(len(data.star_idx)), np.arange(len(data.pair_a)),
                 config, max(1, epochs), config.seed)
    return scorer.eval(), metrics, _all_scores(scorer, inputs)


@torch.no_grad()
def _all_scores(scorer: FinetunedScorer, inputs: Inputs) -> np.ndarray:
    scorer.eval()
    return _scores(scorer, inputs, np.arange(len(inputs))).cpu().numpy()  # (K, M)
