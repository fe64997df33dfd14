"""The saved reward model: what ``fit_reward_model`` returns and ``load_reward_model`` reads.

Holds, in order: the directory format (file names, format version, the prior's weights
fingerprint), ``EnsembleHead`` (K heads in one batched op), ``RewardModel`` (``score``,
``score_with_uncertainty``, ``save``) and loading (``read_reward_meta``,
``load_reward_model``).

Directory: ``config.json`` (feature spec, prior directory + vocabulary + fingerprint,
head config, score normalisation, the rating and comparison ids, metrics, git commit)
and ``reward_model.safetensors`` (feature standardisation and the K heads' weights).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from rlmusic.feedback.features import melody_features
from rlmusic.fileio import write_atomic, write_json
from rlmusic.models.checkpoint import default_prior_dir, load_model, read_model_meta
from rlmusic.models.lstm import MelodyLSTM
from rlmusic.music.representation import Vocabulary, VocabularyMismatchError
from rlmusic.runtime import git_commit, json_safe, now_iso

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "reward_model.safetensors"
METRICS_FILE = "metrics.json"
FORMAT_VERSION = 1


def prior_fingerprint(directory: str | Path) -> str | None:
    """sha256 (first 16 hex digits) of a model directory's weights file."""
    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def vae_fingerprint(features: str) -> str | None:
    """The shipped VAE's fingerprint when the feature set ``features`` reads its latent."""
    from rlmusic.models.vae import default_vae_dir

    return prior_fingerprint(default_vae_dir()) if "vae" in features.split("+") else None


# --------------------------------------------------------------------------- the ensemble head


