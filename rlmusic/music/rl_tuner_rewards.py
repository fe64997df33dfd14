"""RL Tuner's per-step music-theory reward (Jaques et al. 2017), ported from Magenta to numpy.

Mirrors ``RLTuner.reward_music_theory`` of ``magenta/models/rl_tuner/rl_tuner.py`` (Magenta
commit 97f8e8c) case by case, with Magenta's amounts and scalings and its side-effect state
(``beat``, ``composition``, the leap state ``composition_direction``/``leapt_from``/
``steps_since_last_leap``). Two forms give identical numbers: pure functions of a (B, T) batch
(``rl_tuner_step_rewards``, ``rl_tuner_step_reward_components``) and an incremental replay for
an environment stepping B melodies in lockstep (``RLTunerRewardState``); they track the state
separately and share only the per-step scoring helpers and the leap transition.

Encoding (Magenta's RL Tuner reward constants and rlmusic's vocabulary alike): token 0 = rest
(Magenta ``NOTE_OFF``), 1 = hold (``NO_EVENT``), k >= 2 = onset of MIDI pitch ``MIN_PITCH + k - 2``
(Magenta: "action 2 = midi note 48", so its ``C_MAJOR_TONIC`` 14 is MIDI 60). Magenta's tokens
stop at 37 (MIDI 83); ours go to 38 (MIDI 84). docs/rl_tuner.md lists every difference.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

REST, HOLD, FIRST_PITCH_TOKEN = 0, 1, 2  # Magenta NOTE_OFF, NO_EVENT, first note index
MIN_PITCH, MAX_PITCH = 48, 84  # MIDI pitch of token 2 and of the last token (inclusive)
NUM_TOKENS = FIRST_PITCH_TOKEN + MAX_PITCH - MIN_PITCH + 1
C_MAJOR_PITCH_CLASSES = (0, 2, 4, 5, 7, 9, 11)  # rl_tuner_ops.C_MAJOR_KEY as pitch classes
C_MAJOR_TONIC_PITCH = 60  # rl_tuner_ops.C_MAJOR_TONIC (token 14)
DEFAULT_COMPOSITION_LENGTH = 32  # RLTuner num_notes_in_melody

# Interval sizes in semitones (rl_tuner_ops).
SECOND, MAJOR_THIRD, FOURTH, FIFTH, SIXTH, SEVENTH, OCTAVE = 2, 4, 5, 7, 9, 11, 12
# Special interval codes returned by detect_sequential_interval (rl_tuner_ops).
REST_INTERVAL, HOLD_INTERVAL, IN_KEY_THIRD, IN_KEY_FIFTH = -1.0, -1.5, -3.0, -5.0
REST_INTERVAL_AFTER_THIRD_OR_FIFTH, HOLD_INTERVAL_AFTER_THIRD_OR_FIFTH = -2.0, -2.5
ASCENDING, DESCENDING, LEAP_RESOLVED, LEAP_DOUBLED = 1, -1, 1, -1

# Magenta's default amounts (keyword defaults of the reward_* / detect_* methods).
KEY_PENALTY, TONIC_REWARD, REPEAT_PENALTY = -1.0, 3.0, -100.0  # key, tonic, penalize_repeating
AUTOCORR_LAGS, AUTOCORR_THRESHOLD, AUTOCORR_WEIGHT = (1, 2, 3), 0.15, 3.0
BAR_LENGTH = 8  # detect_last_motif / detect_repeated_motif bar_length
MOTIF_MIN_NOTES, MOTIF_REWARD, MOTIF_BONUS_PER_NOTE, REPEATED_MOTIF_REWARD = 3, 3.0, 0.3, 4.0
INTERVAL_SCALER, STEPS_BETWEEN_LEAPS = 5.0, 6  # preferred_intervals scaler; detect_leap_up_back
LEAP_RESOLVED_BONUS, LEAP_DOUBLED_PENALTY, HIGH_LOW_UNIQUE_REWARD = 5.0, -5.0, 3.0
# reward_preferred_intervals: interval code -> reward before the scaler; codes > OCTAVE get -1.0.
INTERVAL_REWARDS = (
    (REST_INTERVAL, 0.05), (HOLD_INTERVAL, 0.075), (REST_INTERVAL_AFTER_THIRD_OR_FIFTH, 0.15),
    (HOLD_INTERVAL_AFTER_THIRD_OR_FIFTH, 0.3), (SEVENTH, -0.3), (IN_KEY_FIFTH, 0.1),
    (IN_KEY_THIRD, 0.15), (MAJOR_THIRD, 0.09), (SECOND, 0.08), (FOURTH, 0.07), (SIXTH, 0.05),
    (FIFTH, 0.02),
)
# Components in reward_music_theory's order of summation (names = Magenta's reward_* methods).
COMPONENTS = ("key", "tonic", "penalize_repeating", "penalize_autocorrelation", "motif",
              "repeated_motif", "preferred_intervals", "leap_up_back", "high_low_unique")
_CODE_BASE = 64  # window codes: 8 tokens x 6 bits fit an int64


def _pitch_class(token):
    return (np.asarray(token) - FIRST_PITCH_TOKEN + MIN_PITCH) % 12


def _token(pitch: int) -> int:  # may fall outside the vocabulary: then it never matches
    return int(pitch) - MIN_PITCH + FIRST_PITCH_TOKEN


def _key_mask(key_pitch_classes: Iterable[int]) -> np.ndarray:
    """In-key flag per token: rest and hold are in key (they are in Magenta's C_MAJOR_KEY)."""
    pcs = {int(p) % 12 for p in key_pitch_classes}
    mask = np.isin(_pitch_class(np.arange(NUM_TOKENS)), sorted(pcs))
    mask[[REST, HOLD]] = True
    return mask


def _interval_codes(prev_note, action, tonic_pitch):
    """detect_sequential_interval: interval (or special code) from the last note to ``action``.

    ``prev_note`` is the last note token played before (rests and holds skipped), -1 if none:
    then the code is 0. A hold/rest after a note is a special code ("after third or fifth" when
    the last note is a tonic or a dominant); a note gives |semitones|, except an in-key fifth
    (7 from a tonic or dominant) and an in-key third (4 from a tonic or mediant). Magenta
    hard-codes C major here (tonic C, dominant G, mediant E); we derive them from ``tonic_pitch``.
    """
    prev, act = np.asarray(prev_note), np.asarray(action)
    tonic_pc = int(tonic_pitch) % 12
    prev_pc = _pitch_class(prev)
    tonic_or_fifth = (prev_pc == tonic_pc) | (prev_pc == (tonic_pc + FIFTH) % 12)
    tonic_or_third = (prev_pc == tonic_pc) | (prev_pc == (tonic_pc + MAJOR_THIRD) % 12)
    dist = np.abs(act - prev).astype(np.float64)
    code = np.where((dist == FIFTH) & tonic_or_fifth, IN_KEY_FIFTH,
                    np.where((dist == MAJOR_THIRD) & tonic_or_third, IN_KEY_THIRD, dist))
    code = np.where(act == HOLD, np.where(tonic_or_fifth, HOLD_INTERVAL_AFTER_THIRD_OR_FIFTH,
                                          HOLD_INTERVAL), code)
    code = np.where(act == REST, np.where(tonic_or_fifth, REST_INTERVAL_AFTER_THIRD_OR_FIFTH,
                                          REST_INTERVAL), code)
    return np.where(prev >= FIRST_PITCH_TOKEN, code, 0.0)


def _interval_reward(code):
    """reward_preferred_intervals: Magenta's table times its scaler (5.0); 0 for other codes."""
    reward = np.where(code > OCTAVE, -1.0, 0.0)
    for value, amount in INTERVAL_REWARDS:
        reward = np.where(code == value, amount, reward)
    return reward * INTERVAL_SCALER


def _distinct_notes(windows):
    """Number of distinct note tokens (rests and holds excluded) along the last axis."""
    s = np.sort(windows, axis=-1)
    new = np.ones(s.shape, dtype=bool)
    new[..., 1:] = s[..., 1:] != s[..., :-1]
    return ((s >= FIRST_PITCH_TOKEN) & new).sum(axis=-1)


def _window_codes(windows):
    return (windows.astype(np.int64) * _CODE_BASE ** np.arange(BAR_LENGTH, dtype=np.int64)).sum(-1)


def _components(not_in_key, tonic, repeating, autocorr, k, motif, repeated, code, leap,
                high_low) -> dict[str, np.ndarray]:
    """Magenta's amounts for the detections, keyed by ``COMPONENTS``. reward_motif: 3 + 0.3 per
    distinct note over 3; reward_repeated_motif: 4 + 1 per distinct note over 3;
    reward_leap_up_back: +5 resolved, -5 doubled."""
    return {
        "key": np.where(not_in_key, KEY_PENALTY, 0.0),
        "tonic": tonic,
        "penalize_repeating": np.where(repeating, REPEAT_PENALTY, 0.0),
        "penalize_autocorrelation": autocorr,
        "motif": np.where(motif, MOTIF_REWARD + np.maximum((k - 3) * MOTIF_BONUS_PER_NOTE, 0.0),
                          0.0),
        "repeated_motif": np.where(repeated, REPEATED_MOTIF_REWARD + np.maximum(k - 3, 0.0), 0.0),
        "preferred_intervals": _interval_reward(code),
        "leap_up_back": np.where(leap == LEAP_RESOLVED, LEAP_RESOLVED_BONUS,
                                 np.where(leap == LEAP_DOUBLED, LEAP_DOUBLED_PENALTY, 0.0)),
        "high_low_unique": high_low,
    }


def autocorrelate_rows(compositions, lag: int) -> np.ndarray:
    """rl_tuner_ops.autocorrelate for each row of a (B, n) array, with the same numpy operations
    (same roundings, bit for bit): sum of (c_(i+lag) - mean)(c_i - mean) / n / var; nan when
    the row is constant, 0 when lag >= n."""
    c = np.ascontiguousarray(compositions)
    n = c.shape[1]
    x = c - c.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x[:, lag:] * x[:, :n - lag]).sum(axis=1) / float(n) / c.var(axis=1)


