"""The rating queue: register models, enqueue their clips, and pick what a rater hears next.

``next_clip`` and ``next_pair`` are index walks over the denormalised counters on
``clips`` (see ``db/models.py``): they stay fast at 100k clips (``benchmarks/bench_db.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, case, exists, false, func, insert, select, update
from sqlalchemy.orm import Session

from db.checks import check_clip_kind, check_clip_tokens, check_clip_voices, rater_key
from db.engine import retrying, retrying_connection, session_scope
from db.files import sha256_file
from db.models import MODEL_KINDS, Clip, Comparison, Model, Rater, Rating

NEXT_CLIP_ORDERS = ("fewest", "priority")
PAIR_CANDIDATES = 64  # first clips tried as "A" per round trip of next_pair


@dataclass(frozen=True)
class ClipInfo:
    """A clip as the app and the CLI see it (plain values, no session attached)."""

    id: int
    model_id: int
    model_name: str
    tokens: list[int]
    steps: int
    midi_path: str
    audio_path: str | None
    seed: int | None
    midi_sha256: str | None = None  # SHA-256 of the MIDI file when the clip was stored
    audio_sha256: str | None = None  # SHA-256 of audio_path's file when it was recorded
    kind: str = "melody"  # one of CLIP_KINDS
    voices: list[list[int]] | None = None  # a harmony's four token rows (soprano first)


def _clip_info(clip: Clip) -> ClipInfo:
    return ClipInfo(
        id=clip.id,
        model_id=clip.model_id,
        model_name=clip.model.name,
        tokens=list(clip.tokens),
        steps=clip.steps,
        midi_path=clip.midi_path,
        audio_path=clip.audio_path,
        seed=clip.seed,
        midi_sha256=clip.midi_sha256,
        audio_sha256=clip.audio_sha256,
        kind=clip.kind,
        voices=None if clip.voices is None else [list(v) for v in clip.voices],
    )


def register_model(
    engine: Engine,
    *,
    name: str,
    directory: str | Path,
    kind: str,
    parent_id: int | None = None,
    provenance: dict[str, Any] | None = None,
) -> int:
    """Add a model directory to the database; idempotent by (resolved) directory.

    Args:
        name: display name in the app and dashboards.
        directory: the model directory; its absolute path is the model's identity, so
            registering the same directory again returns the existing id unchanged.
        kind: ``"prior"``, ``"tuned"`` or ``"harmony"`` (a model that writes harmonisations).
        parent_id: id of the model this one was tuned from (None for a prior).
        provenance: free JSON (corpus, reward model, git commit...), as in config.json.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"model kind {kind!r} is not one of {', '.join(MODEL_KINDS)}")
    if not name or not str(name).strip():
        raise ValueError(f"model name {name!r} is empty")
    directory = str(Path(directory).expanduser().resolve())

    def work(session: Session) -> int:
        existing = session.scalar(select(Model.id).where(Model.directory == directory))
        if existing is not None:
            return existing
        if parent_id is not None and session.get(Model, parent_id) is None:
            raise ValueError(f"parent model id {parent_id!r} does not exist")
        model = Model(
            name=str(name).strip(),
            kind=kind,
            directory=directory,
            parent_id=parent_id,
            provenance=provenance,
        )
        session.add(model)
        session.flush()
        return model.id

    return retrying(engine, work)


def list_models(engine: Engine) -> list[dict[str, Any]]:
    """All models, oldest first, as plain dicts."""
    with session_scope(engine) as session:
        models = session.scalars(select(Model).order_by(Model.id)).all()
        return [
            {
                "id": m.id,
                "name": m.name,
                "kind": m.kind,
                "directory": m.directory,
                "parent_id": m.parent_id,
                "provenance": m.provenance,
                "created_at": m.created_at,
            }
            for m in models
        ]


