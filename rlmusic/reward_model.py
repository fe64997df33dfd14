"""A reward model over whole melodies, fitted on stored human judgements: ``rlmusic reward``.

This module holds the config, the fitting (data preparation, per-rater normalisation, one
loss over star ratings and pairwise comparisons, the ensemble, held-out evaluation),
active selection (``prioritise``) and the CLI. The other concepts have their own modules,
whose public names are re-exported here (``__all__``), in the order of the model:

- ``rlmusic.reward_features``: features (the frozen prior's LSTM run over the melody plus a
  few cheap melody statistics);
- ``rlmusic.reward_saved``: the ensemble of K small heads, the directory format,
  ``RewardModel`` (``score``, ``score_with_uncertainty``, ``save``) and ``load_reward_model``;
- ``rlmusic.reward_guard``: what the tuning env calls and the over-optimisation guard
  (running normalisation and disagreement tracking).

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

Directory (``rlmusic.reward_saved``): ``config.json`` (feature spec, prior directory + vocabulary + fingerprint,
head config, score normalisation, the rating and comparison ids, metrics, git commit)
and ``reward_model.safetensors`` (feature standardisation and the K heads' weights).
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rlmusic.model import MelodyLSTM, default_prior_dir, load_model
from rlmusic.reward_features import (
    STAT_NAMES,
    feature_names,
    melody_features,
    melody_statistics,
    prior_features,
    sounding_pitches,
)
from rlmusic.reward_guard import (
    GuardConfig,
    GuardedRewardModel,
    OverOptimisationWarning,
    RunningMeanStd,
    guard_callback,
)
from rlmusic.reward_saved import (
    CONFIG_FILE,
    FORMAT_VERSION,
    METRICS_FILE,
    WEIGHTS_FILE,
    EnsembleHead,
    RewardModel,
    _json_safe,  # noqa: F401  (rlmusic.rounds imports it from here)
    load_reward_model,
    prior_fingerprint,
    read_reward_meta,
)

__all__ = [
    # this module: config, fitting, evaluation, active selection, CLI
    "FEATURE_SETS", "SPLITS", "TIES", "RewardConfig", "normalise_stars", "check_enough",
    "rankdata", "spearman", "fit_reward_model", "prioritise", "add_arguments",
    "config_from_args", "format_metrics", "fit_from_db", "main",
    # rlmusic.reward_features
    "STAT_NAMES", "sounding_pitches", "melody_statistics", "prior_features", "melody_features",
    "feature_names",
    # rlmusic.reward_saved
    "CONFIG_FILE", "WEIGHTS_FILE", "METRICS_FILE", "FORMAT_VERSION", "EnsembleHead",
    "RewardModel", "prior_fingerprint", "read_reward_meta", "load_reward_model",
    # rlmusic.reward_guard
    "OverOptimisationWarning", "RunningMeanStd", "GuardConfig", "GuardedRewardModel",
    "guard_callback",
]

SPLITS = ("rater", "clip")
TIES = ("half", "skip")
FEATURE_SETS = ("prior+stats", "prior", "stats")


# --------------------------------------------------------------------------- config


@dataclass
class RewardConfig:
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
    features: str = "prior+stats"  # "prior+stats", "prior" (frozen LSTM only) or "stats" (melody statistics only)
    split: str = "rater"  # held-out evaluation: "rater"-disjoint or "clip"-disjoint
    holdout: float = 0.25  # share of raters (or clips) held out for the metrics
    min_ratings: int = 20  # refuse to fit on fewer judgements (star ratings + comparisons)
    seed: int = 0  # seeds the split, the bootstrap and the heads' initialisation

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RewardConfig:
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


# --------------------------------------------------------------------------- data preparation


def _key(tokens: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(t) for t in tokens)


def normalise_stars(rows: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """Stars z-scored within each rater -> (targets (N,), {rater: {mean, std, n}}).

    A rater whose stars never vary (or who gave one rating) gets targets of 0."""
    stars = np.array([float(r["stars"]) for r in rows])
    raters = [str(r["rater"]) for r in rows]
    z = np.zeros(len(rows))
    stats: dict[str, dict[str, float]] = {}
    for name in sorted(set(raters)):
        idx = np.array([i for i, r in enumerate(raters) if r == name])
        mean, std = float(stars[idx].mean()), float(stars[idx].std())
        stats[name] = {"mean": mean, "std": std, "n": len(idx)}
        if std > 0:
            z[idx] = (stars[idx] - mean) / std
    return z, stats


@dataclass
class _Data:
    """Rows turned into indices of unique melodies."""

    melodies: list[tuple[int, ...]]  # unique melodies (token tuples)
    star_idx: np.ndarray  # (S,) melody index of each star row
    star_z: np.ndarray  # (S,) normalised stars
    star_rater: list[str]
    star_clip: list[Any]
    pair_a: np.ndarray  # (P,) melody indices
    pair_b: np.ndarray
    pair_y: np.ndarray  # (P,) 1 a won, 0 b won, 0.5 tie
    pair_rater: list[str]
    pair_clips: list[tuple[Any, Any]]


def _prepare(star_rows: Sequence[Mapping[str, Any]], pair_rows: Sequence[Mapping[str, Any]], ties: str) -> _Data:
    index: dict[tuple[int, ...], int] = {}

    def idx(tokens) -> int:
        return index.setdefault(_key(tokens), len(index))

    z, _ = normalise_stars(star_rows)
    star_idx = np.array([idx(r["tokens"]) for r in star_rows], dtype=np.int64)
    a, b, y, raters, clips = [], [], [], [], []
    for r in pair_rows:
        winner = r["winner"]
        if winner not in ("a", "b", "tie"):
            raise ValueError(f"comparison {r.get('comparison_id')}: winner must be 'a', 'b' or 'tie', got {winner!r}")
        if winner == "tie" and ties == "skip":
            continue
        a.append(idx(r["tokens_a"]))
        b.append(idx(r["tokens_b"]))
        y.append({"a": 1.0, "b": 0.0, "tie": 0.5}[winner])
        raters.append(str(r["rater"]))
        clips.append((r.get("clip_a", a[-1]), r.get("clip_b", b[-1])))
    return _Data(
        melodies=list(index), star_idx=star_idx, star_z=z, star_rater=[str(r["rater"]) for r in star_rows],
        star_clip=[r.get("clip_id", star_idx[i]) for i, r in enumerate(star_rows)],
        pair_a=np.array(a, dtype=np.int64), pair_b=np.array(b, dtype=np.int64), pair_y=np.array(y),
        pair_rater=raters, pair_clips=clips,
    )


def check_enough(star_rows: Sequence, pair_rows: Sequence, min_ratings: int) -> None:
    """``ValueError`` saying how many judgements there are and how many are needed."""
    have = len(star_rows) + len(pair_rows)
    if have < min_ratings:
        raise ValueError(
            f"too few ratings to fit a reward model: {have} ({len(star_rows)} star ratings + "
            f"{len(pair_rows)} comparisons), need at least {min_ratings} (min_ratings)"
        )


# --------------------------------------------------------------------------- fitting


def _fit_heads(
    x: torch.Tensor,  # (M, F) standardised features of the unique melodies
    data: _Data,
    star_rows: np.ndarray,  # which star rows to use (indices)
    pair_rows: np.ndarray,  # which pair rows to use
    config: RewardConfig,
    seed: int,
) -> EnsembleHead:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    k = config.ensemble
    head = EnsembleHead(x.shape[1], k, config.hidden)

    def weights(n: int) -> torch.Tensor:  # (K, n) bootstrap counts (or ones)
        if not config.bootstrap or n == 0:
            return torch.ones(k, n)
        return torch.as_tensor(np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(k)]),
                               dtype=torch.float32)

    ws, wp = weights(len(star_rows)), weights(len(pair_rows))
    s_idx = torch.as_tensor(data.star_idx[star_rows])
    s_z = torch.as_tensor(data.star_z[star_rows], dtype=torch.float32)
    p_a, p_b = torch.as_tensor(data.pair_a[pair_rows]), torch.as_tensor(data.pair_b[pair_rows])
    p_y = torch.as_tensor(data.pair_y[pair_rows], dtype=torch.float32)
    opt = torch.optim.Adam(head.parameters(), lr=config.lr)
    for _ in range(config.epochs):
        s = head(x)  # (K, M)
        loss = config.weight_decay * head.l2()  # sum over heads of each head's L2
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


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank (as scipy.stats.rankdata)."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (NaN with fewer than 3 points or a constant input)."""
    if len(a) < 3:
        return math.nan
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])


