"""RL Tuner's evaluation metrics (Jaques et al. 2017), ported from Magenta to numpy.

Mirrors ``compute_composition_stats`` / ``compose_and_evaluate_piece`` and the statistics of
``get_stat_dict_string`` in ``magenta/models/rl_tuner/rl_tuner_eval_metrics.py`` (Magenta
commit 97f8e8c), applied to given token rows instead of compositions sampled from a model: row i
is Magenta's composition (the argmax of each new observation, step by step). The per-step
``detect_*`` replay lives in ``rl_tuner_rewards`` (shared with the reward); this module imports
nothing of the project but that sibling. docs/rl_tuner.md lists every difference.
"""

from __future__ import annotations

import warnings

import numpy as np

from .rl_tuner_rewards import (
    AUTOCORR_LAGS,
    C_MAJOR_PITCH_CLASSES,
    C_MAJOR_TONIC_PITCH,
    FIFTH,
    FIRST_PITCH_TOKEN,
    FOURTH,
    IN_KEY_FIFTH,
    LEAP_DOUBLED,
    LEAP_RESOLVED,
    MAJOR_THIRD,
    MIN_PITCH,
    OCTAVE,
    REST_INTERVAL,
    REST_INTERVAL_AFTER_THIRD_OR_FIFTH,
    SECOND,
    SEVENTH,
    SIXTH,
    autocorrelate_rows,
    rl_tuner_detections,
)

# add_interval_stat's counters, in its elif order: interval code -> Magenta stat name. Codes
# > OCTAVE count as octave jumps. Nothing else is counted: holds (-1.5, -2.5), exact octaves,
# semitones, minor thirds, tritones, minor sixths and sevenths, and in-key thirds (-3: Magenta's
# test ``interval == (IN_KEY_FIFTH or interval == IN_KEY_THIRD)`` only matches -5).
_INTERVAL_STATS = (
    (REST_INTERVAL, "num_rest_intervals"),
    (REST_INTERVAL_AFTER_THIRD_OR_FIFTH, "num_special_rest_intervals"),
    (IN_KEY_FIFTH, "num_in_key_preferred_intervals"),
    (FIFTH, "num_fifths"),
    (MAJOR_THIRD, "num_thirds"),
    (SIXTH, "num_sixths"),
    (SECOND, "num_seconds"),
    (FOURTH, "num_fourths"),
    (SEVENTH, "num_sevenths"),
)


def _row_counts(tok: np.ndarray, det: dict[str, np.ndarray], tonic_pitch: int) -> dict[str, np.ndarray]:
    """Per-row counts (N,) of the share rows, from ``rl_tuner_detections``' results ``det``."""
    top = tok.max(axis=1)
    notes = np.where(tok >= FIRST_PITCH_TOKEN, tok, np.iinfo(np.int64).max)
    low = notes.min(axis=1)
    low_unique = (low < np.iinfo(np.int64).max) & ((tok == low[:, None]).sum(axis=1) == 1)
    tonic_token = int(tonic_pitch) - MIN_PITCH + FIRST_PITCH_TOKEN
    return {
        "num_repeated_notes": det["repeating"].sum(axis=1),
        "num_notes_not_in_key": det["not_in_key"].sum(axis=1),
        "num_starting_tonic": (tok[:, 0] == tonic_token).astype(np.int64),
        "num_high_unique": ((tok == top[:, None]).sum(axis=1) == 1).astype(np.int64),
        "num_low_unique": low_unique.astype(np.int64),
        "num_notes_in_motif": det["motif"].sum(axis=1),
        "num_notes_in_repeated_motif": det["repeated_motif"].sum(axis=1),
        "num_resolved_leaps": (det["leap"] == LEAP_RESOLVED).sum(axis=1),
        "num_doubled_leaps": (det["leap"] == LEAP_DOUBLED).sum(axis=1),
    }


def rl_tuner_row_counts(tokens: np.ndarray, key_pitch_classes=C_MAJOR_PITCH_CLASSES,
                        tonic_pitch: int = C_MAJOR_TONIC_PITCH) -> dict[str, np.ndarray]:
    """Per-row (N,) int counts behind ``rl_tuner_metrics``' share rows: ``num_repeated_notes``,
    ``num_notes_not_in_key``, ``num_starting_tonic``, ``num_high_unique``, ``num_low_unique``,
    ``num_notes_in_motif``, ``num_notes_in_repeated_motif``, ``num_resolved_leaps`` and
    ``num_doubled_leaps``; summed over rows they are ``rl_tuner_metrics``' raw counts."""
    tok = np.asarray(tokens)
    if tok.ndim != 2 or tok.shape[0] < 1 or tok.shape[1] < 1:
        raise ValueError(f"expected tokens of shape (N >= 1, T >= 1), got {tok.shape}")
    det = rl_tuner_detections(tok, key_pitch_classes, tonic_pitch)
    return _row_counts(tok.astype(np.int64), det, tonic_pitch)


