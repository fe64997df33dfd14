"""The evaluation table of a batch of melodies (``rlmusic evaluate``, ``rlmusic.evaluate``).

Reads in this order: the contract keys -> per-step log-probabilities under a model ->
``evaluate_tokens`` (the table of N melodies) -> the reference prior -> ``evaluate_model``
(sample a model directory, seeded, and evaluate) -> ``read_midi_folder``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmusic.corpus.index import corpus_index
from rlmusic.models.checkpoint import (
    default_prior_dir,
    load_model,
    model_path,
    model_ref,
    reference_prior_dir,
    training_corpus,
)
from rlmusic.models.lstm import MelodyLSTM
from rlmusic.music import originality, structure
from rlmusic.music.context import Key, RuleContext
from rlmusic.music.metrics import music_theory_metrics
from rlmusic.music.representation import (
    DEFAULT_VOCAB,
    Vocabulary,
    load_midi,
    midi_melody,
    notes_to_tokens,
)
from rlmusic.music.rl_tuner_metrics import rl_tuner_metrics
from rlmusic.runtime import resolve_device

# RL Tuner's metrics as Magenta computes them (rlmusic.music.rl_tuner_metrics), in its table's order.
RL_TUNER_KEYS = (
    "notes_excessively_repeated", "notes_not_in_key", "starts_with_tonic", "leaps_resolved",
    "unique_max_note", "unique_min_note", "notes_in_motif", "notes_in_repeated_motif",
    "autocorrelation_lag1", "autocorrelation_lag2", "autocorrelation_lag3",
)
# Keys of the evaluate contract, in table order (more keys follow them).
CONTRACT_KEYS = (
    *(f"rl_tuner/{k}" for k in RL_TUNER_KEYS),
    "structure", "novelty", "diversity", "log_p_prior_per_step", "kl_per_step", "kl_per_note",
    "n", "steps",
)


# --------------------------------------------------------------------------- log-likelihoods and KL

KEEP_LOG_PROBS_BYTES = 1 << 29  # evaluate_model keeps the sampling's log-probs (for the KL) up to 512 MiB


@torch.no_grad()
def step_log_probs(model: MelodyLSTM, tokens: np.ndarray, temperature: float = 1.0,
                   batch_size: int = 512) -> np.ndarray:
    """(N, T) log-probability of each token of ``tokens`` under ``model`` (logits / temperature)."""
    out = []
    for i in range(0, len(tokens), batch_size):
        x = torch.as_tensor(tokens[i : i + batch_size], dtype=torch.long, device=model.device)
        logits, _ = model(model.with_bos(x))  # (B, T, V)
        lp = torch.log_softmax(logits.float() / temperature, dim=-1)
        out.append(lp.gather(-1, x[..., None])[..., 0].cpu().numpy())
    return np.concatenate(out).astype(np.float64)


@torch.no_grad()
def exact_kl(model: MelodyLSTM | None, prior: MelodyLSTM, tokens: np.ndarray, temperature: float = 1.0,
             batch_size: int = 512, model_log_probs: torch.Tensor | None = None) -> dict[str, float]:
    """KL(model || prior) along melodies, exactly: at every step the sum over the vocabulary
    of pi(v) (log pi(v) - log p(v)) given the melody so far (no sampling noise).

    ``kl_per_step``: nats per 16th-note step (mean over steps); ``kl_per_note``: nats per
    note onset (the KL of all steps over the number of onsets; larger, since most steps
    hold or rest); ``log_p_prior_per_step``: mean log p_prior of the tokens.
    ``model_log_probs``: the model's log-probabilities at every step (N, T, V), as
    ``MelodyLSTM.sample(..., return_log_probs=True)`` gives them, instead of its forward.
    """
    if model is None and model_log_probs is None:
        raise ValueError("exact_kl needs the model or its log-probabilities (model_log_probs)")
    total = lp_sum = 0.0
    for i in range(0, len(tokens), batch_size):
        x = torch.as_tensor(tokens[i : i + batch_size], dtype=torch.long, device=prior.device)
        inputs = prior.with_bos(x)
        logq = torch.log_softmax(prior(inputs)[0].float(), -1)  # (B, T, V)
        if model_log_probs is not None:
            logp = model_log_probs[i : i + batch_size].to(logq.device)
        else:
            logp = torch.log_softmax(model(inputs.to(model.device))[0].float() / temperature, -1).to(logq.device)
        total += float((logp.exp() * (logp - logq)).sum())
        lp_sum += float(logq.gather(-1, x[..., None]).sum())
    n_steps = tokens.size
    onsets = int((tokens >= Vocabulary.FIRST_PITCH_TOKEN).sum())
    return {"kl_per_step": total / n_steps, "kl_per_note": total / onsets if onsets else math.nan,
            "log_p_prior_per_step": lp_sum / n_steps}


# --------------------------------------------------------------------------- the table


def evaluate_tokens(
    tokens: np.ndarray,
    vocab: Vocabulary = DEFAULT_VOCAB,
    prior: MelodyLSTM | None = None,
    model: MelodyLSTM | None = None,
    corpus: Any = None,
    key: str = "C major",
    temperature: float = 1.0,
    max_copied_notes: int = 16,
    model_log_probs: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The evaluation table of N melodies (N, T) as a dict (keys: ``CONTRACT_KEYS`` first).

    ``rl_tuner/*``: RL Tuner's metrics as Magenta's ``rl_tuner_eval_metrics.py`` computes
    them (shares of 16th steps; tonic = the key's tonic at MIDI 60..71, C major: MIDI 60, at
    step 0; its leap state machine), with their raw counts (``rl_tuner/num_*``);
    ``rlmusic/*``: our own variants (``rlmusic.music.metrics.music_theory_metrics``).

    ``prior``: a loaded MelodyLSTM giving ``log_p_prior_per_step`` (nan without);
    ``model``: the MelodyLSTM that sampled ``tokens`` at ``temperature``, giving
    ``kl_per_step`` and ``kl_per_note`` (``exact_kl``; needs ``prior``; ``model_log_probs``,
    its log-probabilities at every step as sampling gave them, spares its forward);
    ``corpus``: corpus sources (train split, ``corpus_index``), an ``NgramIndex`` or token
    sequences for novelty and copied spans; None leaves them nan.
    """
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    if tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise ValueError(f"need at least one melody of one step, got shape {tokens.shape}")
    vocab.validate(tokens.reshape(-1))
    N, T = tokens.shape
    ctx = RuleContext(vocab=vocab, key=Key.parse(key), steps=T)
    out: dict[str, Any] = {}
    if vocab == DEFAULT_VOCAB:  # Magenta's tokens are ours for pitches 48..84 (docs/rl_tuner.md)
        magenta = rl_tuner_metrics(tokens, ctx.key.scale, tonic_pitch=60 + ctx.key.tonic)
        out.update({f"rl_tuner/{k}": v for k, v in magenta.items()})
    out.update({f"rlmusic/{k}": v for k, v in music_theory_metrics(tokens, ctx).items()})
    parts = structure.structure_terms(tokens, ctx)
    out["structure"] = float(parts["structure"].mean())
    if corpus is None:
        out["novelty"] = out["copied_notes"] = out["copied_over_max"] = math.nan
        out["unshared_ngrams"] = float(originality.unshared_ngrams(tokens, vocab).mean())
    else:
        index = corpus_index(corpus, vocab=vocab) if isinstance(corpus, str) else corpus
        orig = originality.originality_scores(tokens, vocab, index, max_copied_notes=max_copied_notes)
        out["novelty"] = float(orig["novelty"].mean())
        out["copied_notes"] = float(orig["copied_notes"].mean())
        out["copied_over_max"] = float((orig["copied_notes"] > max_copied_notes).mean())
        out["unshared_ngrams"] = float(orig["diversity"].mean())  # the per-melody diversity
    out["diversity"] = originality.batch_diversity(tokens, vocab)
    out["distinct_melodies"] = len({t.tobytes() for t in tokens}) / N
    if model is not None:
        if prior is None:
            raise ValueError("kl_per_step needs a prior: pass prior=...")
        out.update(exact_kl(model, prior, tokens, temperature, model_log_probs=model_log_probs))
    elif prior is not None:
        out["log_p_prior_per_step"] = float(step_log_probs(prior, tokens).mean())
    else:
        out["log_p_prior_per_step"] = math.nan
    for name in ("repetition", "variety", "bar_repetition", "cadence", "rhythm_consistency"):
        out[f"structure_{name}"] = float(parts[name].mean())
    out["bar_structure"] = float(parts["bar_structure"].mean())  # the older bar-grid score
    out["notes_per_melody"] = float((vocab.pitches(tokens) >= 0).sum(axis=1).mean())
    out["n"], out["steps"] = N, T
    ordered = {k: out[k] for k in CONTRACT_KEYS if k in out}
    return {**ordered, **{k: v for k, v in out.items() if k not in ordered}}


