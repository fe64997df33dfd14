"""Evaluation: the music-theory, structure and originality table, and KL to the prior.

``rlmusic evaluate --model DIR | --midi DIR [-n N] [--steps T] [--json FILE]
[--plot FILE.png] [--prior DIR] [--compare DIR2] [--seed S] [--temperature X]
[--device auto]`` prints one table; the JSON object has the keys of DESIGN.md's
evaluate contract (RL Tuner's metrics as shares in [0, 1], ``structure``, ``novelty``,
``diversity``, ``log_p_prior_per_note``, ``kl_per_note`` with a model, ``n``, ``steps``)
plus a few more. Definitions: docs/theory.md.

``evaluate_tokens`` and ``evaluate_model`` are the functions other modules call
(tune.py's periodic evaluation); ``melody_scores`` gives per-melody scores for manifests.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from rlmusic import originality, structure, theory
from rlmusic.representation import DEFAULT_VOCAB, Vocabulary

# Keys of the evaluate contract, in table order (more keys follow them).
CONTRACT_KEYS = (
    "notes_excessively_repeated", "notes_not_in_key", "starts_with_tonic", "leaps_resolved",
    "unique_max_note", "unique_min_note", "notes_in_motif", "notes_in_repeated_motif",
    "autocorrelation_lag1", "autocorrelation_lag2", "autocorrelation_lag3",
    "structure", "novelty", "diversity", "log_p_prior_per_note", "kl_per_note", "n", "steps",
)


# --------------------------------------------------------------------------- log-likelihoods


def _log_probs(model, tokens: np.ndarray, temperature: float = 1.0, batch_size: int = 512) -> np.ndarray:
    """(N, T) per-step log-probabilities of ``tokens`` under ``model`` (logits / temperature)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(tokens), batch_size):
            x = torch.as_tensor(tokens[i : i + batch_size], dtype=torch.long, device=model.device)
            logits, _ = model(model.with_bos(x))  # (B, T, V)
            lp = torch.log_softmax(logits.float() / temperature, dim=-1)
            out.append(lp.gather(-1, x[..., None])[..., 0].cpu().numpy())
    return np.concatenate(out).astype(np.float64)


# --------------------------------------------------------------------------- the table


def evaluate_tokens(
    tokens: np.ndarray,
    vocab: Vocabulary = DEFAULT_VOCAB,
    prior=None,
    model=None,
    corpus: Any = "irish",
    key: str = "C major",
    temperature: float = 1.0,
    max_copied_notes: int = 16,
) -> dict[str, Any]:
    """The evaluation table of N melodies (N, T) as a dict.

    ``prior``: a loaded MelodyLSTM giving ``log_p_prior_per_note`` (nan without);
    ``model``: the MelodyLSTM that sampled ``tokens`` at ``temperature``, giving
    ``kl_per_note`` = mean over steps of log pi_T(x_t) - log p_prior(x_t) (needs ``prior``);
    ``corpus``: a source name for ``originality.corpus_index`` (train split), an ``NgramIndex``,
    token sequences, or None (novelty and copied span become nan).
    """
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    if tokens.shape[0] < 1 or tokens.shape[1] < 1:
        raise ValueError(f"need at least one melody of one step, got shape {tokens.shape}")
    vocab.validate(tokens.reshape(-1))
    N, T = tokens.shape
    ctx = theory.RuleContext(vocab=vocab, key=theory.Key.parse(key), steps=T)
    out: dict[str, Any] = dict(theory.music_theory_metrics(tokens, ctx))
    parts = structure.structure_terms(tokens, ctx)
    out["structure"] = float(parts["structure"].mean())
    if corpus is None:
        out["novelty"] = out["copied_notes"] = out["copied_over_max"] = math.nan
    else:
        index = originality.corpus_index(corpus, vocab=vocab) if isinstance(corpus, str) else corpus
        orig = originality.originality_scores(tokens, vocab, index, max_copied_notes=max_copied_notes)
        out["novelty"] = float(orig["novelty"].mean())
        out["copied_notes"] = float(orig["copied_notes"].mean())
        out["copied_over_max"] = float((orig["copied_notes"] > max_copied_notes).mean())
    out["diversity"] = originality.batch_diversity(tokens, vocab)
    out["distinct_melodies"] = len({t.tobytes() for t in tokens}) / N
    lp_prior = _log_probs(prior, tokens) if prior is not None else None
    out["log_p_prior_per_note"] = float(lp_prior.mean()) if lp_prior is not None else math.nan
    if model is not None:
        if lp_prior is None:
            raise ValueError("kl_per_note needs a prior: pass prior=...")
        out["kl_per_note"] = float((_log_probs(model, tokens, temperature) - lp_prior).mean())
    for name in ("bar_repetition", "cadence", "rhythm_consistency"):
        out[f"structure_{name}"] = float(parts[name].mean())
    out["notes_per_melody"] = float((vocab.pitches(tokens) >= 0).sum(axis=1).mean())
    out["n"], out["steps"] = N, T
    ordered = {k: out[k] for k in CONTRACT_KEYS if k in out}
    return {**ordered, **{k: v for k, v in out.items() if k not in ordered}}


