"""Fixed-length melody windows cut from corpus pieces (the VAE's data, the style critic's
real melodies).

A window starts every ``hop`` steps (16 = every bar of 4/4) and is ``window`` steps long;
it starts as a melody can start (``rlmusic.models.pretrain.start_cleanly``: a note cut
by the window's left edge is re-struck). Windows with fewer than ``min_notes`` note
onsets (silence, one long note) are dropped, and the drops are counted.
"""

from __future__ import annotations

import numpy as np

from rlmusic.models.pretrain import start_cleanly
from rlmusic.music.representation import Vocabulary


def melody_windows(
    sequences: list[np.ndarray],
    window: int,
    hop: int = 16,
    min_notes: int = 2,
    counts: dict[str, int] | None = None,
) -> np.ndarray:
    """Windows of ``window`` steps of every sequence -> (N, window) int64.

    ``counts`` (when given) receives ``windows`` (kept), ``restruck`` (kept windows whose
    opening HOLD became the held note), ``few_notes`` (dropped: under ``min_notes``
    onsets) and ``short_pieces`` (pieces shorter than one window: none cut from them).
    """
    if window < 1 or hop < 1:
        raise ValueError(f"window and hop must be >= 1, got window={window}, hop={hop}")
    rows, restruck, few, short = [], 0, 0, 0
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        if len(seq) < window:
            short += 1
            continue
        for start in range(0, len(seq) - window + 1, hop):
            chunk, changed = start_cleanly(seq[start : start + window], seq[:start])
            if int((chunk >= Vocabulary.FIRST_PITCH_TOKEN).sum()) < min_notes:
                few += 1
                continue
            restruck += changed
            rows.append(chunk)
    if counts is not None:
        counts.update(windows=len(rows), restruck=restruck, few_notes=few, short_pieces=short)
    if not rows:
        raise ValueError(f"no window of {window} steps with >= {min_notes} notes in {len(sequences)} "
                         f"sequences ({short} shorter than a window, {few} windows with too few notes)")
    return np.stack(rows)
