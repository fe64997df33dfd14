"""Ratings as CSV: ``rlmusic ratings import FILE.csv`` and ``rlmusic ratings export``.

Two formats; the header line (required) decides which:

- star rows ``clip_id,rater,stars`` (stars an integer 1..5), optionally a fourth column
  ``tags`` holding ``;``-separated tags (``boring;pleasant``);
- pairwise rows ``clip_a,clip_b,rater,winner`` (winner ``a``, ``b`` or ``tie``).

Import checks the whole file first and reports every bad row (line number and bad
value) in one ``RatingsImportError``; then nothing is written. A good file is written
in one transaction, with the same rules as ``add_rating``/``add_comparison``: importing
the same file twice changes nothing, a changed star value updates the rating and logs
the old one. Export writes the same formats (the ``tags`` column only when some rating
has tags), so ``import(export(db))`` leaves a database unchanged.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, aliased

from db.engine import retrying, session_scope
from db.models import WINNERS, Clip, Comparison, Rater, Rating, utcnow
from db.ratings import (
    check_rater_name,
    check_tags,
    ensure_rater,
    upsert_comparison,
    upsert_rating,
)

STAR_HEADER = ("clip_id", "rater", "stars")
STAR_HEADER_TAGS = (*STAR_HEADER, "tags")
PAIR_HEADER = ("clip_a", "clip_b", "rater", "winner")
TAG_SEPARATOR = ";"
MAX_REPORTED = 50  # problems spelled out in the message; all are in .problems

Kind = Literal["stars", "pairs"]


class RatingsImportError(ValueError):
    """A ratings CSV has bad rows; nothing was imported.

    Attributes:
        path: the file.
        problems: ``(line_number, message)`` for every bad row, in file order.
    """

    def __init__(self, path: str | Path, problems: list[tuple[int, str]]) -> None:
        self.path = str(path)
        self.problems = problems
        shown = [f"  line {line}: {message}" for line, message in problems[:MAX_REPORTED]]
        if len(problems) > MAX_REPORTED:
            shown.append(f"  ... and {len(problems) - MAX_REPORTED} more")
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(
            f"{self.path}: {len(problems)} {noun}, nothing imported:\n" + "\n".join(shown)
        )


@dataclass(frozen=True)
class _StarRow:
    line: int
    clip_id: int
    rater: str
    stars: int
    tags: list[str] | None  # None: no tags column (keep stored tags)


@dataclass(frozen=True)
class _PairRow:
    line: int
    clip_a: int
    clip_b: int
    rater: str
    winner: str


def _parse_int(field: str, value: str, problems: list[str]) -> int | None:
    try:
        return int(value.strip())
    except ValueError:
        problems.append(f"{field} {value!r} is not an integer")
        return None


def _parse_rater(value: str, problems: list[str]) -> str | None:
    try:
        return check_rater_name(value)
    except ValueError as exc:
        problems.append(str(exc))
        return None


def _parse_star(fields: list[str], has_tags: bool, problems: list[str]) -> tuple | None:
    clip_id = _parse_int("clip_id", fields[0], problems)
    rater = _parse_rater(fields[1], problems)
    stars = None
    raw = fields[2].strip()
    try:
        stars = int(raw)
        if not 1 <= stars <= 5:
            problems.append(f"stars {fields[2]!r} is not in 1..5")
            stars = None
    except ValueError:
        problems.append(f"stars {fields[2]!r} is not an integer in 1..5")
    tags = None
    if has_tags:
        names = [t.strip() for t in fields[3].split(TAG_SEPARATOR) if t.strip()]
        try:
            tags = check_tags(names)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        return None
    return clip_id, rater, stars, tags


def _parse_pair(fields: list[str], problems: list[str]) -> tuple | None:
    clip_a = _parse_int("clip_a", fields[0], problems)
    clip_b = _parse_int("clip_b", fields[1], problems)
    rater = _parse_rater(fields[2], problems)
    winner = fields[3].strip().lower()
    if winner not in WINNERS:
        problems.append(f"winner {fields[3]!r} is not one of {', '.join(WINNERS)}")
    if clip_a is not None and clip_a == clip_b:
        problems.append(f"clip {clip_a} is compared with itself")
    if problems:
        return None
    return clip_a, clip_b, rater, winner


def read_ratings_csv(path: str | Path) -> tuple[Kind, list[Any], list[tuple[int, str]]]:
    """Parse a ratings CSV without touching the database.

    Returns ``(kind, rows, problems)``; unknown clip ids are not checked here.
    """
    path = Path(path)
    problems: list[tuple[int, str]] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise RatingsImportError(path, [(1, "empty file: expected a header line")])
        names = tuple(h.strip().lower() for h in header)
        if names in (STAR_HEADER, STAR_HEADER_TAGS):
            kind: Kind = "stars"
        elif names == PAIR_HEADER:
            kind = "pairs"
        else:
            raise RatingsImportError(
                path,
                [
                    (
                        reader.line_num,
                        f"header {','.join(header)!r} is neither {','.join(STAR_HEADER)}[,tags]"
                        f" (star rows) nor {','.join(PAIR_HEADER)} (pairwise rows)",
                    )
                ],
            )
        width = len(names)
        rows: list[Any] = []
        first_seen: dict[tuple, int] = {}
        for fields in reader:
            line = reader.line_num
            if not fields:
                continue  # blank line
            if len(fields) != width:
                problems.append(
                    (
                        line,
                        f"expected {width} fields ({','.join(names)}), got {len(fields)}: "
                        f"{','.join(fields)!r}",
                    )
                )
                continue
            row_problems: list[str] = []
            if kind == "stars":
                parsed = _parse_star(fields, width == 4, row_problems)
                if parsed is not None:
                    clip_id, rater, stars, tags = parsed
                    key: tuple = (rater, clip_id)
                    where = f"rater {rater!r}, clip {clip_id}"
                    row: Any = _StarRow(line, clip_id, rater, stars, tags)
            else:
                parsed = _parse_pair(fields, row_problems)
                if parsed is not None:
                    clip_a, clip_b, rater, winner = parsed
                    key = (rater, min(clip_a, clip_b), max(clip_a, clip_b))
                    where = f"rater {rater!r}, clips {clip_a} and {clip_b}"
                    row = _PairRow(line, clip_a, clip_b, rater, winner)
            if row_problems:
                problems.extend((line, message) for message in row_problems)
                continue
            if key in first_seen:
                problems.append((line, f"duplicate of line {first_seen[key]} ({where})"))
                continue
            first_seen[key] = line
            rows.append(row)
    return kind, rows, problems


def _unknown_clips(session: Session, clip_ids: set[int]) -> set[int]:
    found: set[int] = set()
    ordered = sorted(clip_ids)
    for start in range(0, len(ordered), 5000):
        chunk = ordered[start : start + 5000]
        found.update(session.scalars(select(Clip.id).where(Clip.id.in_(chunk))))
    return clip_ids - found


def import_ratings(engine: Engine, path: str | Path) -> dict[str, Any]:
    """Import a ratings CSV (stars or pairs, by its header) in one transaction.

    Returns ``{"kind", "rows", "inserted", "updated", "unchanged"}``. Raises
    ``RatingsImportError`` listing every bad row, having written nothing.
    """
    kind, rows, problems = read_ratings_csv(path)

    def work(session: Session) -> dict[str, Any]:
        all_problems = list(problems)
        if kind == "stars":
            wanted = {r.clip_id for r in rows}
        else:
            wanted = {r.clip_a for r in rows} | {r.clip_b for r in rows}
        unknown = _unknown_clips(session, wanted)
        for r in rows:
            ids = (r.clip_id,) if kind == "stars" else (r.clip_a, r.clip_b)
            field = ("clip_id",) if kind == "stars" else ("clip_a", "clip_b")
            for name, clip_id in zip(field, ids, strict=True):
                if clip_id in unknown:
                    all_problems.append((r.line, f"unknown {name} {clip_id}"))
        if all_problems:
            all_problems.sort(key=lambda p: p[0])
            raise RatingsImportError(path, all_problems)
        counts = {"kind": kind, "rows": len(rows), "inserted": 0, "updated": 0, "unchanged": 0}
        rater_ids: dict[str, int] = {}
        now = utcnow()
        connection = session.connection()
        for r in rows:
            if r.rater not in rater_ids:
                rater_ids[r.rater] = ensure_rater(connection, r.rater)
            if kind == "stars":
                _, outcome = upsert_rating(
                    connection, rater_ids[r.rater], r.clip_id, r.stars, r.tags, now
                )
            else:
                _, outcome = upsert_comparison(
                    connection, rater_ids[r.rater], r.clip_a, r.clip_b, r.winner, now
                )
            counts[outcome] += 1
        return counts

    return retrying(engine, work)


def export_ratings(engine: Engine, path: str | Path, kind: Kind = "stars") -> int:
    """Write all star ratings (``kind="stars"``) or comparisons (``"pairs"``) as CSV.

    Rows are in id order; returns how many were written.
    """
    if kind not in ("stars", "pairs"):
        raise ValueError(f"kind {kind!r} is not one of stars, pairs")
    path = Path(path)
    with session_scope(engine) as session:
        if kind == "stars":
            result = session.execute(
                select(Rating.clip_id, Rater.name, Rating.stars, Rating.tags)
                .join(Rater, Rater.id == Rating.rater_id)
                .order_by(Rating.id)
            ).all()
            with_tags = any(tags for *_, tags in result)
            header = STAR_HEADER_TAGS if with_tags else STAR_HEADER
            lines = [
                [clip_id, rater, stars, TAG_SEPARATOR.join(tags)][: len(header)]
                for clip_id, rater, stars, tags in result
            ]
        else:
            rater = aliased(Rater)
            result = session.execute(
                select(Comparison.clip_a_id, Comparison.clip_b_id, rater.name, Comparison.winner)
                .join(rater, rater.id == Comparison.rater_id)
                .order_by(Comparison.id)
            ).all()
            header = PAIR_HEADER
            lines = [list(r) for r in result]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(lines)
    return len(lines)
