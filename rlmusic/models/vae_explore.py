"""Exploring a MelodyVAE's latent space: read a melody from MIDI into the VAE's window
(one clear error for an empty, polyphonic or too long melody), interpolate between two,
sample new ones, vary one, and write the points as clip files (``NNNN.mid`` +
``manifest.jsonl``, the rows of ``rlmusic generate`` plus where each point lies).

Decoding is greedy (argmax, deterministic) unless a temperature is given; an
interpolation's first and last points are the reconstructions of its two inputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmusic.models.generate import fold_into_range, write_clips, write_manifest
from rlmusic.models.vae import MelodyVAE, default_vae_dir, slerp, vae_ref
from rlmusic.music.representation import (
    EmptyMelodyError,
    NotMonophonicError,
    Vocabulary,
    check_monophonic,
    load_midi,
    midi_melody,
    midi_to_notes,
    notes_to_tokens,
)

STEPS_PER_BAR = 16  # 4/4 on the 16th grid: how window lengths are said in bars
METHODS = ("slerp", "lerp")


# --------------------------------------------------------------------------- melodies in


def melody_from_midi(pm, vocab: Vocabulary, window: int, track: int | None = None,
                     top_line: bool = False, name: str = "melody") -> tuple[np.ndarray, str]:
    """One melody of a ``PrettyMIDI`` as ``window`` tokens (padded with rests), and how
    it was read. Notes outside the vocabulary's range move by octaves.

    Raises ``EmptyMelodyError`` without notes, ``NotMonophonicError`` for several tracks
    (without ``track``) or overlapping notes (unless ``top_line``: then the top line of the
    chosen tracks is kept), ``ValueError`` for a melody longer than the window.
    """
    tracks = [i for i in pm.instruments if not i.is_drum and i.notes]
    if not tracks:
        raise EmptyMelodyError(f"{name}: the MIDI file has no (non-drum) notes")
    if top_line:
        notes, how = midi_melody(pm, track)
    else:
        if track is None and len(tracks) > 1:
            raise NotMonophonicError(f"{name}: {len(tracks)} tracks have notes; a VAE reads one melody: "
                                     "pick one with --track N or keep the top line with --top-line")
        if track is not None and not 0 <= track < len(tracks):
            raise ValueError(f"{name}: track {track} does not exist: the file has {len(tracks)} non-drum "
                             f"track(s) with notes, numbered 0..{len(tracks) - 1}")
        try:
            notes = check_monophonic(midi_to_notes(pm, instrument=track or 0))
        except NotMonophonicError as exc:
            raise NotMonophonicError(f"{name} is polyphonic ({exc}); a VAE reads one line: "
                                     "keep the top line with --top-line") from exc
        how = "1 track" if len(tracks) == 1 else f"track {track} of {len(tracks)}"
    folded, moved = fold_into_range(notes, vocab)
    if moved:
        how += f", {moved} note(s) moved by octaves into {vocab.min_pitch}..{vocab.max_pitch}"
    tokens = notes_to_tokens(folded, vocab)
    if len(tokens) > window:
        raise ValueError(f"{name} is {len(tokens)} steps long ({len(tokens) / STEPS_PER_BAR:g} bars of 4/4), "
                         f"longer than the VAE's window of {window} steps ({window / STEPS_PER_BAR:g} bars); "
                         f"cut it to {window} steps or train a VAE with a longer --window")
    return np.pad(tokens, (0, window - len(tokens)), constant_values=vocab.REST), how


def read_melody(path: str | Path, vocab: Vocabulary, window: int, track: int | None = None,
                top_line: bool = False) -> tuple[np.ndarray, str]:
    """``melody_from_midi`` of a MIDI file (a missing or unreadable file raises clearly)."""
    return melody_from_midi(load_midi(path), vocab, window, track, top_line, name=str(path))


def examples(vae_dir: str | Path | None = None) -> list[dict[str, Any]]:
    """The held-out melodies saved with a VAE (``examples.json``: piece, title, tokens)."""
    path = Path(vae_dir if vae_dir is not None else default_vae_dir()) / "examples.json"
    return json.loads(path.read_text()) if path.is_file() else []


# --------------------------------------------------------------------------- the latent space


def _as_batch(vae: MelodyVAE, tokens: np.ndarray) -> torch.Tensor:
    x = torch.as_tensor(np.atleast_2d(np.asarray(tokens, dtype=np.int64)))
    if x.shape[1] != vae.config.window:
        raise ValueError(f"melodies must be {vae.config.window} steps (the VAE's window), got {x.shape[1]}")
    vae.vocab.validate(x.reshape(-1).numpy())
    return x


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def interpolate(vae: MelodyVAE, a: np.ndarray, b: np.ndarray, n: int = 7, method: str = "slerp",
                temperature: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` melodies along the latent path from ``a`` to ``b`` (each (T,) tokens) ->
    tokens (n, T) and the positions alpha (n,) in [0, 1]; points 0 and n-1 decode the
    posterior means of a and b (their reconstructions)."""
    if n < 2:
        raise ValueError(f"an interpolation needs n >= 2 points, got {n}")
    if method not in METHODS:
        raise ValueError(f"unknown interpolation method {method!r}; valid: {', '.join(METHODS)}")
    mu = vae.posterior_mean(_as_batch(vae, np.stack([a, b]))).cpu()  # (2, Z)
    alphas = torch.linspace(0.0, 1.0, n)
    z = slerp(mu[0], mu[1], alphas) if method == "slerp" else (1 - alphas[:, None]) * mu[0] + alphas[:, None] * mu[1]
    return vae.decode(z, temperature, _generator(seed)).numpy(), alphas.numpy()


def sample(vae: MelodyVAE, n: int, seed: int = 0, temperature: float = 0.5) -> np.ndarray:
    """``n`` new melodies decoded from z ~ N(0, I) -> (n, T)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    gen = _generator(seed)
    z = torch.randn(n, vae.config.latent_dim, generator=gen)  # (n, Z)
    return vae.decode(z, temperature, gen).numpy()


def vary(vae: MelodyVAE, melody: np.ndarray, amount: float, n: int, seed: int = 0,
         temperature: float = 0.0) -> np.ndarray:
    """``n`` variations of ``melody`` (T,): z = mu + amount * eps, eps ~ N(0, I) (``amount``
    in units of the prior's standard deviation; 0 gives the reconstruction) -> (n, T)."""
    if not np.isfinite(amount) or amount < 0:
        raise ValueError(f"--amount must be >= 0 (latent standard deviations), got {amount}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    mu = vae.posterior_mean(_as_batch(vae, melody)).cpu()  # (1, Z)
    gen = _generator(seed)
    z = mu + amount * torch.randn(n, mu.shape[1], generator=gen)  # (n, Z)
    return vae.decode(z, temperature, gen).numpy()


# --------------------------------------------------------------------------- clips out


def write_points(tokens: np.ndarray, out: str | Path, vae: MelodyVAE, seed: int,
                 extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``NNNN.mid`` + ``manifest.jsonl`` of decoded melodies (rows as ``rlmusic generate``
    writes them, ``model`` the VAE directory), each row updated with its ``extra`` dict."""
    out = Path(out)
    rows = write_clips(np.asarray(tokens), out, vae.vocab, vae_ref(vae.source_dir), seed)
    for row, more in zip(rows, extra or [{}] * len(rows)):
        row.update(more)
    write_manifest(out, rows)
    return rows
