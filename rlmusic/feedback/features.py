"""Features of whole melodies for the reward model (``rlmusic.reward_model``).

Holds, in the order they build on each other: the cheap per-melody statistics
(``STAT_NAMES``, ``sounding_pitches``, ``melody_statistics``), the frozen prior's LSTM run
over the melody (``prior_features``), the shipped melody VAE's latent code
(``vae_features``), their concatenation by feature set (``melody_features``) and the
names of the columns (``feature_names``).
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import torch

from rlmusic.models.lstm import MelodyLSTM
from rlmusic.models.vae import MelodyVAE, load_vae
from rlmusic.music.representation import Vocabulary

STAT_NAMES = (
    "note_density",  # note onsets per step
    "rest_share",  # steps of silence
    "pitch_mean",  # mean sounding pitch, octaves from the vocabulary's centre
    "pitch_std",  # octaves
    "pitch_range",  # octaves
    "peak_position",  # onset of the (first) highest note, as a share of the melody
    "trough_position",  # onset of the (first) lowest note
    "quarter1", "quarter2", "quarter3", "quarter4",  # mean pitch of each quarter minus the mean (octaves)
    "interval_mean",  # mean |interval| between successive notes (octaves)
    "interval_max",  # largest |interval| (octaves)
    "leap_share",  # intervals larger than a major third
    "repeat_share",  # intervals of 0
    "last_minus_first",  # last note minus first note (octaves)
)


def sounding_pitches(tokens: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """(N, T) tokens -> (N, T) float pitch sounding at each step (NaN in silence)."""
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    pitch = vocab.pitches(tokens).astype(np.float64)  # -1 for REST/HOLD
    out = np.full(tokens.shape, np.nan)
    current = np.full(tokens.shape[0], np.nan)
    for t in range(tokens.shape[1]):
        tok = tokens[:, t]
        current = np.where(tok == vocab.REST, np.nan, current)
        current = np.where(pitch[:, t] >= 0, pitch[:, t], current)
        out[:, t] = current
    return out


def _nanmean(x: np.ndarray, axis: int) -> np.ndarray:
    count = np.sum(~np.isnan(x), axis=axis)
    total = np.nansum(x, axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def melody_statistics(tokens: np.ndarray, vocab: Vocabulary) -> np.ndarray:
    """Cheap per-melody statistics ``STAT_NAMES``: (N, T) -> (N, len(STAT_NAMES)) float32.

    Melodies without notes get zeros for the pitch statistics."""
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    n, steps = tokens.shape
    centre = (vocab.min_pitch + vocab.max_pitch) / 2
    sounding = sounding_pitches(tokens, vocab)  # (N, T)
    onset_pitch = vocab.pitches(tokens)  # (N, T), -1 off onsets
    out = np.zeros((n, len(STAT_NAMES)), dtype=np.float64)
    out[:, 0] = (onset_pitch >= 0).sum(axis=1) / steps
    out[:, 1] = np.isnan(sounding).mean(axis=1)
    mean = _nanmean(sounding, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out[:, 2] = (mean - centre) / 12
        out[:, 3] = np.nanstd(sounding, axis=1) / 12
        out[:, 4] = (np.nanmax(sounding, axis=1) - np.nanmin(sounding, axis=1)) / 12
    for i in range(n):
        on = np.flatnonzero(onset_pitch[i] >= 0)
        if not len(on):
            continue
        p = onset_pitch[i, on].astype(np.float64)
        out[i, 5] = on[int(np.argmax(p))] / max(1, steps - 1)
        out[i, 6] = on[int(np.argmin(p))] / max(1, steps - 1)
        if len(p) > 1:
            iv = np.abs(np.diff(p))
            out[i, 11], out[i, 12] = iv.mean() / 12, iv.max() / 12
            out[i, 13], out[i, 14] = (iv > 4).mean(), (iv == 0).mean()
        out[i, 15] = (p[-1] - p[0]) / 12
    bounds = np.linspace(0, steps, 5).round().astype(int)
    for q in range(4):
        part = _nanmean(sounding[:, bounds[q] : max(bounds[q + 1], bounds[q] + 1)], 1)
        out[:, 7 + q] = (part - mean) / 12
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


@torch.no_grad()
def prior_features(prior: MelodyLSTM, tokens: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The frozen prior run over BOS + the melody: (N, T) -> (N, 2H + 1) float32:
    mean and last hidden state of the top LSTM layer and the mean log p_prior per note."""
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    prior.vocab.validate(tokens.reshape(-1))
    out = []
    for i in range(0, len(tokens), batch_size):
        x = torch.as_tensor(tokens[i : i + batch_size], device=prior.device)  # (B, T)
        bos = torch.full_like(x[:, :1], prior.vocab.BOS)
        h, _ = prior.lstm(prior.embedding(torch.cat([bos, x], dim=1)))  # (B, T+1, H)
        logp = torch.log_softmax(prior.head(h[:, :-1]).float(), -1)  # (B, T, V)
        lp = logp.gather(-1, x[..., None])[..., 0].mean(1, keepdim=True)  # (B, 1)
        out.append(torch.cat([h[:, 1:].mean(1), h[:, -1], lp], dim=1).float().cpu())
    return torch.cat(out).numpy()


@functools.lru_cache(maxsize=1)
def shipped_vae() -> MelodyVAE:
    """The VAE shipped in the package (``rlmusic/data/vae``), loaded once per process."""
    return load_vae()


@torch.no_grad()
def vae_features(tokens: np.ndarray, vae: MelodyVAE | None = None) -> np.ndarray:
    """The VAE's posterior mean over the melody: (N, T) -> (N, Z) float32. A melody longer
    than the VAE's window is cut into whole windows (a last partial one padded with
    rests) and their means averaged; a shorter one is padded with rests."""
    vae = vae or shipped_vae()
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    vae.vocab.validate(tokens.reshape(-1))
    n, steps = tokens.shape
    w = vae.config.window
    n_windows = max(1, -(-steps // w))
    padded = np.full((n, n_windows * w), vae.vocab.REST, dtype=np.int64)
    padded[:, :steps] = tokens
    windows = torch.as_tensor(padded.reshape(n * n_windows, w))  # (N * K, W)
    mu = torch.cat([vae.posterior_mean(windows[i : i + 512]).cpu() for i in range(0, len(windows), 512)])
    return mu.view(n, n_windows, -1).mean(1).float().numpy()  # (N, Z)


def melody_features(prior: MelodyLSTM, tokens: np.ndarray, features: str = "prior+stats") -> np.ndarray:
    """Features of whole melodies: (N, T) -> (N, F) float32 (see ``feature_names``)."""
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    parts = []
    if "prior" in features.split("+"):
        parts.append(prior_features(prior, tokens))
    if "vae" in features.split("+"):
        parts.append(vae_features(tokens))
    if "stats" in features.split("+"):
        parts.append(melody_statistics(tokens, prior.vocab))
    return np.concatenate(parts, axis=1)


def feature_names(hidden_size: int, features: str = "prior+stats") -> list[str]:
    names = []
    if "prior" in features.split("+"):
        names += [f"h_mean_{i}" for i in range(hidden_size)] + [f"h_last_{i}" for i in range(hidden_size)]
        names += ["log_p_prior_per_note"]
    if "vae" in features.split("+"):
        names += [f"vae_mu_{i}" for i in range(shipped_vae().config.latent_dim)]
    return names + (list(STAT_NAMES) if "stats" in features.split("+") else [])