def _autocorr_penalty(composition):
    """reward_penalize_autocorrelation on the composition including the new token: minus
    3 x |coefficient| for each lag 1, 2, 3 whose |coefficient| > 0.15 (nan skipped)."""
    total = np.zeros(composition.shape[0])
    for lag in AUTOCORR_LAGS:
        coeff = np.abs(autocorrelate_rows(composition, lag))
        hit = ~np.isnan(coeff) & (coeff > AUTOCORR_THRESHOLD)
        total = total + np.where(hit, coeff * AUTOCORR_WEIGHT, 0.0)
    return 0.0 - total


def _tonic_reward(beat: int, action, tonic_token: int, composition_length: int):
    """reward_tonic: the tonic (exact pitch) at beat 0 and at the final bar's first beat, a hold
    on the next beat, a hold or a rest on every beat after that."""
    final_bar, hit = composition_length - 4, np.zeros(np.shape(action), dtype=bool)
    if beat == 0 or beat == final_bar:
        hit = action == tonic_token
    elif beat == final_bar + 1:
        hit = action == HOLD
    elif beat > final_bar + 1:
        hit = (action == HOLD) | (action == REST)
    return np.where(hit, TONIC_REWARD, 0.0)


def _high_low_reward(composition):
    """reward_high_low_unique on a finished (B, n) composition: +3 if the highest token (rests
    and holds included: Magenta takes max of everything) occurs once, +3 if the lowest note
    (rests and holds excluded) occurs once."""
    top = composition.max(axis=1, keepdims=True)
    low = np.where(composition >= FIRST_PITCH_TOKEN, composition, NUM_TOKENS).min(1, keepdims=True)
    high = np.where((composition == top).sum(1) == 1, HIGH_LOW_UNIQUE_REWARD, 0.0)
    return high + np.where((composition == low).sum(1) == 1, HIGH_LOW_UNIQUE_REWARD, 0.0)


