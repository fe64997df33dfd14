"""Revise a span: regenerate steps ``start..end-1`` of a melody, or of one voice of a
harmonisation, keep every other step as it was, and join smoothly at both ends.

A melody is revised with a left-to-right melody model (the shipped LSTM prior by
default), which alone would ignore what follows the span. So ``revise_melody`` draws
``candidates`` spans from the prior given everything before the span, scores each whole
melody, and picks one with probability proportional to the likelihood of the unchanged
rest given it (sampling-importance-resampling: with the prior as proposal, the weight
``p(rest | before, span)`` makes the pick a draw from ``p(span | before, rest)`` as the
candidates grow). One voice of a harmonisation is revised with the masked model
(``revise_voice``): blocked Gibbs over that voice's span given all four voices around it,
the first of several draws that is not the original.

Joins: a note that starts before the span keeps its start (the span may cut it or
continue it); every step after the span sounds the same pitch as before. When the
original note at ``end`` was held from inside the span and the new span ends on another
pitch, that note is struck again at ``end`` (``restrike``), the only change a step
outside the span can see.
"""

from __future__ import annotations

import numpy as np
import torch

from rlmusic.corpus.chorales import bar_positions
from rlmusic.harmony.gibbs import GibbsConfig, gibbs_fill
from rlmusic.harmony.masked import context_start
from rlmusic.harmony.repair import repair
from rlmusic.harmony.voice_leading import VOICES
from rlmusic.music.representation import Vocabulary


def parse_span(text: str, steps: int) -> tuple[int, int]:
    """``"A:B"`` -> (A, B): 16th steps A..B-1 (0-based, B exclusive) inside ``0..steps``."""
    parts = str(text).split(":")
    try:
        start, end = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--steps must be A:B with whole numbers of 16th steps, got {text!r}") from None
    check_span(start, end, steps)
    return start, end


def check_span(start: int, end: int, steps: int) -> None:
    if not 0 <= start < end <= steps:
        raise ValueError(f"span {start}:{end} is not inside the melody: need 0 <= A < B <= {steps} "
                         f"(16th steps; the melody has {steps})")


def sounding_pitch(tokens: np.ndarray, t: int, vocab: Vocabulary) -> int:
    """The pitch sounding at step ``t`` of one row (-1 in a rest)."""
    for k in range(t, -1, -1):
        if tokens[k] != Vocabulary.HOLD:
            return vocab.token_to_pitch(int(tokens[k])) if vocab.is_pitch(int(tokens[k])) else -1
    return -1


def restrike(original: np.ndarray, revised: np.ndarray, end: int, vocab: Vocabulary) -> np.ndarray:
    """``revised`` with its step ``end`` struck again when the original held a note into
    it that the revised span no longer sounds (so every step from ``end`` on sounds as before)."""
    out = revised.copy()
    if end < len(original) and original[end] == Vocabulary.HOLD:
        before = sounding_pitch(original, end, vocab)
        if before >= 0 and sounding_pitch(out, end - 1, vocab) != before:
            out[end] = vocab.pitch_to_token(before)
        elif before < 0 and sounding_pitch(out, end - 1, vocab) >= 0:
            out[end] = Vocabulary.REST
    return out


@torch.no_grad()
def revise_melody(prior, tokens: np.ndarray, start: int, end: int, seed: int = 0,
                  candidates: int = 64, temperature: float = 1.0) -> tuple[np.ndarray, dict]:
    """Regenerate ``tokens[start:end]`` with a melody model by sampling-importance-resampling
    (see module) -> (new tokens, what was done: candidates, effective sample size, the
    pick's suffix log-likelihood)."""
    tokens = np.asarray(tokens, dtype=np.int64)
    check_span(start, end, len(tokens))
    if candidates < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    vocab = prior.vocab
    generator = torch.Generator().manual_seed(seed)
    drawn = prior.sample(candidates, end, temperature, primer=tokens[:start].tolist(), generator=generator).numpy()
    full = np.stack([restrike(tokens, np.concatenate([tokens[:start], d[start:end], tokens[end:]]), end, vocab)
                     for d in drawn])
    logp = prior.log_probs(torch.from_numpy(full).to(prior.device)).cpu().double().numpy()  # (K, T)
    weight = logp[:, end:].sum(axis=1)  # log p(rest | before, span)
    new = ~(full[:, start:end] == tokens[start:end]).all(axis=1)
    usable = new if new.any() else np.ones(len(full), dtype=bool)
    w = np.where(usable, weight, -np.inf)
    p = np.exp(w - w.max())
    p /= p.sum()
    pick = int(torch.multinomial(torch.from_numpy(p), 1, generator=generator))
    steps_after = max(len(tokens) - end, 1)
    info = {"candidates": candidates, "distinct_from_original": int(new.sum()),
            "effective_sample_size": float(1.0 / (p ** 2).sum()),
            "suffix_nll_per_step": float(-weight[pick] / steps_after),
            "restruck": bool(full[pick, end] != tokens[end]) if end < len(tokens) else False}
    return full[pick], info