def load_reference_prior(prior_dir: str | Path | None, device: str = "cpu", vocab: Vocabulary | None = None):
    """The prior to score against (default: the shipped one; a clear error when absent)."""
    path = Path(prior_dir) if prior_dir is not None else default_prior_dir()
    if not (path / "config.json").is_file():
        where = "the shipped prior" if prior_dir is None else "prior"
        raise FileNotFoundError(
            f"{where} {path} is not a model directory (no config.json); "
            "pass --prior DIR (the shipped prior is trained by `rlmusic pretrain`)"
        )
    return load_model(path, device=device, vocab=vocab)


def evaluate_model(
    model_dir: str | Path | None,
    n: int = 1000,
    steps: int = 32,
    seed: int = 0,
    temperature: float = 1.0,
    prior_dir: str | Path | None = None,
    device: str = "auto",
    corpus: Any = None,
    key: str = "C major",
    batch_size: int = 1000,
    return_tokens: bool = False,
):
    """Sample ``n`` melodies of ``steps`` from a model directory (None: the shipped prior),
    seeded, and evaluate them (``evaluate_tokens``).

    The reference prior (log-likelihood, KL) is ``prior_dir`` or, when None, the model's
    own reference from its provenance (``reference_prior_dir``: a tuned model's prior, a
    prior itself); novelty is measured against ``corpus`` or, when None, that prior's
    training corpus (``"none"`` skips it). The table says which under
    ``reference_prior`` and ``reference_corpus``. Returns the table (and the tokens with
    ``return_tokens``).
    """
    if n < 1 or steps < 1:
        raise ValueError(f"need n >= 1 and steps >= 1, got n={n}, steps={steps}")
    dev = resolve_device(device)
    source = model_path(model_dir)
    model = load_reference_prior(source, dev) if model_dir is None else load_model(source, device=dev)
    reference = model_path(prior_dir) if prior_dir is not None else reference_prior_dir(source)
    prior = load_reference_prior(reference, dev, vocab=model.vocab)
    if corpus is None:
        corpus = training_corpus(reference)
    elif str(corpus).lower() == "none":
        corpus = None
    gen = torch.Generator().manual_seed(seed)
    keep = n * steps * model.vocab.size * 4 <= KEEP_LOG_PROBS_BYTES  # the KL from the sampling's own log-probs
    chunks = [model.sample(min(batch_size, n - i), steps, temperature, generator=gen, return_log_probs=keep)
              for i in range(0, n, batch_size)]
    tokens = np.concatenate([(c[0] if keep else c).numpy() for c in chunks])
    log_probs = torch.cat([c[1] for c in chunks]) if keep else None
    table = evaluate_tokens(tokens, model.vocab, prior=prior, model=model, corpus=corpus,
                            key=key, temperature=temperature, model_log_probs=log_probs)
    table["seed"], table["temperature"] = seed, temperature
    table["reference_prior"] = model_ref(reference)
    table["reference_corpus"] = corpus if isinstance(corpus, str) else None
    return (table, tokens) if return_tokens else table