class EnsembleHead(nn.Module):
    """K independent heads evaluated in one batched op: features (N, F) -> scores (K, N).

    ``hidden=0``: linear heads; else Linear(F, hidden) -> tanh -> Linear(hidden, 1)."""

    def __init__(self, n_features: int, ensemble: int, hidden: int):
        super().__init__()
        self.n_features, self.ensemble, self.hidden = n_features, ensemble, hidden
        width = hidden or 1
        self.w1 = nn.Parameter(torch.randn(ensemble, n_features, width) / math.sqrt(n_features))  # (K, F, H)
        self.b1 = nn.Parameter(torch.zeros(ensemble, 1, width))  # (K, 1, H)
        if hidden:
            self.w2 = nn.Parameter(torch.randn(ensemble, hidden, 1) / math.sqrt(hidden))  # (K, H, 1)
            self.b2 = nn.Parameter(torch.zeros(ensemble, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("nf,kfh->knh", x, self.w1) + self.b1  # (K, N, H)
        if not self.hidden:
            return h[..., 0]  # (K, N)
        return (torch.tanh(h) @ self.w2 + self.b2)[..., 0]  # (K, N)

    def l2(self) -> torch.Tensor:
        return (self.w1**2).sum() + ((self.w2**2).sum() if self.hidden else 0.0)



# --------------------------------------------------------------------------- the reward model


class RewardModel:
    """A fitted reward model: ``score(tokens (B, T)) -> (B,)`` (the env's ``RewardModel``)."""

    def __init__(self, prior: MelodyLSTM, head: EnsembleHead, feature_mean: torch.Tensor,
                 feature_std: torch.Tensor, meta: dict[str, Any], rated_features: torch.Tensor | None = None):
        self.prior, self.head, self.meta = prior.eval(), head.eval(), meta
        self.feature_mean = feature_mean.float()
        self.feature_std = feature_std.float()
        norm = meta["normalisation"]
        self.mean, self.std = float(norm["mean"]), float(norm["std"])
        # the rated melodies in standardised feature space: how far a melody lies from them
        self.rated_features = None if rated_features is None else rated_features.float()
        self.typical_distance = _typical_nn_distance(self.rated_features)

    @property
    def vocab(self) -> Vocabulary:
        return self.prior.vocab

    @property
    def metrics(self) -> dict[str, Any]:
        return self.meta["metrics"]

    @property
    def rating_ids(self) -> list[int]:
        return list(self.meta["data"]["rating_ids"])

    @property
    def comparison_ids(self) -> list[int]:
        return list(self.meta["data"]["comparison_ids"])

    @property
    def train_disagreement(self) -> float:
        return float(self.meta["normalisation"]["disagreement"])

    def features(self, tokens: np.ndarray) -> torch.Tensor:
        """(B, T) -> (B, F) standardised features, as the heads see them."""
        feats = melody_features(self.prior, tokens, self.meta["features"]["set"])
        return (torch.as_tensor(feats) - self.feature_mean) / self.feature_std

    @torch.no_grad()
    def head_scores(self, tokens: np.ndarray) -> np.ndarray:
        """(B, T) -> (K, B) normalised scores of each head."""
        return ((self.head(self.features(tokens)) - self.mean) / self.std).numpy().astype(np.float64)

    @torch.no_grad()
    def ood(self, tokens: np.ndarray) -> np.ndarray:
        """(B, T) -> (B,) how far each melody lies outside what raters judged: the distance
        to the nearest rated melody in the reward model's standardised feature space, over
        the rated melodies' own median distance to their nearest neighbour (about 1 for a
        melody like the rated ones; a score from far outside is extrapolation). NaN when
        the model kept no rated features."""
        if self.rated_features is None or not self.typical_distance:
            return np.full(len(np.atleast_2d(tokens)), np.nan)
        d = torch.cdist(self.features(np.atleast_2d(tokens)), self.rated_features)  # (B, M)
        return (d.min(dim=1).values / self.typical_distance).numpy().astype(np.float64)

    def score_with_uncertainty(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B, T) -> (mean over heads (B,), std across heads (B,)), in normalised units."""
        s = self.head_scores(tokens)
        return s.mean(0), s.std(0)

    def score(self, tokens: np.ndarray) -> np.ndarray:
        """(B, T) -> (B,) the normalised mean over heads."""
        return self.score_with_uncertainty(tokens)[0]

    def save(self, directory: str | Path, metrics_file: bool = True) -> Path:
        """Write ``config.json``, ``reward_model.safetensors`` (and ``metrics.json``)."""
        from safetensors.torch import save


        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {**self.meta, "git_commit": self.meta.get("git_commit") or git_commit(),
                "created": self.meta.get("created") or now_iso()}
        tensors = {"feature_mean": self.feature_mean, "feature_std": self.feature_std}
        if self.rated_features is not None:
            tensors["rated_features"] = self.rated_features.contiguous()
        tensors |= {f"head.{k}": v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        write_atomic(directory / WEIGHTS_FILE, save(tensors))
        write_json(directory / CONFIG_FILE, json_safe(meta))
        if metrics_file:
            write_json(directory / METRICS_FILE, json_safe(meta["metrics"]))
        self.meta = meta
        return directory


class FinetunedRewardModel(RewardModel):
    """A ``RewardModel`` whose scores come from a ``FinetunedScorer`` (its ``head``); the
    frozen features remain for the out-of-distribution measure."""

    @torch.no_grad()
    def head_scores(self, tokens: np.ndarray) -> np.ndarray:
        """(B, T) -> (K, B) normalised scores of each member."""
        tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
        self.vocab.validate(tokens.reshape(-1))
        self.head.eval()
        raw = torch.cat([self.head(torch.as_tensor(tokens[i: i + 512], device=self.prior.device)).cpu()
                         for i in range(0, len(tokens), 512)], dim=1)
        return ((raw - self.mean) / self.std).numpy().astype(np.float64)


def load_finetuned(prior: MelodyLSTM, weights: dict[str, torch.Tensor], meta: dict[str, Any]) -> FinetunedRewardModel:
    """Rebuild a saved fine-tuned reward model over ``prior`` (``load_reward_model`` calls it)."""
    from rlmusic.feedback.finetuned import FinetunedScorer

    h = meta["head"]
    scorer = FinetunedScorer(prior, int(h["ensemble"]), h.get("layers", "top"), bool(h.get("stats"))).to(prior.device)
    scorer.load_state_dict({k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")})
    return FinetunedRewardModel(prior, scorer.eval(), weights["feature_mean"], weights["feature_std"], meta,
                                rated_features=weights.get("rated_features"))


def read_reward_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_FILE
    if not path.is_file() or not (Path(directory) / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{directory} is not a reward model directory (no {CONFIG_FILE} + {WEIGHTS_FILE})")
    return json.loads(path.read_text())


def load_reward_model(
    directory: str | Path, device: str | torch.device = "cpu", prior: str | Path | None = None
) -> RewardModel:
    """Load a reward model directory. ``prior``: the prior directory whose features it
    was fitted on (default: the one recorded in config.json). A prior of another
    vocabulary raises ``VocabularyMismatchError``; other weights only warn."""
    from safetensors.torch import load_file

    from rlmusic.runtime import resolve_device

    meta = read_reward_meta(directory)
    recorded = meta["prior"]["directory"]
    prior_dir = Path(prior) if prior is not None else Path(recorded) if recorded else default_prior_dir()
    read_model_meta(prior_dir)  # a clear error when it is not a model directory
    expected = Vocabulary.from_dict(meta["prior"]["vocabulary"])
    model = load_model(prior_dir, device=resolve_device(str(device)) if isinstance(device, str) else device)
    try:
        expected.check_same(model.vocab, what=f"prior {prior_dir}")
    except VocabularyMismatchError as exc:
        raise VocabularyMismatchError(f"reward model {directory} was fitted on another vocabulary: {exc}") from exc
    if model.config.hidden_size != meta["features"]["prior_hidden_size"]:
        raise ValueError(
            f"prior {prior_dir} has hidden_size {model.config.hidden_size}; the reward model {directory} "
            f"was fitted on features of hidden_size {meta['features']['prior_hidden_size']}"
        )
    fp = meta["prior"].get("fingerprint")
    if fp and prior_fingerprint(prior_dir) != fp:
        warnings.warn(f"prior {prior_dir} is not the one reward model {directory} was fitted on "
                      f"(weights differ): its scores may be meaningless", stacklevel=2)
    features = meta["features"]
    if "vae" in features["set"].split("+"):
        from rlmusic.feedback.features import feature_names

        fitted = features.get("vae_fingerprint")
        if (fitted and fitted != vae_fingerprint(features["set"])) or len(
                feature_names(model.config.hidden_size, features["set"])) != meta["head"]["n_features"]:
            raise ValueError(f"reward model {directory} was fitted on the latent of another VAE than the one shipped "
                             f"now (features {features['set']!r}); fit it again with `rlmusic reward fit`")
    weights = load_file(str(Path(directory) / WEIGHTS_FILE))
    h = meta["head"]
    if h.get("kind", "frozen") == "finetuned":
        return load_finetuned(model, weights, meta)
    head = EnsembleHead(h["n_features"], h["ensemble"], h["hidden"])
    head.load_state_dict({k[len("head."):]: v for k, v in weights.items() if k.startswith("head.")})
    return RewardModel(model, head, weights["feature_mean"], weights["feature_std"], meta,
                       rated_features=weights.get("rated_features"))


def _typical_nn_distance(features: torch.Tensor | None) -> float:
    """Median distance of each rated melody to its nearest other rated melody (0 when
    fewer than two)."""
    if features is None or len(features) < 2:
        return 0.0
    d = torch.cdist(features, features)
    d.fill_diagonal_(float("inf"))
    return float(d.min(dim=1).values.median())