@torch.no_grad()
def revise_voice(model, tokens: np.ndarray, voice: int | str, start: int, end: int, bar_steps: int = 16,
                 phase: int = 0, seed: int = 0, gibbs: GibbsConfig | None = None, draws: int = 8) -> np.ndarray:
    """Regenerate steps ``start..end-1`` of one voice of a (4, T) texture with a masked
    model (blocked Gibbs given all else); every other cell stays as it was.

    Around a short span a voice often has one likely answer: the original. Up to ``draws``
    spans are drawn, one after the other, and the first that differs from the original is
    kept (the original comes back only when all ``draws`` are it). Only the frames within
    the model's receptive field of the span are computed (the same result, exactly)."""
    if model.kind != "masked":
        raise ValueError(f"revising one voice needs a masked (infilling) model, not a {model.kind} one")
    if isinstance(voice, str):
        if voice not in VOICES:
            raise ValueError(f"unknown voice {voice!r}; valid: {', '.join(VOICES)}")
        voice = VOICES.index(voice)
    tokens = np.asarray(tokens, dtype=np.int64)
    check_span(start, end, tokens.shape[1])
    # only frames within the receptive field of the span reach it (and, to the left, the
    # onsets of the notes sounding where it begins): the rest need no forward
    lo = context_start(tokens, max(start - model.config.receptive_field, 0))
    hi = min(end + model.config.receptive_field, tokens.shape[1])
    window = torch.from_numpy(tokens[:, lo:hi].copy())[None]
    target = torch.zeros_like(window, dtype=torch.bool)
    target[0, voice, start - lo: end - lo] = True
    position = torch.from_numpy(bar_positions(tokens.shape[1], bar_steps, phase)[lo:hi])[None]
    generator = torch.Generator().manual_seed(seed)
    gibbs = gibbs or GibbsConfig()
    out = tokens.copy()
    for _ in range(max(draws, 1)):
        drawn = gibbs_fill(model, window, target, position, generator, gibbs)[0]
        if gibbs.repair_rounds:
            drawn, _ = repair(model, drawn, target[0], position[0], generator, gibbs.repair_rounds, gibbs)
        out[:, lo:hi] = drawn.numpy()
        if (out[voice, start:end] != tokens[voice, start:end]).any():
            break
    out[voice] = restrike(tokens[voice], out[voice], end, model.vocab)
    return out


# --------------------------------------------------------------------------- MIDI files


def revise_file(path, span: str, seed: int = 0, voice: str | None = None, track: int | None = None,
                prior=None, harmony=None, candidates: int = 64, gibbs: GibbsConfig | None = None):
    """Revise the span ``"A:B"`` of a MIDI file -> (``PrettyMIDI``, what was done).

    With ``voice``, the file is a harmonisation (four tracks: soprano, alto, tenor, bass)
    and that voice is revised with the masked model ``harmony`` (default: the shipped
    one); else its melody (the only track, or ``track``) is revised with the melody model
    ``prior`` (default: the shipped prior) and the other tracks are copied as they are.
    """
    import copy

    from rlmusic.harmony.midi_io import (
        SOPRANO_RANGE,
        four_voice_midi,
        from_tokens,
        keep_or_new,
        melody_track,
        place,
        read_score,
        to_tokens,
    )
    from rlmusic.music.representation import STEPS_PER_QUARTER

    score = read_score(path)
    start, end = parse_span(span, score.steps)
    if voice is not None:
        if voice not in VOICES:
            raise ValueError(f"unknown voice {voice!r}; valid: {', '.join(VOICES)}")
        if len(score.tracks) != 4:
            raise ValueError(f"--voice needs a harmonisation with four tracks (soprano, alto, tenor, bass); "
                             f"{score.path} has {len(score.tracks)}")
        if harmony is None:
            from rlmusic.harmony.checkpoint import load_harmonizer

            harmony = load_harmonizer()
        parts = [melody_track(score, k) for k in range(4)]
        placement = place(parts[0].notes, *SOPRANO_RANGE)
        tokens = np.stack([to_tokens(p.notes, placement.shift, harmony.vocab, score.steps) for p in parts])
        out = revise_voice(harmony, tokens, voice, start, end, score.bar_steps, 0, seed, gibbs)
        voices = [from_tokens(row, placement.shift, harmony.vocab) for row in out]
        pm = four_voice_midi(voices, score.tempo, tuple(p.program for p in parts), parts, score.bar_steps)
        for inst, part in zip(pm.instruments, parts):
            inst.name = part.name
        return pm, {"voice": voice, "span": [start, end], "key": placement.key,
                    "changed_steps": int((out != tokens).any(axis=0).sum())}
    if prior is None:
        from rlmusic.models.checkpoint import load_model

        prior = load_model()
    melody = melody_track(score, track)
    vocab = prior.vocab
    placement = place(melody.notes, vocab.min_pitch, vocab.max_pitch)
    tokens = to_tokens(melody.notes, placement.shift, vocab, score.steps)
    new, info = revise_melody(prior, tokens, start, end, seed, candidates)
    pm = copy.deepcopy(score.pm)
    inst = [i for i in pm.instruments if not i.is_drum and i.notes][melody.index]
    step = 60.0 / score.tempo / STEPS_PER_QUARTER
    inst.notes = keep_or_new(from_tokens(new, placement.shift, vocab), melody, step)
    return pm, info | {"span": [start, end], "key": placement.key}