def _leap_step(state, note, action, prev_note, code):
    """One detect_leap_up_back call (not made at beat 0). ``state`` = (direction, leapt_from,
    steps_since_last_leap) arrays; returns (outcome, new state). A leap is an interval of a fifth
    or more (or an in-key fifth); an opposite leap resolves only after more than 6 steps (else
    it just clears the leap); a same-direction leap is doubled; a later note at or beyond the
    note leapt from resolves gradually. Rests and holds only count steps."""
    direction, leapt_from, steps = state
    leap = note & ((code >= FIFTH) | (code == IN_KEY_FIFTH))
    new_dir = np.where(action > prev_note, ASCENDING, DESCENDING)
    had, same_dir = direction != 0, direction == new_dir
    opposite, doubled, started = leap & had & ~same_dir, leap & had & same_dir, leap & ~had
    back = note & ~leap & (((direction == ASCENDING) & (action <= leapt_from))
                           | ((direction == DESCENDING) & (action >= leapt_from)))
    resolved = (opposite & (steps > STEPS_BETWEEN_LEAPS)) | back
    outcome = np.where(resolved, LEAP_RESOLVED, np.where(doubled, LEAP_DOUBLED, 0))
    clear = opposite | back
    direction = np.where(clear, 0, np.where(started, new_dir, direction))
    leapt_from = np.where(clear, -1, np.where(started, prev_note, leapt_from))
    return outcome, (direction, leapt_from, np.where(leap, 0, steps + 1))