def enqueue_clips(engine: Engine, model_id: int, clips: Iterable[Mapping[str, Any]]) -> list[int]:
    """Add generated clips of one model to the rating queue; returns their ids in order.

    Each clip is a mapping with ``tokens`` (list of token ids), ``midi_path``, and
    optionally ``steps`` (defaults to ``len(tokens)``; must equal it when given),
    ``audio_path`` (None until rendered), ``seed``, ``broken`` (True: the broken melody of a
    gold check, never served on its own), ``kind`` (``"melody"``, the default, or
    ``"harmony"``) and, for a harmony, ``voices`` (four token rows of ``steps`` each,
    soprano first, in its harmony model's vocabulary; ``tokens`` is then the soprano as a
    melody). The SHA-256 of the MIDI and audio files is recorded as they are now
    (``midi_sha256`` / ``audio_sha256`` may give it; None for a file that is not there): the
    files must never change afterwards (``db/files.py``). All are added in one transaction.
    """
    rows = []
    for i, clip in enumerate(clips):
        tokens = check_clip_tokens(i, clip.get("tokens"))
        steps = int(clip.get("steps", len(tokens)))
        if steps != len(tokens):
            raise ValueError(f"clip {i}: steps {steps!r} != len(tokens) {len(tokens)}")
        if not clip.get("midi_path"):
            raise ValueError(f"clip {i}: midi_path {clip.get('midi_path')!r} is empty")
        seed = clip.get("seed")
        audio = clip.get("audio_path")
        kind = clip.get("kind", "melody")
        voices = check_clip_voices(i, kind, clip.get("voices"), tokens)
        rows.append(
            {
                "model_id": model_id,
                "tokens": tokens,
                "steps": steps,
                "midi_path": str(clip["midi_path"]),
                "audio_path": None if audio is None else str(audio),
                "seed": None if seed is None else int(seed),
                "midi_sha256": clip.get("midi_sha256") or sha256_file(clip["midi_path"]),
                "audio_sha256": clip.get("audio_sha256") or sha256_file(audio),
                "kind": kind,
                "voices": voices,
                "broken": bool(clip.get("broken", False)),
            }
        )

    def work(connection: Connection) -> list[int]:
        if connection.scalar(select(Model.id).where(Model.id == model_id)) is None:
            raise ValueError(f"model id {model_id!r} does not exist")
        # One executemany with RETURNING (batched INSERT ... VALUES on both backends).
        statement = insert(Clip.__table__).returning(
            Clip.__table__.c.id, sort_by_parameter_order=True
        )
        return list(connection.execute(statement, rows).scalars())

    return retrying_connection(engine, work) if rows else []


def set_clip_audio(
    engine: Engine,
    clip_id: int,
    audio_path: str | Path | None,
    sha256: str | None = None,
    *,
    timeout_s: float | None = None,
) -> str | None:
    """Record where a clip's rendered audio is (None: not rendered) and the SHA-256 of its
    bytes (``sha256``, else read from the file now); returns that hash. ``timeout_s``:
    wait at most that long for other writers (then ``DatabaseBusyError``)."""
    value = None if audio_path is None else str(audio_path)
    digest = None if value is None else (sha256 or sha256_file(value))

    def work(session: Session) -> None:
        result = session.execute(
            update(Clip).where(Clip.id == clip_id).values(audio_path=value, audio_sha256=digest)
        )
        if result.rowcount == 0:
            raise ValueError(f"clip id {clip_id!r} does not exist")

    retrying(engine, work, timeout_s=timeout_s)
    return digest


def clips_of_model(engine: Engine, directory: str | Path) -> int:
    """How many clips in the queue were sampled from the model directory ``directory``
    (0 when it is not registered)."""
    directory = str(Path(directory).expanduser().resolve())
    with session_scope(engine) as session:
        query = select(func.count(Clip.id)).join(Model, Model.id == Clip.model_id)
        return int(session.scalar(query.where(Model.directory == directory)) or 0)


def set_clip_priority(engine: Engine, scores: Mapping[int, float]) -> None:
    """Set ``clips.priority`` for active selection; higher is shown first by
    ``next_clip(order="priority")``. Unknown clip ids raise ``ValueError``."""
    items = sorted((int(k), float(v)) for k, v in scores.items())  # rows locked in id order

    def work(session: Session) -> None:
        known = set()
        ids = [k for k, _ in items]
        for start in range(0, len(ids), 5000):
            chunk = ids[start : start + 5000]
            known.update(session.scalars(select(Clip.id).where(Clip.id.in_(chunk))))
        missing = sorted(set(ids) - known)
        if missing:
            raise ValueError(f"unknown clip ids {missing[:10]}{'...' if len(missing) > 10 else ''}")
        if items:
            session.execute(
                update(Clip),
                [{"id": k, "priority": v} for k, v in items],
            )

    retrying(engine, work)


def get_clip(engine: Engine, clip_id: int) -> ClipInfo:
    """One clip by id (``ValueError`` if there is none)."""
    with session_scope(engine) as session:
        clip = session.get(Clip, clip_id)
        if clip is None:
            raise ValueError(f"clip id {clip_id!r} does not exist")
        return _clip_info(clip)


def _rater_id(session: Session, rater: str) -> int | None:
    return session.scalar(select(Rater.id).where(Rater.name == rater_key(rater)))


def next_clip(
    engine: Engine,
    rater: str,
    *,
    order: Literal["fewest", "priority"] = "fewest",
    exclude: Iterable[int] = (),
    require_audio: bool = False,
    kind: str = "melody",
) -> ClipInfo | None:
    """The clip ``rater`` should rate next, or None when they have rated everything.

    Never a clip this rater has already rated, nor the broken melody of a gold check.

    Args:
        rater: rater name (need not exist yet: a new rater gets the start of the queue).
        order: ``"fewest"``: fewest ratings first, ties oldest (lowest id) first;
            ``"priority"``: highest ``clips.priority`` first (active selection, see
            ``set_clip_priority``), then as ``"fewest"``.
        exclude: clip ids to skip (e.g. the clip on screen in another tab).
        require_audio: only clips whose audio has been rendered.
        kind: only clips of this kind (``"melody"`` or ``"harmony"``).
    """
    check_clip_kind(kind)
    if order not in NEXT_CLIP_ORDERS:
        raise ValueError(f"order {order!r} is not one of {', '.join(NEXT_CLIP_ORDERS)}")
    exclude = list(exclude)
    with session_scope(engine) as session:
        query = select(Clip).where(Clip.kind == kind, Clip.broken == false())
        rater_id = _rater_id(session, rater)
        if rater_id is not None:
            rated = exists().where(Rating.clip_id == Clip.id, Rating.rater_id == rater_id)
            query = query.where(~rated)
        if exclude:
            query = query.where(Clip.id.not_in(exclude))
        if require_audio:
            query = query.where(Clip.audio_path.is_not(None))
        if order == "priority":
            query = query.order_by(Clip.priority.desc(), Clip.n_ratings, Clip.id)
        else:
            query = query.order_by(Clip.n_ratings, Clip.id)
        clip = session.scalars(query.limit(1)).first()
        return None if clip is None else _clip_info(clip)