def midi_folder_files(folder: str | Path) -> list[Path]:
    """Every *.mid / *.midi under ``folder``, in path order (what ``read_midi_folder`` reads)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--midi {folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def read_midi_folder(
    folder: str | Path, vocab: Vocabulary, steps: int, track: int | None = None,
    skip: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, Counter, Counter]:
    """Tokens (N, steps) of every *.mid / *.midi under ``folder`` (cropped, padded with
    rests), read as ``midi_melody`` reads them (one track, or the top line of all), the
    count of skipped files by reason and the count of how the read files were read.
    ``skip`` maps files (``str`` of a ``midi_folder_files`` path) not to read to the reason
    they are counted under."""
    files = midi_folder_files(folder)
    folder = Path(folder)
    skip = skip or {}
    rows, skipped, how = [], Counter(), Counter()
    for path in files:
        if str(path) in skip:
            skipped[skip[str(path)]] += 1
            continue
        try:
            notes, what = midi_melody(load_midi(path), track)
            tok = notes_to_tokens(notes, vocab)
        except (ValueError, OSError, EOFError) as exc:  # MelodyError is a ValueError
            skipped[f"{type(exc).__name__}: {str(exc).split(':')[0][:80]}"] += 1
            continue
        how[what] += 1
        row = np.full(steps, vocab.REST, dtype=np.int64)
        row[: min(steps, len(tok))] = tok[:steps]
        rows.append(row)
    if not rows:
        raise ValueError(f"no readable MIDI melody in {folder} ({sum(skipped.values())} skipped: {dict(skipped)})")
    return np.stack(rows), skipped, how