def _check_tokens(tokens, ndim: int) -> np.ndarray:
    if (tok := np.asarray(tokens)).ndim != ndim or not np.issubdtype(tok.dtype, np.integer):
        raise ValueError(f"expected an integer array with {ndim} dimension(s), got {tok.shape}")
    if tok.size and (tok.min() < 0 or tok.max() >= NUM_TOKENS):
        raise ValueError(f"tokens must lie in 0..{NUM_TOKENS - 1}")
    return tok.astype(np.int64)


def rl_tuner_detections(tokens, key_pitch_classes=C_MAJOR_PITCH_CLASSES,
                        tonic_pitch=C_MAJOR_TONIC_PITCH) -> dict[str, np.ndarray]:
    """Magenta's per-step ``detect_*`` results for emitting tokens[:, t] after tokens[:, :t].

    Returns (B, T) arrays: ``interval`` (detect_sequential_interval code), ``not_in_key``,
    ``repeating`` (detect_repeating_notes), ``motif_notes`` (distinct notes in the 8 steps ending
    at t, 0 before step 7), ``motif`` (detect_last_motif: >= 3 of them), ``repeated_motif``
    (detect_repeated_motif: that 8-step window already occurred, ending 8+ steps earlier) and
    ``leap`` (detect_leap_up_back outcome, replaying its state from an empty composition).
    """
    tok = _check_tokens(tokens, 2)
    b, t_len = tok.shape
    pos = np.arange(t_len)
    note = tok >= FIRST_PITCH_TOKEN
    last_note_pos = np.maximum.accumulate(np.where(note, pos, -1), axis=1)
    prev_pos = np.concatenate([np.full((b, 1), -1), last_note_pos[:, :-1]], axis=1)
    prev_note = np.where(prev_pos >= 0, np.take_along_axis(tok, np.maximum(prev_pos, 0), 1), -1)
    interval = _interval_codes(prev_note, tok, tonic_pitch)

    def between(mask, lo):  # how many of ``mask`` lie strictly between lo (>= -1) and t
        c = np.concatenate([np.zeros((b, 1), np.int64), np.cumsum(mask, axis=1)], axis=1)
        return c[:, :t_len] - np.take_along_axis(c, lo + 1, 1)

    # detect_repeating_notes scans back from t-1 over the note itself, rests and holds.
    rests, holds = between(tok == REST, prev_pos), between(tok == HOLD, prev_pos)
    run_start = np.maximum.accumulate(np.where(note & (prev_note != tok), pos, -1), axis=1)
    before_run = np.take_along_axis(prev_pos, np.maximum(run_start, 0), 1)
    stop = np.take_along_axis(before_run, np.maximum(prev_pos, 0), 1)  # last different note
    same = note & (prev_note == tok)
    n_same = between(note, stop)
    flagged = (between(tok == REST, stop) + between(tok == HOLD, stop)) > 0
    repeating = np.where(tok == REST, rests > 1, np.where(
        tok == HOLD, np.where(rests > 0, holds > 6, holds > 4),
        same & np.where(flagged, n_same > 6, n_same > 4)))

    motif_notes = np.zeros((b, t_len), np.int64)
    repeated = np.zeros((b, t_len), bool)
    if t_len >= BAR_LENGTH:
        windows = sliding_window_view(tok, BAR_LENGTH, axis=1)  # window j ends at step j + 7
        motif_notes[:, BAR_LENGTH - 1:] = _distinct_notes(windows)
        codes = _window_codes(windows)
        order = np.argsort(codes, axis=1, kind="stable")
        srt = np.take_along_axis(codes, order, 1)
        group = np.ones(srt.shape, bool)
        group[:, 1:] = srt[:, 1:] != srt[:, :-1]
        grp_pos = np.maximum.accumulate(np.where(group, np.arange(srt.shape[1]), 0), axis=1)
        first = np.empty_like(order)  # first window (by end step) with the same tokens
        np.put_along_axis(first, order, np.take_along_axis(order, grp_pos, 1), 1)
        repeated[:, BAR_LENGTH - 1:] = first <= np.arange(srt.shape[1]) - BAR_LENGTH
    motif = motif_notes >= MOTIF_MIN_NOTES

    leap = np.zeros((b, t_len), np.int64)
    state = (np.zeros(b, np.int64), np.full(b, -1), np.zeros(b, np.int64))
    for t in range(1, t_len):
        leap[:, t], state = _leap_step(state, note[:, t], tok[:, t], prev_note[:, t],
                                       interval[:, t])
    return {"interval": interval, "not_in_key": ~_key_mask(key_pitch_classes)[tok],
            "repeating": repeating, "motif_notes": motif_notes, "motif": motif,
            "repeated_motif": repeated & motif, "leap": leap}