def rl_tuner_metrics(tokens: np.ndarray, key_pitch_classes=C_MAJOR_PITCH_CLASSES,
                     tonic_pitch: int = C_MAJOR_TONIC_PITCH) -> dict[str, float]:
    """Magenta RL Tuner's composition statistics for N token rows of T steps (N, T >= 1).

    Fractions (Magenta prints them as "Percent ..." but they are fractions):

    - ``notes_excessively_repeated``: steps where detect_repeating_notes fires, / (N*T) steps
      (Magenta's total_notes = compositions x composition_length: 16th steps, rests and holds
      included). Fires when the token already occurred > 4 times in the trailing run of that
      token, rests and holds (> 6 if a rest or hold lies in that run; a rest after > 1 rests
      since the last note; a hold after > 4 holds, or > 6 with a rest among them).
    - ``notes_not_in_key``: steps whose token is a note outside the key, / (N*T). Rests and
      holds are in key.
    - ``starts_with_tonic``: rows whose step 0 is exactly ``tonic_pitch`` (MIDI 60, not any C;
      a rest first does not count), / N.
    - ``leaps_resolved``: resolved / (resolved + doubled) leap outcomes of detect_leap_up_back;
      nan when neither occurred. Leaps that end otherwise (the first leap, a leap back within 6
      steps, a leap left open at the end) are in neither count.
    - ``unique_max_note``: rows whose highest token occurs once, / N (Magenta takes max over all
      tokens, so a row of rests and one hold counts); ``unique_min_note``: rows whose lowest note
      (rests and holds excluded) occurs once, / N.
    - ``notes_in_motif``: steps t >= 7 whose 8-step window ending at t holds >= 3 distinct
      notes, / (N*T). ``notes_in_repeated_motif``: such steps whose window (all 8 tokens, rests
      and holds included) already occurred ending 8 or more steps earlier, / (N*T).
    - ``autocorrelation_lag1..3``: nanmean over rows of rl_tuner_ops.autocorrelate(row, lag)
      (a constant row gives nan and is left out; nan if all are).

    Raw counts: ``num_compositions`` (N), ``num_steps`` (N*T, Magenta's total_notes),
    ``num_repeated_notes``, ``num_notes_not_in_key``, ``num_starting_tonic``,
    ``num_high_unique``, ``num_low_unique``, ``num_notes_in_motif``,
    ``num_notes_in_repeated_motif``, ``num_resolved_leaps``, ``num_doubled_leaps`` (Magenta's
    num_leap_twice), ``num_leap_outcomes`` (their sum) and add_interval_stat's totals (Magenta
    prints them per composition): ``num_octave_jumps`` (intervals > 12 semitones),
    ``num_sevenths``, ``num_fifths``, ``num_sixths``, ``num_fourths``, ``num_seconds``,
    ``num_thirds``, ``num_rest_intervals``, ``num_special_rest_intervals`` (a rest after a
    tonic or dominant), ``num_in_key_preferred_intervals`` (in-key fifths only).
    """
    tok = np.asarray(tokens)
    if tok.ndim != 2 or tok.shape[0] < 1 or tok.shape[1] < 1:
        raise ValueError(f"expected tokens of shape (N >= 1, T >= 1), got {tok.shape}")
    det = rl_tuner_detections(tok, key_pitch_classes, tonic_pitch)
    tok = tok.astype(np.int64)
    n_comp, t_len = tok.shape
    steps = float(n_comp * t_len)

    code = det["interval"]
    counts = {name: float((code == value).sum()) for value, name in _INTERVAL_STATS}
    counts["num_octave_jumps"] = float((code > OCTAVE).sum())
    rows = _row_counts(tok, det, tonic_pitch)
    totals = {name: float(v.sum()) for name, v in rows.items()}
    resolved, doubled = totals["num_resolved_leaps"], totals["num_doubled_leaps"]

    out = {
        "num_compositions": float(n_comp),
        "num_steps": steps,
        **totals,
        "num_leap_outcomes": resolved + doubled,
        **counts,
    }
    out["notes_excessively_repeated"] = out["num_repeated_notes"] / steps
    out["notes_not_in_key"] = out["num_notes_not_in_key"] / steps
    out["starts_with_tonic"] = out["num_starting_tonic"] / n_comp
    out["leaps_resolved"] = resolved / (resolved + doubled) if resolved + doubled > 0 else np.nan
    out["unique_max_note"] = out["num_high_unique"] / n_comp
    out["unique_min_note"] = out["num_low_unique"] / n_comp
    out["notes_in_motif"] = out["num_notes_in_motif"] / steps
    out["notes_in_repeated_motif"] = out["num_notes_in_repeated_motif"] / steps
    for lag in AUTOCORR_LAGS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all rows constant: nan
            out[f"autocorrelation_lag{lag}"] = float(np.nanmean(autocorrelate_rows(tok, lag)))
    return out