def _split(data: _Data, config: RewardConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(train star rows, test star rows, train pair rows, test pair rows, split used)."""
    rng = np.random.default_rng(config.seed + 7919)
    raters = sorted(set(data.star_rater) | set(data.pair_rater))
    split = config.split
    if split == "rater" and len(raters) < 2:
        warnings.warn(f"split='rater' needs >= 2 raters, got {len(raters)}; using a clip-disjoint split",
                      stacklevel=3)
        split = "clip"
    if split == "rater":
        n_out = min(len(raters) - 1, max(1, round(config.holdout * len(raters))))
        held = set(rng.permutation(raters)[:n_out].tolist())
        s_test = np.array([r in held for r in data.star_rater], dtype=bool)
        p_test = np.array([r in held for r in data.pair_rater], dtype=bool)
    else:
        m = len(data.melodies)
        held_m = np.zeros(m, dtype=bool)
        held_m[rng.permutation(m)[: max(1, round(config.holdout * m))]] = True
        s_test = held_m[data.star_idx]
        p_test = held_m[data.pair_a] | held_m[data.pair_b]  # any held-out clip: test
    s_test = s_test.reshape(-1)
    p_test = p_test.reshape(-1)
    return (np.flatnonzero(~s_test), np.flatnonzero(s_test), np.flatnonzero(~p_test), np.flatnonzero(p_test), split)


def _evaluate(scores: np.ndarray, data: _Data, s_rows: np.ndarray, p_rows: np.ndarray) -> dict[str, Any]:
    """Held-out figures of melody scores (M,) on the given star and pair rows."""
    out: dict[str, Any] = {}
    decided = p_rows[data.pair_y[p_rows] != 0.5]
    if len(decided):
        d = scores[data.pair_a[decided]] - scores[data.pair_b[decided]]
        correct = np.where(d == 0, 0.5, (d > 0) == (data.pair_y[decided] == 1.0))
        out["pairwise_accuracy"], out["n_test_pairs"] = float(np.mean(correct)), int(len(decided))
    else:
        out["pairwise_accuracy"], out["n_test_pairs"] = math.nan, 0
    # pairs of star ratings by the same held-out rater with different stars
    right = total = 0.0
    by_rater: dict[str, list[int]] = {}
    for i in s_rows:
        by_rater.setdefault(data.star_rater[i], []).append(int(i))
    for rows in by_rater.values():
        z = data.star_z[rows]
        s = scores[data.star_idx[rows]]
        dz = z[:, None] - z[None, :]
        ds = s[:, None] - s[None, :]
        mask = dz > 0
        total += mask.sum()
        right += np.where(ds[mask] == 0, 0.5, ds[mask] > 0).sum()
    out["star_pair_accuracy"] = float(right / total) if total else math.nan
    out["n_test_star_pairs"] = int(total)
    out["spearman"] = spearman(scores[data.star_idx[s_rows]], data.star_z[s_rows]) if len(s_rows) else math.nan
    out["n_test_ratings"] = int(len(s_rows))
    return out


def fit_reward_model(
    star_rows: Sequence[Mapping[str, Any]],
    pair_rows: Sequence[Mapping[str, Any]],
    prior: MelodyLSTM | str | Path | None = None,
    config: RewardConfig | None = None,
    device: str | torch.device = "cpu",
    evaluate: bool = True,
) -> RewardModel:
    """Fit a reward model on plain rows (see the module docstring); returns it unsaved.

    ``prior``: a loaded MelodyLSTM or a model directory (None: the shipped prior); its
    frozen LSTM gives the features. Raises ``ValueError`` on too few ratings.
    """
    config = config or RewardConfig()
    config.validate()
    star_rows, pair_rows = list(star_rows), list(pair_rows)
    check_enough(star_rows, pair_rows, config.min_ratings)
    prior_dir = None
    if not isinstance(prior, MelodyLSTM):
        prior_dir = Path(prior) if prior is not None else default_prior_dir()
        prior = load_model(prior_dir, device=device)
    prior = prior.eval()
    data = _prepare(star_rows, pair_rows, config.ties)
    if not len(data.melodies):
        raise ValueError("no usable ratings (every comparison is a skipped tie)")
    steps_seen = sorted({len(m) for m in data.melodies})
    feats = np.concatenate([melody_features(prior, np.array([m]), config.features) for m in data.melodies]) \
        if len(steps_seen) > 1 else melody_features(prior, np.array(data.melodies), config.features)
    mean, std = feats.mean(0), feats.std(0)
    std = np.where(std > 1e-6, std, 1.0)
    x = torch.as_tensor((feats - mean) / std, dtype=torch.float32)  # (M, F)

    metrics: dict[str, Any] = {}
    if evaluate:
        s_tr, s_te, p_tr, p_te, used = _split(data, config)
        if len(s_tr) + len(p_tr) and len(s_te) + len(p_te):
            head = _fit_heads(x, data, s_tr, p_tr, config, config.seed + 1000)
            with torch.no_grad():
                held = head(x).mean(0).numpy()
            metrics = {"split": used, **_evaluate(held, data, s_te, p_te),
                       "n_train_ratings": int(len(s_tr)), "n_train_pairs": int(len(p_tr))}
        else:
            metrics = {"split": used, "note": "held-out part or training part empty: no held-out metrics"}
    head = _fit_heads(x, data, np.arange(len(data.star_idx)), np.arange(len(data.pair_a)), config, config.seed)
    with torch.no_grad():
        raw = head(x).numpy()  # (K, M)
    mu, sd = float(raw.mean(0).mean()), float(raw.mean(0).std())
    sd = sd if sd > 1e-8 else 1.0
    metrics["train_fit"] = _evaluate(raw.mean(0), data, np.arange(len(data.star_idx)), np.arange(len(data.pair_a)))
    n_ties = sum(1 for r in pair_rows if r["winner"] == "tie")
    meta = {
        "format_version": FORMAT_VERSION,
        "reward_config": asdict(config),
        "features": {
            "prior_hidden_size": prior.config.hidden_size,
            "set": config.features,
            "names": feature_names(prior.config.hidden_size, config.features),
            "description": "top LSTM layer of the frozen prior over BOS+melody: mean and last hidden "
                           "state; mean log p_prior per note; melody statistics (STAT_NAMES)",
        },
        "prior": {
            "directory": None if prior_dir is None else str(prior_dir.resolve()),
            "vocabulary": prior.vocab.to_dict(),
            "fingerprint": None if prior_dir is None else prior_fingerprint(prior_dir),
        },
        "head": {"ensemble": config.ensemble, "hidden": config.hidden, "n_features": int(x.shape[1])},
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
    tensors = {"feature_mean": torch.as_tensor(mean), "feature_std": torch.as_tensor(std)}
    return RewardModel(prior, head, tensors["feature_mean"], tensors["feature_std"], meta)


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


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    fit = sub.add_parser("fit", help="fit a reward model on every stored rating and comparison")
    fit.add_argument("--out", required=True, help="reward model directory to write")
    fit.add_argument("--prior", help="model directory whose frozen LSTM gives the features (default: shipped prior)")
    fit.add_argument("--min-ratings", type=int, help="refuse to fit on fewer judgements (default 20)")
    fit.add_argument("--ensemble", type=int, help="K heads (bootstrap resamples) for the uncertainty (default 5)")
    fit.add_argument("--seed", type=int, help="seed of the split, bootstrap and heads (default 0)")
    fit.add_argument("--split", choices=SPLITS, help="held-out evaluation split (default rater)")
    fit.add_argument("--ties", choices=TIES, help="ties as half-wins (default) or skipped")
    fit.add_argument("--config", help="RewardConfig keys as TOML or JSON (flags override it)")
    fit.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    pri = sub.add_parser("prioritise", help="active selection: queue the clips the ensemble disagrees on first")
    pri.add_argument("--reward-model", required=True, help="reward model directory")
    pri.add_argument("--manifest", required=True, action="append",
                     help="manifest.jsonl (or its folder) of enqueued clips (rlmusic generate --enqueue); repeatable")
    score = sub.add_parser("score", help="print the score and uncertainty of the clips of a manifest")
    score.add_argument("--reward-model", required=True, help="reward model directory")
    score.add_argument("--manifest", required=True, help="manifest.jsonl or its folder")


def config_from_args(args: argparse.Namespace) -> RewardConfig:
    data: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"reward config {path} not found")
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            import tomllib

            data = tomllib.loads(path.read_text())
    for key in ("min_ratings", "ensemble", "seed", "split", "ties"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    return RewardConfig.from_dict(data)


def _read_manifest(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def format_metrics(metrics: Mapping[str, Any]) -> str:
    def f(v):
        return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"

    return (f"held-out ({metrics.get('split')}-disjoint): pairwise accuracy {f(metrics.get('pairwise_accuracy'))} "
            f"on {metrics.get('n_test_pairs', 0)} comparisons, star-pair accuracy "
            f"{f(metrics.get('star_pair_accuracy'))} on {metrics.get('n_test_star_pairs', 0)} pairs, "
            f"Spearman {f(metrics.get('spearman'))} on {metrics.get('n_test_ratings', 0)} ratings (chance: 0.5 / 0)")


def fit_from_db(out: str | Path, prior: str | Path | None = None, config: RewardConfig | None = None,
                device: str = "auto", engine=None) -> RewardModel:
    """Read every rating and comparison from the database, fit, save into ``out``."""
    import db
    from rlmusic.runtime import resolve_device

    engine = engine or db.get_engine()
    db.check_schema(engine)
    model = fit_reward_model(db.star_rows(engine), db.pair_rows(engine), prior, config,
                             device=resolve_device(device))
    model.save(out)
    return model


def main(args: argparse.Namespace) -> int:
    if args.action == "fit":
        model = fit_from_db(args.out, args.prior, config_from_args(args), args.device)
        d = model.meta["data"]
        print(f"reward fit: {d['n_ratings']} star ratings + {d['n_comparisons']} comparisons "
              f"({d['n_ties']} ties, {d['ties']}) from {d['n_raters']} raters")
        print("reward fit: " + format_metrics(model.metrics))
        print(f"reward fit: wrote {args.out}")
        return 0
    model = load_reward_model(args.reward_model)
    if args.action == "prioritise":
        import db

        clips = [row for path in args.manifest for row in _read_manifest(path)]
        scores = prioritise(model, clips)
        if not scores:
            raise ValueError("no enqueued clips (with clip_id) in the manifests")
        engine = db.get_engine()
        db.check_schema(engine)
        db.set_clip_priority(engine, scores)
        values = np.array(list(scores.values()))
        print(f"reward prioritise: set the priority of {len(scores)} clips to the ensemble std "
              f"(mean {values.mean():.3f}, max {values.max():.3f}); raters see the highest first "
              f"with next_clip(order='priority')")
        return 0
    rows = _read_manifest(args.manifest)
    tokens = np.array([r["tokens"] for r in rows], dtype=np.int64)
    mean, std = model.score_with_uncertainty(tokens)
    for r, m, s in zip(rows, mean, std):
        print(f"{r.get('clip_id')}\t{r.get('midi')}\t{m:+.3f}\t{s:.3f}")
    return 0
