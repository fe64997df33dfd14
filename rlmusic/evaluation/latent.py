"""How a melody VAE reconstructs and how smooth its interpolations are (docs/vae.md).

Reads in this order: the statistics of a batch of melodies (``melody_stats``: in key,
notes, interval sizes, leaps, HOLDs that hold nothing) -> the same along interpolation
paths (``path_statistics``: per point, plus how far each point is from both ends and
from its neighbour) -> ``interpolation_report`` (latent paths between random pairs of
held-out windows beside a token-space mix of the same pairs, the baseline MusicVAE
compares with: at position alpha each step takes B's token with probability alpha).
Decoded melodies are monophonic by construction (one token per 16th step), so
"monophonic" is not measured; a HOLD after a rest (which holds nothing and plays as a
rest) is counted as the one malformed case.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rlmusic.models.vae import MelodyVAE
from rlmusic.models.vae_explore import interpolate
from rlmusic.models.vae_train import evaluate_vae
from rlmusic.music.context import Key, RuleContext
from rlmusic.music.metrics import music_theory_metrics
from rlmusic.music.representation import Vocabulary

STAT_KEYS = ("in_key", "notes", "mean_interval", "leap_share", "empty_holds")


def melody_stats(tokens: np.ndarray, vocab: Vocabulary, key: str = "C major") -> dict[str, float]:
    """Figures of N melodies (N, T): ``in_key`` (share of notes in the key's scale),
    ``notes`` (onsets per melody), ``mean_interval`` (mean |semitones| between successive
    notes), ``leap_share`` (intervals over a major third) and ``empty_holds`` (share of
    steps that are a HOLD after a rest)."""
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    ctx = RuleContext(vocab=vocab, key=Key.parse(key), steps=tokens.shape[1])
    pitches = vocab.pitches(tokens)
    intervals = np.concatenate([np.abs(np.diff(p[p >= 0])) for p in pitches] + [np.zeros(0)])
    sounding = np.zeros(tokens.shape[0], dtype=bool)  # is a note sounding before step t
    empty = 0
    for t in range(tokens.shape[1]):
        tok = tokens[:, t]
        empty += int(((tok == vocab.HOLD) & ~sounding).sum())
        sounding = np.where(tok == vocab.REST, False, np.where(tok >= vocab.FIRST_PITCH_TOKEN, True, sounding))
    return {"in_key": 1.0 - float(music_theory_metrics(tokens, ctx)["onsets_not_in_key"]),
            "notes": float((pitches >= 0).sum(1).mean()),
            "mean_interval": float(intervals.mean()) if len(intervals) else float("nan"),
            "leap_share": float((intervals > 4).mean()) if len(intervals) else float("nan"),
            "empty_holds": empty / tokens.size}


def path_statistics(paths: np.ndarray, vocab: Vocabulary, key: str = "C major") -> dict[str, list[float]]:
    """Per point k of P paths of n melodies (P, n, T): ``melody_stats`` of the P melodies at
    k, and the share of steps where point k differs from the start (``from_a``), from the
    end (``from_b``) and from point k-1 (``step_change``, 0 at k = 0)."""
    paths = np.asarray(paths)
    n = paths.shape[1]
    out: dict[str, list[float]] = {k: [] for k in (*STAT_KEYS, "from_a", "from_b", "step_change")}
    for k in range(n):
        for name, value in melody_stats(paths[:, k], vocab, key).items():
            out[name].append(value)
        out["from_a"].append(float((paths[:, k] != paths[:, 0]).mean()))
        out["from_b"].append(float((paths[:, k] != paths[:, -1]).mean()))
        out["step_change"].append(float((paths[:, k] != paths[:, k - 1]).mean()) if k else 0.0)
    return out


def token_mix(a: np.ndarray, b: np.ndarray, alphas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The token-space baseline: (T,), (T,) -> (n, T), step t of point k is b[t] with
    probability alphas[k], else a[t]."""
    take_b = rng.random((len(alphas), len(a))) < np.asarray(alphas)[:, None]
    take_b[0], take_b[-1] = False, True
    return np.where(take_b, b[None], a[None])


def interpolation_report(vae: MelodyVAE, windows: np.ndarray, n_pairs: int = 200, n_points: int = 7,
                         seed: int = 0, key: str = "C major") -> dict[str, Any]:
    """Held-out reconstruction (``evaluate_vae`` of ``windows``) and the path statistics of
    ``n_pairs`` random pairs of those windows: latent (slerp, greedy decoding) and the
    token-space mix; also the inputs' own statistics (``inputs``) for reference."""
    rng = np.random.default_rng(seed)
    pairs = rng.choice(len(windows), size=(n_pairs, 2), replace=len(windows) < 2 * n_pairs)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    latent, mixed = [], []
    for i, j in pairs:
        path, alphas = interpolate(vae, windows[i], windows[j], n_points)
        latent.append(path)
        mixed.append(token_mix(windows[i], windows[j], alphas, rng))
    ends = np.stack([p[[0, -1]] for p in latent]).reshape(-1, windows.shape[1])  # reconstructions of the inputs
    inputs = windows[pairs.reshape(-1)]
    onsets = inputs >= Vocabulary.FIRST_PITCH_TOKEN
    recon = {"token_accuracy": float((ends == inputs).mean()),
             "onset_accuracy": float(((ends == inputs) & onsets).sum() / max(1, onsets.sum()))}
    return {"heldout": evaluate_vae(vae, windows), "n_windows": int(len(windows)), "n_pairs": int(len(pairs)),
            "n_points": n_points, "endpoint_reconstruction": recon,
            "inputs": melody_stats(inputs, vae.vocab, key),
            "latent": path_statistics(np.stack(latent), vae.vocab, key),
            "token_mix": path_statistics(np.stack(mixed), vae.vocab, key)}
