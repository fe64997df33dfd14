"""Fitting a reward model over whole melodies on human judgements given as plain rows.

This module holds the config, the fitting (data preparation, per-rater normalisation, one
loss over star ratings and pairwise comparisons, the ensemble, held-out evaluation) and
active selection (``prioritise``). Its neighbours: ``rlmusic.feedback.features`` (the
frozen prior's LSTM run over the melody plus a few cheap statistics),
``rlmusic.feedback.reward_model`` (the ensemble of heads, the saved directory,
``RewardModel``) and ``rlmusic.feedback.guard`` (what the tuning env calls, and the
over-optimisation guard). ``rlmusic reward`` (``rlmusic.cli.reward``) reads the rows
from the database and hands them over.

The data (plain rows; ``db.star_rows`` / ``db.pair_rows`` give them, DESIGN.md layers):

- star rows ``{rating_id, clip_id, rater, stars, tokens}``: stars are z-scored *within
  each rater* (a harsh rater and a kind one with the same ordering give the same
  targets); a rater whose stars never vary gives targets of 0 (no ordering information);
- pair rows ``{comparison_id, clip_a, clip_b, rater, winner, tokens_a, tokens_b}``:
  Bradley-Terry, ``P(a beats b) = sigmoid(s_a - s_b)``. A tie counts as half a win for
  each side (target 0.5 in the logistic loss) with ``ties="half"`` (default), or is
  dropped with ``ties="skip"``.

Loss per head: ``star_weight * MSE(s, z) + pair_weight * BCE(sigmoid(s_a - s_b), y)``.
Score units: one unit = one within-rater standard deviation of stars.

Ensemble: K heads, each fitted on its own bootstrap resample of the rows (multinomial
counts used as row weights) from its own seed; the std across heads is the
uncertainty. ``score`` returns the mean over heads, normalised by the mean and std of
that mean on the training melodies (so 0 is "a typical rated melody", 1 is one std
better).

Held-out evaluation (``metrics.json``): the model is fitted once on a rater-disjoint
(``split="rater"``) or clip-disjoint (``split="clip"``) training part and scored on the
held-out part: ``pairwise_accuracy`` on held-out comparisons without ties (chance 0.5),
``star_pair_accuracy`` on pairs of held-out star ratings by the same rater with
different stars, and ``spearman`` between the score and the normalised stars. The saved
model is then refitted on all rows.

Directory (``rlmusic.feedback.reward_model``): ``config.json`` (feature spec, prior directory + vocabulary + fingerprint,
head config, score normalisation, the rating and comparison ids, metrics, git commit)
and ``reward_model.safetensors`` (feature standardisation and the K heads' weights).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rlmusic.feedback.features import feature_names, melody_features
from rlmusic.feedback.finetuned import LAYERS, fit_finetuned
from rlmusic.feedback.judgements import (
    Judgements,
    check_enough,
    heldout_metrics,
    per_melody,
    prepare,
    split_rows,
    zscore_within_raters,
)
from rlmusic.feedback.reward_model import (
    FORMAT_VERSION,
    EnsembleHead,
    FinetunedRewardModel,
    RewardModel,
    prior_fingerprint,
    vae_fingerprint,
)
from rlmusic.models.checkpoint import default_prior_dir, load_model
from rlmusic.models.lstm import MelodyLSTM

SPLITS = ("rater", "clip")
MODELS = ("frozen", "finetuned", "auto")
TIES = ("half", "skip")
FEATURE_SETS = ("prior+stats", "prior", "stats", "vae", "vae+stats")  # "vae": the shipped VAE's latent mean


# --------------------------------------------------------------------------- config


@dataclass
class RewardModelConfig:
    """Options of ``rlmusic reward fit`` (saved in the reward model's config.json)."""

    ensemble: int = 5  # K heads; the std of their scores is the uncertainty
    hidden: int = 32  # hidden units of each head's MLP; 0 = a linear head
    epochs: int = 300  # full-batch Adam steps per fit (the data are small)
    lr: float = 1e-2  # Adam step size of the heads
    weight_decay: float = 1e-2  # L2 on the head weights (few ratings: keep heads simple)
    star_weight: float = 1.0  # weight of the star regression term in the loss
    pair_weight: float = 1.0  # weight of the Bradley-Terry term in the loss
    ties: str = "half"  # "half": a tie is half a win for each clip; "skip": ties are dropped
    bootstrap: bool = True  # each head sees its own bootstrap resample (False: all rows, seeds differ)
    features: str = "prior+stats"  # "prior+stats", "prior" (frozen LSTM only), "stats" (melody statistics only), "vae" or "vae+stats" (the shipped VAE's latent mean)
    split: str = "clip"  # held-out evaluation: "clip"-disjoint, or "rater"-disjoint (and clip-disjoint)
    holdout: float = 0.25  # share of raters (or clips) held out for the metrics
    min_ratings: int = 20  # refuse to fit on fewer judgements (star ratings + comparisons)
    seed: int = 0  # seeds the split, the bootstrap and the heads' initialisation
    model: str = "auto"  # "frozen": heads on the frozen prior's features; "finetuned": the prior's LSTM fine-tuned with a scalar head (rlmusic.feedback.finetuned); "auto": both, the better held-out accuracy kept
    finetune_layers: str = "top"  # finetuned: "top" (the top LSTM layer, the rest frozen) or "all"
    finetune_epochs: int = 30  # finetuned: most epochs (early stopping on a clip-disjoint validation part)
    finetune_patience: int = 6  # finetuned: epochs without a better validation loss before stopping
    finetune_lr: float = 1e-3  # finetuned: Adam step of the LSTM (the head: 10 times it)
    finetune_batch: int = 32  # finetuned: judgements per minibatch

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown reward config keys {unknown}; valid: {sorted(known)}")
        return cls(**dict(data))

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value."""
        for name in ("ensemble", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("hidden", "weight_decay", "star_weight", "pair_weight", "min_ratings"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.star_weight == 0 and self.pair_weight == 0:
            raise ValueError("star_weight and pair_weight are both 0: nothing to fit")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.ties not in TIES:
            raise ValueError(f"ties must be one of {list(TIES)}, got {self.ties!r}")
        if self.features not in FEATURE_SETS:
            raise ValueError(f"features must be one of {list(FEATURE_SETS)}, got {self.features!r}")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {self.split!r}")
        if not 0 < self.holdout < 1:
            raise ValueError(f"holdout must be in (0, 1), got {self.holdout}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
        if self.finetune_layers not in LAYERS:
            raise ValueError(f"finetune_layers must be one of {list(LAYERS)}, got {self.finetune_layers!r}")
        for name in ("finetune_epochs", "finetune_patience", "finetune_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.finetune_lr <= 0:
            raise ValueError(f"finetune_lr must be > 0, got {self.finetune_lr}")


# --------------------------------------------------------------------------- fitting


def _fit_heads(
    x: torch.Tensor,  # (M, F) standardised features of the unique melodies
    data: Judgements,
    star_z: np.ndarray,  # (S,) star targets of every star row (only star_rows are read)
    star_rows: np.ndarray,  # which star rows to use (indices)
    pair_rows: np.ndarray,  # which pair rows to use
    config: RewardModelConfig,
    seed: int,
    init: EnsembleHead | None = None,
    shrink: float = 0.0,
) -> EnsembleHead:
    """Fit K heads (from ``init`` when given, else fresh). With ``init``, the L2 penalty
    ``shrink * |theta - theta_init|^2`` pulls the heads toward it instead of toward 0
    (``rlmusic.feedback.personal``)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    k = config.ensemble if init is None else init.ensemble
    head = EnsembleHead(x.shape[1], k, config.hidden) if init is None else copy.deepcopy(init).train()
    anchor = None if init is None else [p.detach().clone() for p in init.parameters()]

    def weights(n: int) -> torch.Tensor:  # (K, n) bootstrap counts (or ones)
        if not config.bootstrap or n == 0:
            return torch.ones(k, n)
        return torch.as_tensor(np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(k)]),
                               dtype=torch.float32)

    ws, wp = weights(len(star_rows)), weights(len(pair_rows))
    s_idx = torch.as_tensor(data.star_idx[star_rows])
    s_z = torch.as_tensor(star_z[star_rows], dtype=torch.float32)
    p_a, p_b = torch.as_tensor(data.pair_a[pair_rows]), torch.as_tensor(data.pair_b[pair_rows])
    p_y = torch.as_tensor(data.pair_y[pair_rows], dtype=torch.float32)
    opt = torch.optim.Adam(head.parameters(), lr=config.lr)
    for _ in range(config.epochs):
        s = head(x)  # (K, M)
        if anchor is None:
            loss = config.weight_decay * head.l2()  # sum over heads of each head's L2
        else:
            loss = shrink * sum(((p - p0) ** 2).sum() for p, p0 in zip(head.parameters(), anchor))
        if len(star_rows) and config.star_weight:
            err = (s[:, s_idx] - s_z) ** 2  # (K, S)
            loss = loss + config.star_weight * ((ws * err).sum(1) / ws.sum(1).clamp_min(1)).sum()
        if len(pair_rows) and config.pair_weight:
            d = s[:, p_a] - s[:, p_b]  # (K, P)
            bce = F.binary_cross_entropy_with_logits(d, p_y.expand_as(d), reduction="none")
            loss = loss + config.pair_weight * ((wp * bce).sum(1) / wp.sum(1).clamp_min(1)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def fit_reward_model(
    star_rows: Sequence[Mapping[str, Any]],
    pair_rows: Sequence[Mapping[str, Any]],
    prior: MelodyLSTM | str | Path | None = None,
    config: RewardModelConfig | None = None,
    device: str | torch.device = "cpu",
    evaluate: bool = True,
) -> RewardModel:
    """Fit a reward model on plain rows (see the module docstring); returns it unsaved.

    ``prior``: a loaded MelodyLSTM or a model directory (None: the shipped prior); its
    frozen LSTM gives the features. Raises ``ValueError`` on too few ratings.
    """
    config = config or RewardModelConfig()
    config.validate()
    star_rows, pair_rows = list(star_rows), list(pair_rows)
    check_enough(star_rows, pair_rows, config.min_ratings)
    prior_dir = None
    if not isinstance(prior, MelodyLSTM):
        prior_dir = Path(prior) if prior is not None else default_prior_dir()
        prior = load_model(prior_dir, device=device)
    prior = prior.eval()
    data = prepare(star_rows, pair_rows, config.ties)
    if not len(data.melodies):
        raise ValueError("no usable ratings (every comparison is a skipped tie)")
    steps_seen = sorted({len(m) for m in data.melodies})
    feats = per_melody(lambda tokens: melody_features(prior, tokens, config.features), data.melodies)

    mean, std = feats.mean(0), np.where(feats.std(0) > 1e-6, feats.std(0), 1.0)
    x = torch.as_tensor((feats - mean) / std, dtype=torch.float32)  # (M, F): the saved model sees all
    fits: dict[str, tuple[Any, dict[str, Any], np.ndarray]] = {}
    if config.model in ("frozen", "auto"):
        fits["frozen"] = _fit_frozen(feats, x, data, config, evaluate)
    if config.model in ("finetuned", "auto"):
        fits["finetuned"] = fit_finetuned(prior, data, config, device, evaluate)
    kept = max(fits, key=lambda k: (heldout_accuracy(fits[k][1]), k == "frozen"))
    head, metrics, raw = fits[kept]
    if config.model == "auto":
        metrics["auto"] = {k: {"heldout_accuracy": heldout_accuracy(m), "pairwise_accuracy": m.get("pairwise_accuracy"),
                               "star_pair_accuracy": m.get("star_pair_accuracy")} for k, (_, m, _) in fits.items()}
        metrics["auto"]["kept"] = kept
    mu, sd = float(raw.mean(0).mean()), float(raw.mean(0).std())
    sd = sd if sd > 1e-8 else 1.0
    metrics["train_fit"] = heldout_metrics(raw.mean(0), data, np.arange(len(data.star_idx)), np.arange(len(data.pair_a)))
    n_ties = sum(1 for r in pair_rows if r["winner"] == "tie")
    meta = {
        "format_version": FORMAT_VERSION,
        "reward_config": asdict(config),
        "features": {
            "prior_hidden_size": prior.config.hidden_size,
            "set": config.features,
            "names": feature_names(prior.config.hidden_size, config.features),
            "vae_fingerprint": vae_fingerprint(config.features),
            "description": "top LSTM layer of the frozen prior over BOS+melody: mean and last hidden "
                           "state; mean log p_prior per note; melody statistics (STAT_NAMES)",
        },
        "prior": {
            "directory": None if prior_dir is None else str(prior_dir.resolve()),
            "vocabulary": prior.vocab.to_dict(),
            "fingerprint": None if prior_dir is None else prior_fingerprint(prior_dir),
        },
        "head": {"kind": kept, "ensemble": config.ensemble, "hidden": config.hidden, "n_features": int(x.shape[1]),
                 **({"layers": config.finetune_layers, "stats": "stats" in config.features.split("+")}
                    if kept == "finetuned" else {})},
        "normalisation": {
            "mean": mu, "std": sd, "n_melodies": len(data.melodies),
            "disagreement": float((raw.std(0) / sd).mean()),  # mean ensemble std on training melodies
        },
        "data": {
            "rating_ids": sorted(int(r["rating_id"]) for r in star_rows if r.get("rating_id") is not None),
            "comparison_ids": sorted(int(r["comparison_id"]) for r in pair_rows if r.get("comparison_id") is not None),
            "n_ratings": len(star_rows), "n_comparisons": len(pair_rows), "n_ties": n_ties,
            "ties": config.ties, "n_raters": len(set(data.star_rater) | set(data.pair_rater)),
            "steps": steps_seen,
        },
        "metrics": metrics,
    }
    tensors = {"feature_mean": torch.as_tensor(mean), "feature_std": torch.as_tensor(std),
               "rated_features": torch.as_tensor((feats - mean) / std, dtype=torch.float32)}
    cls = FinetunedRewardModel if kept == "finetuned" else RewardModel
    return cls(prior, head, tensors["feature_mean"], tensors["feature_std"], meta,
               rated_features=tensors["rated_features"])


def heldout_accuracy(metrics: Mapping[str, Any]) -> float:
    """One held-out accuracy of a fit: pairwise and star-pair accuracy averaged by their
    counts (-inf when there is neither, so such a fit is never preferred)."""
    parts = [(metrics.get(k), metrics.get(n, 0)) for k, n in (("pairwise_accuracy", "n_test_pairs"),
                                                              ("star_pair_accuracy", "n_test_star_pairs"))]
    parts = [(a, n) for a, n in parts if a is not None and math.isfinite(a) and n]
    return sum(a * n for a, n in parts) / sum(n for _, n in parts) if parts else -math.inf


def _fit_frozen(feats: np.ndarray, x: torch.Tensor, data, config: RewardModelConfig, evaluate: bool
                ) -> tuple[EnsembleHead, dict[str, Any], np.ndarray]:
    """Heads on the frozen features: (the saved head, held-out metrics, raw scores (K, M))."""
    metrics: dict[str, Any] = {}
    if evaluate:
        s_tr, s_te, p_tr, p_te, used = split_rows(data, config.split, config.holdout, config.seed)
        if len(s_tr) + len(p_tr) and len(s_te) + len(p_te):
            # every statistic from training rows only: feature standardisation, star z-scores
            seen = np.unique(np.concatenate([data.star_idx[s_tr], data.pair_a[p_tr], data.pair_b[p_tr]]))
            x_tr = torch.as_tensor(standardise(feats, feats[seen]), dtype=torch.float32)
            z_tr, _ = zscore_within_raters(data.star_value, data.star_rater, s_tr)
            head = _fit_heads(x_tr, data, z_tr, s_tr, p_tr, config, config.seed + 1000)
            with torch.no_grad():
                held = head(x_tr).mean(0).numpy()
            metrics = {"split": used, **heldout_metrics(held, data, s_te, p_te, z_tr),
                       "n_train_ratings": int(len(s_tr)), "n_train_pairs": int(len(p_tr)),
                       "n_dropped_ratings": int(len(data.star_idx) - len(s_tr) - len(s_te)),
                       "n_dropped_pairs": int(len(data.pair_a) - len(p_tr) - len(p_te))}
        else:
            metrics = {"split": used, "note": "held-out part or training part empty: no held-out metrics"}
    head = _fit_heads(x, data, data.star_z, np.arange(len(data.star_idx)), np.arange(len(data.pair_a)), config,
                      config.seed)
    with torch.no_grad():
        raw = head(x).numpy()  # (K, M)
    return head, metrics, raw


def standardise(feats: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """``feats`` standardised with the mean and std of ``basis`` (constant columns: std 1)."""
    std = basis.std(0)
    return (feats - basis.mean(0)) / np.where(std > 1e-6, std, 1.0)


# --------------------------------------------------------------------------- active selection


def prioritise(model: RewardModel, clips: Iterable[Mapping[str, Any]]) -> dict[int, float]:
    """``{clip_id: ensemble std}`` of clips (mappings with ``clip_id`` and ``tokens``),
    for ``db.set_clip_priority``: the clips the heads disagree on most are rated first."""
    clips = [c for c in clips if c.get("clip_id") is not None]
    out: dict[int, float] = {}
    by_len: dict[int, list[Mapping[str, Any]]] = {}
    for c in clips:
        by_len.setdefault(len(c["tokens"]), []).append(c)
    for group in by_len.values():
        _, std = model.score_with_uncertainty(np.array([c["tokens"] for c in group], dtype=np.int64))
        out.update({int(c["clip_id"]): float(s) for c, s in zip(group, std)})
    return out


def format_metrics(metrics: Mapping[str, Any]) -> str:
    def f(v):
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"

    return (f"held-out ({metrics.get('split')}-disjoint): pairwise accuracy {f(metrics.get('pairwise_accuracy'))} "
            f"on {metrics.get('n_test_pairs', 0)} comparisons, star-pair accuracy "
            f"{f(metrics.get('star_pair_accuracy'))} on {metrics.get('n_test_star_pairs', 0)} pairs, "
            f"Spearman {f(metrics.get('spearman'))} on {metrics.get('n_test_ratings', 0)} ratings (chance: 0.5 / 0)")