def rl_tuner_step_reward_components(tokens, key_pitch_classes=C_MAJOR_PITCH_CLASSES,
                                    tonic_pitch=C_MAJOR_TONIC_PITCH,
                                    composition_length=DEFAULT_COMPOSITION_LENGTH
                                    ) -> dict[str, np.ndarray]:
    """Each reward_* term of RLTuner.reward_music_theory for tokens[:, t] after tokens[:, :t].

    Keys = ``COMPONENTS`` (Magenta's reward_key, reward_tonic, reward_penalize_repeating,
    reward_penalize_autocorrelation, reward_motif, reward_repeated_motif,
    reward_preferred_intervals, reward_leap_up_back, reward_high_low_unique); values (B, T),
    unscaled. ``composition_length`` is Magenta's num_notes_in_melody (final-bar tonic rule;
    unique extremes scored on its last step); T may not exceed it (Magenta starts over there).
    """
    tok = _check_tokens(tokens, 2)
    (b, t_len), tonic_token = tok.shape, _token(tonic_pitch)
    if not 1 <= t_len <= composition_length:
        raise ValueError(f"need 1 <= T <= composition_length={composition_length}, got {t_len}")
    det = rl_tuner_detections(tok, key_pitch_classes, tonic_pitch)
    tonic = np.stack([_tonic_reward(t, tok[:, t], tonic_token, composition_length)
                      for t in range(t_len)], axis=1)
    autocorr = np.stack([_autocorr_penalty(tok[:, :t + 1]) for t in range(t_len)], axis=1)
    high_low = np.zeros((b, t_len))
    if t_len == composition_length:
        high_low[:, -1] = _high_low_reward(tok)
    return _components(det["not_in_key"], tonic, det["repeating"], autocorr, det["motif_notes"],
                       det["motif"], det["repeated_motif"], det["interval"], det["leap"], high_low)


def _total(components, reward_scaler):
    total = components[COMPONENTS[0]]  # then Magenta's order of additions: same floats
    for name in COMPONENTS[1:]:
        total = total + components[name]
    return total * reward_scaler


def rl_tuner_step_rewards(tokens, key_pitch_classes=C_MAJOR_PITCH_CLASSES,
                          tonic_pitch=C_MAJOR_TONIC_PITCH,
                          composition_length=DEFAULT_COMPOSITION_LENGTH,
                          reward_scaler=1.0) -> np.ndarray:
    """(B, T) music-theory reward: reward_music_theory(tokens[:, t]) * reward_scaler, as
    RLTuner.collect_reward gives in reward_mode 'music_theory_only' ('music_theory_all' adds
    the Note RNN's log-probability, not computed here). reward_scaler: RLTuner's default 1.0;
    rl_tuner_train.py's flag defaults to 0.1."""
    comps = rl_tuner_step_reward_components(tokens, key_pitch_classes, tonic_pitch,
                                            composition_length)
    return _total(comps, reward_scaler)