def melody_scores(tokens: np.ndarray, vocab: Vocabulary = DEFAULT_VOCAB) -> list[dict[str, float]]:
    """Cheap per-melody scores (no corpus, no model) for manifests."""
    tokens = np.atleast_2d(np.asarray(tokens, dtype=np.int64))
    ctx = theory.RuleContext(vocab=vocab, steps=tokens.shape[1])
    structure_score = structure.structure_scores(tokens, ctx)
    rows = []
    for i, t in enumerate(tokens):
        m = theory.music_theory_metrics(t[None, :], ctx)
        rows.append({"structure": round(float(structure_score[i]), 4),
                     "notes_not_in_key": round(m["notes_not_in_key"], 4),
                     "leaps_resolved": round(m["leaps_resolved"], 4)})
    return rows


def load_reference_prior(prior_dir: str | Path | None, device: str = "cpu", vocab: Vocabulary | None = None):
    """The prior to score against (default: the shipped one; a clear error when absent)."""
    from rlmusic.model import default_prior_dir, load_model

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
    corpus: Any = "irish",
    key: str = "C major",
    batch_size: int = 1000,
    return_tokens: bool = False,
):
    """Sample ``n`` melodies of ``steps`` from a model directory (None: the shipped prior),
    seeded, and evaluate them (``evaluate_tokens``) against the prior of ``prior_dir``.
    Returns the table (and the tokens with ``return_tokens``)."""
    import torch

    from rlmusic.runtime import resolve_device

    if n < 1 or steps < 1:
        raise ValueError(f"need n >= 1 and steps >= 1, got n={n}, steps={steps}")
    dev = resolve_device(device)
    model = load_reference_prior(model_dir, dev) if model_dir is None else _load(model_dir, dev)
    prior = load_reference_prior(prior_dir, dev, vocab=model.vocab)
    gen = torch.Generator().manual_seed(seed)
    tokens = np.concatenate([
        model.sample(min(batch_size, n - i), steps, temperature, generator=gen).numpy()
        for i in range(0, n, batch_size)
    ])
    table = evaluate_tokens(tokens, model.vocab, prior=prior, model=model, corpus=corpus,
                            key=key, temperature=temperature)
    table["seed"], table["temperature"] = seed, temperature
    return (table, tokens) if return_tokens else table


def _load(model_dir, device):
    from rlmusic.model import load_model

    return load_model(model_dir, device=device)


def read_midi_folder(folder: str | Path, vocab: Vocabulary, steps: int) -> tuple[np.ndarray, Counter]:
    """Tokens (N, steps) of every *.mid / *.midi under ``folder`` (cropped, padded with
    rests), and the count of skipped files by reason."""
    from rlmusic.representation import load_midi, midi_to_tokens

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"--midi {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    rows, skipped = [], Counter()
    for path in files:
        try:
            tok = midi_to_tokens(load_midi(path), vocab)
        except (ValueError, OSError, EOFError) as exc:  # MelodyError is a ValueError
            skipped[f"{type(exc).__name__}: {str(exc).split(':')[0][:80]}"] += 1
            continue
        row = np.full(steps, vocab.REST, dtype=np.int64)
        row[: min(steps, len(tok))] = tok[:steps]
        rows.append(row)
    if not rows:
        raise ValueError(f"no readable monophonic MIDI file in {folder} ({sum(skipped.values())} skipped: {dict(skipped)})")
    return np.stack(rows), skipped


# --------------------------------------------------------------------------- printing, plotting


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def format_table(a: dict, b: dict | None = None, names: tuple[str, str] = ("a", "b")) -> str:
    keys = list(a) + [k for k in (b or {}) if k not in a]
    width = max(len(k) for k in keys)
    head = f"{'metric'.ljust(width)}  {names[0]:>12}"
    if b is not None:
        head += f"  {names[1]:>12}  {'diff (b-a)':>12}"
    lines = [head, "-" * len(head)]
    for k in keys:
        va, line = a.get(k, math.nan), f"{k.ljust(width)}  {_fmt(a.get(k, math.nan)):>12}"
        if b is not None:
            vb = b.get(k, math.nan)
            line += f"  {_fmt(vb):>12}  {_fmt(_diff(va, vb)):>12}"
        lines.append(line)
    return "\n".join(lines)