def next_pair(
    engine: Engine,
    rater: str,
    *,
    require_audio: bool = False,
    kind: str = "melody",
) -> tuple[ClipInfo, ClipInfo] | None:
    """Two clips ``rater`` has not compared together, or None when there are none.

    Both clips have the same length (``steps``); neither is the broken melody of a gold
    check (those are served only by ``next_study_pair``). Clip A is the clip with the fewest
    comparisons (ties: oldest); B is, among same-length clips not yet compared with A by
    this rater, one from a different model when there is one, then fewest comparisons,
    then oldest.

    Args:
        rater: rater name (need not exist yet).
        require_audio: only clips whose audio has been rendered.
        kind: only clips of this kind (``"melody"`` or ``"harmony"``).
    """
    check_clip_kind(kind)
    with session_scope(engine) as session:
        rater_id = _rater_id(session, rater)
        model_ids = list(session.scalars(select(Model.id)))
        # Light rows while searching; the two full clips are loaded at the end.
        base = select(Clip.id, Clip.steps, Clip.model_id).where(Clip.kind == kind, Clip.broken == false())
        if require_audio:
            base = base.where(Clip.audio_path.is_not(None))
        offset = 0
        while True:
            candidates = session.execute(
                base.order_by(Clip.n_comparisons, Clip.id).offset(offset).limit(PAIR_CANDIDATES)
            ).all()
            if not candidates:
                return None
            for a_id, a_steps, a_model in candidates:
                query = select(Clip.id).where(Clip.steps == a_steps, Clip.id != a_id, Clip.kind == kind,
                                              Clip.broken == false())
                if require_audio:
                    query = query.where(Clip.audio_path.is_not(None))
                if rater_id is not None:
                    lo = case((Clip.id < a_id, Clip.id), else_=a_id)
                    hi = case((Clip.id < a_id, a_id), else_=Clip.id)
                    done = exists().where(
                        Comparison.rater_id == rater_id,
                        Comparison.pair_lo == lo,
                        Comparison.pair_hi == hi,
                    )
                    query = query.where(~done)
                # Another model first (the best over the other models), then the same
                # model; each an index walk on (model_id, steps, n_comparisons, id).
                ordered = query.add_columns(Clip.n_comparisons).order_by(
                    Clip.n_comparisons, Clip.id
                )
                found = [
                    session.execute(ordered.where(Clip.model_id == m).limit(1)).first()
                    for m in model_ids
                    if m != a_model
                ]
                found = [row for row in found if row is not None]
                if not found:
                    row = session.execute(ordered.where(Clip.model_id == a_model).limit(1)).first()
                    found = [row] if row is not None else []
                b_id = min(found, key=lambda row: (row[1], row[0]))[0] if found else None
                if b_id is not None:
                    return _clip_info(session.get(Clip, a_id)), _clip_info(session.get(Clip, b_id))
            offset += PAIR_CANDIDATES


def queue_size(engine: Engine, rater: str | None = None, kind: str = "melody") -> int:
    """Clips of ``kind`` ``rater`` has not rated yet; with no rater, clips nobody has rated
    yet (the broken melodies of gold checks are never in the queue)."""
    check_clip_kind(kind)
    served = (Clip.kind == kind) & (Clip.broken == false())
    with session_scope(engine) as session:
        if rater is None:
            return session.scalar(select(func.count()).where(Clip.n_ratings == 0, served)) or 0
        total = session.scalar(select(func.count(Clip.id)).where(served)) or 0
        rater_id = _rater_id(session, rater)
        if rater_id is None:
            return total
        rated = session.scalar(select(func.count()).select_from(Rating).join(Clip, Clip.id == Rating.clip_id)
                               .where(Rating.rater_id == rater_id, served)) or 0
        return total - rated


def list_clips(engine: Engine, kind: str = "melody", limit: int = 50) -> list[ClipInfo]:
    """The newest ``limit`` clips of ``kind``, newest first (e.g. to pick one to harmonise)."""
    check_clip_kind(kind)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    with session_scope(engine) as session:
        clips = session.scalars(select(Clip).where(Clip.kind == kind).order_by(Clip.id.desc()).limit(limit))
        return [_clip_info(c) for c in clips]

