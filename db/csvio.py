"""Ratings as CSV: ``rlmusic ratings import FILE.csv`` and ``rlmusic ratings export``.

Two formats; the header line (required) decides which:

- star rows ``clip_id,rater,stars`` (stars an integer 1..5), optionally a fourth column
  ``tags`` holding ``;``-separated tags (``boring;pleasant``);
- pairwise rows ``clip_a,clip_b,rater,winner`` (winner ``a``, ``b`` or ``tie``).

Import checks the whole file first and reports every bad row (line number and bad
value) in one ``RatingsImportError``; then nothing is written. Ids are ASCII digits
(``1_0``, ``١`` or ``10**23`` are errors, not other clips), the file must be UTF-8 (the
error names the line), a field is at most ``MAX_FIELD`` characters. A good file is
written by ``db.bulk.write_rows``: set-based, in transactions of ``BATCH_ROWS`` rows
taking their locks in one fixed order, with the same rules as ``add_rating`` /
``add_comparison``: importing the same file twice changes nothing, a changed star value
updates the rating and logs the old one. A file of at most ``BATCH_ROWS`` rows (or any
file with ``batch_rows=0``) is written all or nothing.

Export writes the same formats (the ``tags`` column only when some rating has tags), so
``import(export(db))`` leaves a database unchanged. A rater cell a spreadsheet would read
as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is written
with a leading ``'``, and so is one that starts with ``'``; import removes one leading
``'`` from a rater cell.
"""

from __future__ import annotations

import csv
import functools
import io
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, aliased

from db.bulk import BATCH_ROWS, chunks, write_rows
from db.checks import CLIP_ID_MAX, check_rater_name, check_tags
from db.engine import session_scope
from db.models import WINNERS, Clip, Comparison, Rater, Rating

STAR_HEADER = ("clip_id", "rater", "stars")
STAR_HEADER_TAGS = (*STAR_HEADER, "tags")
PAIR_HEADER = ("clip_a", "clip_b", "rater", "winner")
TAG_SEPARATOR = ";"
MAX_REPORTED = 50  # problems spelled out in the message; all are in .problems
MAX_FIELD = 1_000  # characters a field may hold (a rater name is at most 64)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")  # cells written with a leading "'"
_DIGITS = re.compile(r"[0-9]+")  # ASCII digits only: int() would also take "1_0" and "١"

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
    text = value.strip()
    if not _DIGITS.fullmatch(text) or not 1 <= int(text) <= CLIP_ID_MAX:
        problems.append(f"{field} {value[:40]!r} is not a clip id (ASCII digits, 1..{CLIP_ID_MAX})")
        return None
    return int(text)


def escape_cell(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_START) else text


def unescape_cell(text: str) -> str:
    """The inverse of ``escape_cell`` (one leading ``'`` removed)."""
    return text[1:] if text.startswith("'") else text


def _parse_rater(value: str, problems: list[str]) -> str | None:
    name, problem = _rater_cell(value)
    if problem is not None:
        problems.append(problem)
    return name


@functools.lru_cache(maxsize=4096)
def _rater_cell(value: str) -> tuple[str | None, str | None]:
    """(the rater name, None) or (None, the problem) of a rater cell; a file names few
    raters many times, so each is checked once."""
    raw = value.strip()
    try:
        return check_rater_name(unescape_cell(raw) if raw.startswith("'") else value), None
    except ValueError as exc:
        return None, str(exc)


def _parse_star(fields: list[str], has_tags: bool, problems: list[str]) -> tuple | None:
    clip_id = _parse_int("clip_id", fields[0], problems)
    rater = _parse_rater(fields[1], problems)
    stars = None
    raw = fields[2].strip()
    if re.fullmatch(r"[1-5]", raw):
        stars = int(raw)
    elif _DIGITS.fullmatch(raw):
        problems.append(f"stars {fields[2]!r} is not in 1..5")
    else:
        problems.append(f"stars {fields[2][:40]!r} is not an integer in 1..5")
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
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RatingsImportError(path, [(line, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                                               f"{exc.start}); save the file as UTF-8")]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _read_rows(path, reader, problems)
    except csv.Error as exc:
        problems.append((reader.line_num, f"not readable as CSV: {exc}"))
        raise RatingsImportError(path, problems) from None


def _read_rows(path: Path, reader, problems: list[tuple[int, str]]) -> tuple[Kind, list[Any], list[tuple[int, str]]]:
    """The rows of ``reader`` after its header; bad rows go to ``problems``."""
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
        long = next((i for i, v in enumerate(fields) if len(v) > MAX_FIELD), None)
        if long is not None:
            problems.append((line, f"field {long + 1} is {len(fields[long]):,} characters long "
                                   f"(at most {MAX_FIELD:,})"))
            continue
        if len(fields) != width:
            problems.append(
                (
                    line,
                    f"expected {width} fields ({','.join(names)}), got {len(fields)}: "
                    f"{','.join(fields)[:200]!r}",
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
    for chunk in chunks(sorted(clip_ids)):
        found.update(session.scalars(select(Clip.id).where(Clip.id.in_(chunk))))
    return clip_ids - found


def import_ratings(
    engine: Engine,
    path: str | Path,
    *,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Import a ratings CSV (stars or pairs, by its header).

    The whole file is checked first (every bad row and unknown clip id reported, nothing
    written); then it is written in transactions of ``batch_rows`` rows (0: one
    transaction), each committed whole (``db.bulk.write_rows``). Returns ``{"kind",
    "rows", "inserted", "updated", "unchanged"}``.
    """
    kind, rows, problems = read_ratings_csv(path)
    problems = list(problems)
    with session_scope(engine) as session:
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
                problems.append((r.line, f"unknown {name} {clip_id}"))
    if problems:
        problems.sort(key=lambda p: p[0])
        raise RatingsImportError(path, problems)
    counts = write_rows(engine, kind, rows, batch_rows=batch_rows, progress=progress)
    return {"kind": kind, "rows": len(rows), "inserted": counts["inserted"], "updated": counts["updated"],
            "unchanged": counts["unchanged"]}


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
                [clip_id, escape_cell(rater), stars, TAG_SEPARATOR.join(tags)][: len(header)]
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
            lines = [[a, b, escape_cell(rater), winner] for a, b, rater, winner in result]
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(lines)
    write_whole(path, text.getvalue().encode("utf-8"))
    return len(lines)


def write_whole(path: Path, data: bytes | Callable[[BinaryIO], object]) -> None:
    """Write ``data`` (bytes, or a function writing to the binary file) to ``path`` via a
    temporary file and a rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