class RLTunerRewardState:
    """Incremental RL Tuner reward for B melodies stepped in lockstep: the same numbers as
    ``rl_tuner_step_rewards``, from running state (Magenta's reward_music_theory called on each
    new token, then composition.append and beat += 1).

    ``reset(B)`` starts B empty compositions (Magenta's reset_composition); ``step(tokens)``
    scores tokens (B,) against the compositions so far, appends them and returns the (B,)
    reward times ``reward_scaler``; ``last_components`` then holds that step's unscaled terms
    (name -> (B,)). Every rule is O(1) per step (repeated motifs: a set of past 8-step windows
    per melody) except the autocorrelation penalty, recomputed on the stored composition, O(t)
    vectorised numpy, so that its float roundings are Magenta's (ties at 0.15 occur).
    """

    def __init__(self, key_pitch_classes=C_MAJOR_PITCH_CLASSES, tonic_pitch=C_MAJOR_TONIC_PITCH,
                 composition_length=DEFAULT_COMPOSITION_LENGTH, reward_scaler=1.0):
        self.key_mask = _key_mask(key_pitch_classes)
        self.tonic_pitch, self.tonic_token = int(tonic_pitch), _token(tonic_pitch)
        self.composition_length, self.reward_scaler = int(composition_length), reward_scaler
        self.last_components: dict[str, np.ndarray] = {}
        self.reset(0)

    def reset(self, batch_size: int) -> None:
        b, z = int(batch_size), np.zeros(int(batch_size), np.int64)
        self.beat, self.batch_size = 0, b
        self.last_note, self.run_count = np.full(b, -1), z.copy()  # last note, its onsets so far
        self.run_rest, self.run_hold = np.zeros(b, bool), np.zeros(b, bool)  # ... with rests/holds
        self.trail_rests, self.trail_holds = z.copy(), z.copy()  # since the last note
        self.leap_state = (z.copy(), np.full(b, -1), z.copy())
        self.seen_windows: list[set[int]] = [set() for _ in range(b)]
        self.recent_codes: deque[np.ndarray] = deque()
        self.composition = np.zeros((b, self.composition_length), np.int64)

    def step(self, next_tokens) -> np.ndarray:
        a, t, n = _check_tokens(next_tokens, 1), self.beat, self.beat + 1
        if a.shape[0] != self.batch_size:
            raise ValueError(f"expected {self.batch_size} tokens, got {a.shape[0]}")
        if t >= self.composition_length:
            raise ValueError("composition finished: call reset()")
        note, rest, hold = a >= FIRST_PITCH_TOKEN, a == REST, a == HOLD
        code = _interval_codes(self.last_note, a, self.tonic_pitch)
        same = note & (a == self.last_note)
        repeating = np.where(rest, self.trail_rests > 1, np.where(
            hold, np.where(self.trail_rests > 0, self.trail_holds > 6, self.trail_holds > 4),
            same & np.where(self.run_rest | self.run_hold, self.run_count > 6,
                            self.run_count > 4)))

        self.composition[:, t] = a  # read only where Magenta reads composition + [action]
        window = self.composition[:, max(n - BAR_LENGTH, 0):n]
        k = _distinct_notes(window) if n >= BAR_LENGTH else np.zeros_like(a)
        repeated = np.zeros(self.batch_size, bool)
        if n >= BAR_LENGTH:
            if len(self.recent_codes) == BAR_LENGTH:  # the window ending at t - 8 becomes old
                for seen, c in zip(self.seen_windows, self.recent_codes.popleft().tolist()):
                    seen.add(c)
            codes = _window_codes(window)
            repeated = np.array([c in s for c, s in zip(codes.tolist(), self.seen_windows)], bool)
            self.recent_codes.append(codes)
        motif = k >= MOTIF_MIN_NOTES

        leap = np.zeros(self.batch_size, np.int64)  # no detect_leap_up_back state at beat 0
        if t > 0:
            leap, self.leap_state = _leap_step(self.leap_state, note, a, self.last_note, code)

        # Append ``a``: the state detect_repeating_notes and detect_sequential_interval read.
        self.run_count = np.where(same, self.run_count + 1, np.where(note, 1, self.run_count))
        self.run_rest = np.where(note & ~same, self.trail_rests > 0, self.run_rest | rest)
        self.run_hold = np.where(note & ~same, self.trail_holds > 0, self.run_hold | hold)
        self.trail_rests = np.where(note, 0, self.trail_rests + rest)
        self.trail_holds = np.where(note, 0, self.trail_holds + hold)
        self.last_note = np.where(note, a, self.last_note)
        self.beat = n

        high_low = (_high_low_reward(self.composition) if n == self.composition_length
                    else np.zeros(self.batch_size))
        self.last_components = _components(
            ~self.key_mask[a], _tonic_reward(t, a, self.tonic_token, self.composition_length),
            repeating, _autocorr_penalty(self.composition[:, :n]), k, motif, repeated & motif,
            code, leap, high_low)
        return _total(self.last_components, self.reward_scaler)
