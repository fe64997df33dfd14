"""Checks of the values a judgement or a clip is made of, shared by every writer (the app, the
CSV import, the Python API): each returns the value as stored or raises ``ValueError``
naming the bad value.

A rater's name is one line of visible characters: NFC-normalised, blanks at the ends
removed and each run of blanks inside made one space (``rater_key``), no control, format
(zero-width, direction marks) or line-separator characters, at least one letter, digit,
punctuation or symbol: no two raters look alike and none can pass as another.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from numbers import Integral
from typing import Any

from db.models import CLIP_KINDS, RATER_NAME_MAX, RATING_TAGS, WINNERS

# Unicode categories a name may not hold: control (tab, newline...), format (zero-width
# space, direction marks...), surrogates, private use, unassigned, line/paragraph separators.
_INVISIBLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")
CLIP_ID_MAX = 2**31 - 1  # clip ids are 32-bit integers (PostgreSQL ``integer``)


def rater_key(name: str) -> str:
    """How a rater's name is stored and looked up: NFC, blanks at the ends removed and
    each run of blanks inside made one space."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def check_rater_name(name: Any) -> str:
    """The rater name as stored (``rater_key``); ``ValueError`` unless it is 1..64
    characters of one line with at least one visible character."""
    if not isinstance(name, str):
        raise ValueError(f"rater name {name!r} is not a string")
    bad = next((ch for ch in name if unicodedata.category(ch) in _INVISIBLE), None)
    if bad is not None:
        what = unicodedata.name(bad, unicodedata.category(bad))
        raise ValueError(f"rater name {name!r} holds an invisible or control character "
                         f"U+{ord(bad):04X} ({what}); a name is one line of visible characters")
    key = rater_key(name)
    if not 1 <= len(key) <= RATER_NAME_MAX:
        raise ValueError(
            f"rater name {name!r} must be 1..{RATER_NAME_MAX} characters once stripped"
        )
    if not any(unicodedata.category(ch)[0] in "LNPS" for ch in key):
        raise ValueError(f"rater name {name!r} has no visible character")
    return key


def check_stars(stars: Any) -> int:
    """``stars`` as an int in 1..5, else ``ValueError`` naming the value."""
    if isinstance(stars, bool) or not isinstance(stars, Integral) or not 1 <= stars <= 5:
        raise ValueError(f"stars {stars!r} is not an integer in 1..5")
    return int(stars)


def check_winner(winner: Any) -> str:
    """``winner`` if it is ``'a'``, ``'b'`` or ``'tie'``, else ``ValueError``."""
    if winner not in WINNERS:
        raise ValueError(f"winner {winner!r} is not one of {', '.join(WINNERS)}")
    return winner


def check_tags(tags: Iterable[str]) -> list[str]:
    """Known tags, deduplicated, in ``RATING_TAGS`` order; unknown ones raise."""
    if isinstance(tags, str):
        raise ValueError(f"tags {tags!r} must be a list of tags, not one string")
    given = set()
    for tag in tags:
        if tag not in RATING_TAGS:
            raise ValueError(f"tag {tag!r} is not one of {', '.join(RATING_TAGS)}")
        given.add(tag)
    return [t for t in RATING_TAGS if t in given]


def check_clip_id(name: str, value: Any) -> int:
    """``value`` as a clip id (an integer in 1..2**31-1), else ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name} {value!r} is not an integer clip id")
    if not 1 <= value <= CLIP_ID_MAX:
        raise ValueError(f"{name} {value!r} is not a clip id (1..{CLIP_ID_MAX})")
    return int(value)


def pair_verdict(clip_a: int, clip_b: int, winner: str) -> str:
    """A comparison's verdict relative to the sorted pair: ``'lo'``, ``'hi'`` or ``'tie'``
    (the same judgement in either presentation order gives the same verdict)."""
    if winner == "tie":
        return "tie"
    winning_clip = clip_a if winner == "a" else clip_b
    return "lo" if winning_clip == min(clip_a, clip_b) else "hi"


def check_clip_tokens(index: int, tokens: Any) -> list[int]:
    if not isinstance(tokens, list | tuple) or not tokens:
        raise ValueError(
            f"clip {index}: tokens must be a non-empty list of ints, got {tokens!r:.80}"
        )
    out = []
    for t in tokens:
        if isinstance(t, bool) or not isinstance(t, Integral):  # numpy ints are Integral
            raise ValueError(f"clip {index}: token {t!r} is not an int")
        out.append(int(t))
    return out


def check_clip_voices(index: int, kind: Any, voices: Any, tokens: list[int]) -> list[list[int]] | None:
    if kind not in CLIP_KINDS:
        raise ValueError(f"clip {index}: kind {kind!r} is not one of {', '.join(CLIP_KINDS)}")
    if kind == "melody":
        if voices is not None:
            raise ValueError(f"clip {index}: a melody clip has no voices")
        return None
    if not isinstance(voices, list | tuple) or len(voices) != 4:
        raise ValueError(f"clip {index}: a harmony needs voices, four token rows (soprano, alto, tenor, bass)")
    rows = [check_clip_tokens(index, row) for row in voices]
    if any(len(row) != len(tokens) for row in rows):
        raise ValueError(f"clip {index}: every voice must have {len(tokens)} steps, got {[len(r) for r in rows]}")
    return rows

def check_clip_kind(kind: str) -> None:
    if kind not in CLIP_KINDS:
        raise ValueError(f"clip kind {kind!r} is not one of {', '.join(CLIP_KINDS)}")