def _diff(a: Any, b: Any) -> Any:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return b - a
    return math.nan


def diff_tables(a: dict, b: dict) -> dict:
    return {k: _diff(a[k], b[k]) for k in a if k in b and isinstance(a[k], (int, float))}


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.integer, np.floating)):
        return _json_safe(obj.item())
    return obj


def plot_tables(path: str | Path, a: dict, b: dict | None = None, names=("a", "b")) -> Path:
    """Bar chart of the figures in [-1, 1] (shares, structure, originality, autocorrelation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in a if isinstance(a[k], float) and math.isfinite(a[k]) and -1 <= a[k] <= 1
            and k not in ("log_p_prior_per_note", "kl_per_note", "copied_notes")]
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(keys)), 4.5))
    w = 0.4 if b is not None else 0.8
    ax.bar(x - (w / 2 if b is not None else 0), [a[k] for k in keys], w, label=names[0])
    if b is not None:
        ax.bar(x + w / 2, [b.get(k, math.nan) for k in keys], w, label=names[1])
    ax.set_xticks(x, keys, rotation=60, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.5)
    title = f"n={a.get('n')}, steps={a.get('steps')}"
    for k in ("log_p_prior_per_note", "kl_per_note"):
        if k in a:
            title += f"   {k}: " + " / ".join(_fmt(t.get(k, math.nan)) for t in ([a, b] if b else [a]))
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model directory to sample from (default: the shipped prior)")
    parser.add_argument("--midi", default=None, help="evaluate the MIDI files of this folder instead of a model")
    parser.add_argument("-n", type=int, default=1000, help="melodies sampled per model")
    parser.add_argument("--steps", type=int, default=32, help="16th-note steps per melody (MIDI: cropped/padded)")
    parser.add_argument("--json", default=None, help="write the table as one JSON object to this file")
    parser.add_argument("--plot", default=None, help="draw the table (and the comparison) to this PNG")
    parser.add_argument("--prior", default=None, help="reference prior for log p and KL (default: the shipped prior)")
    parser.add_argument("--compare", default=None, help="second model directory, shown beside the first with the difference")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed: same seed, same melodies")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling softmax temperature")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    parser.add_argument("--key", default="C major", help="key of the theory metrics: '<tonic> <mode>', e.g. 'A minor'")
    parser.add_argument("--corpus", default="irish",
                        help="corpus (train split) for novelty and copied span: irish, bach, midi:DIR, or none")
    parser.add_argument("--max-copied-notes", type=int, default=16,
                        help="copied runs longer than this many notes count in copied_over_max")


def main(args: argparse.Namespace) -> int:
    if args.n < 1 or args.steps < 1:
        raise ValueError(f"need -n >= 1 and --steps >= 1, got -n {args.n}, --steps {args.steps}")
    if args.temperature <= 0:
        raise ValueError(f"--temperature must be positive, got {args.temperature}")
    if args.midi and (args.model or args.compare):
        raise ValueError("--midi evaluates a folder of MIDI files; it cannot be combined with --model/--compare")
    corpus = None if str(args.corpus).lower() == "none" else args.corpus
    if corpus is not None:
        try:
            originality.corpus_index(corpus)
        except (ImportError, OSError, ValueError) as exc:
            warnings.warn(f"novelty skipped: cannot load corpus {corpus!r}: {exc}", stacklevel=1)
            corpus = None
    kw = dict(corpus=corpus, key=args.key)
    if args.midi:
        from rlmusic.runtime import resolve_device

        dev = resolve_device(args.device)
        prior = load_reference_prior(args.prior, dev)
        tokens, skipped = read_midi_folder(args.midi, prior.vocab, args.steps)
        if skipped:
            print(f"skipped {sum(skipped.values())} MIDI file(s): " +
                  "; ".join(f"{n} x {r}" for r, n in skipped.most_common()))
        a = evaluate_tokens(tokens, prior.vocab, prior=prior, **kw)
        a["skipped_files"] = int(sum(skipped.values()))
        b, names = None, (str(args.midi), "")
    else:
        common = dict(n=args.n, steps=args.steps, seed=args.seed, temperature=args.temperature,
                      prior_dir=args.prior, device=args.device, **kw)
        a = evaluate_model(args.model, **common)
        b = evaluate_model(args.compare, **common) if args.compare else None
        names = (args.model or "shipped prior", args.compare or "")
    print(format_table(a, b, names))
    if args.json:
        obj = a if b is None else {"a": a, "b": b, "diff": diff_tables(a, b)}
        if b is not None:
            obj["a"]["model"], obj["b"]["model"] = names
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(_json_safe(obj), indent=2) + "\n")
    if args.plot:
        plot_tables(args.plot, a, b, names)
    return 0
