"""Blind A/B studies: their pairs, what a rater judges next, and the report.

A study (``rlmusic study create``) holds pairs of clips of the same length, one of model A
and one of model B, each with the side it is shown on (``swap``) and its place in the
order of service (``position``); and gold checks, an intact clip against a deliberately
broken one. The Compare page serves a rater the study pairs they have not judged before
any other pair (``next_study_pair``), left and right as stored, with no model name. A
judgement of a pair is any comparison of its two clips, from the app or from ``rlmusic
ratings import``: nothing else is recorded, so a report is always a recount of the
comparisons table (``study_rows``, ``study_report``; statistics in ``db/study_stats.py``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, and_, exists, select
from sqlalchemy.orm import Session, aliased

from db.checks import rater_key
from db.engine import retrying, session_scope
from db.models import (
    STUDY_NAME_MAX,
    Clip,
    Comparison,
    Model,
    Rater,
    Study,
    StudyCompletion,
    StudyPair,
    utcnow,
)
from db.queue import ClipInfo, _clip_info
from db.study_stats import MAX_GOLD_FAIL, gold_counts, summarise

_NAME = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{STUDY_NAME_MAX - 1}}}")


@dataclass(frozen=True)
class ServedPair:
    """A study pair as the Compare page shows it: ``left`` and ``right`` in screen order."""

    pair_id: int
    study_id: int
    left: ClipInfo
    right: ClipInfo


def check_study_name(name: Any) -> str:
    """``name`` when it is 1..64 letters, digits, ``.``, ``_`` or ``-`` (it names a folder
    too), starting with a letter or digit; else ``ValueError``."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"study name {name!r} must be 1..{STUDY_NAME_MAX} letters, digits, '.', '_' or '-', "
                         "starting with a letter or digit")
    return name


def create_study(engine: Engine, name: str, *, model_a_id: int, model_b_id: int, steps: int, seed: int,
                 pairs: Iterable[Mapping[str, Any]], folder: str | None = None, for_rater: str | None = None) -> int:
    """Record a study and its pairs in one transaction; returns its id.

    Each pair: ``clip_a`` (model A's clip; in a gold check the intact one), ``clip_b``
    (model B's; in a gold check the broken one), ``gold``, ``swap`` (clip B on the left),
    ``position`` (order of service). ``ValueError`` for a name in use, a clip that does
    not exist, is of the wrong model or length, a gold check without a broken clip, or a
    ``for_rater`` (the only rater served its pairs) who is not a rater.
    """
    name = check_study_name(name)
    pairs = [dict(p) for p in pairs]
    if not pairs:
        raise ValueError(f"study {name!r} has no pairs")

    def work(session: Session) -> int:
        if session.scalar(select(Study.id).where(Study.name == name)) is not None:
            raise ValueError(f"a study called {name!r} exists already (rlmusic study list)")
        for model_id in (model_a_id, model_b_id):
            if session.get(Model, model_id) is None:
                raise ValueError(f"model id {model_id!r} does not exist")
        ids = {int(p[k]) for p in pairs for k in ("clip_a", "clip_b")}
        clips = {c.id: c for c in session.scalars(select(Clip).where(Clip.id.in_(sorted(ids))))}
        for_rater_id = None
        if for_rater is not None:
            for_rater_id = session.scalar(select(Rater.id).where(Rater.name == rater_key(for_rater)))
            if for_rater_id is None:
                raise ValueError(f"no rater called {for_rater!r} (a study --for a rater needs one who has judged)")
        study = Study(name=name, model_a_id=model_a_id, model_b_id=model_b_id, steps=steps, seed=seed,
                      folder=folder, for_rater_id=for_rater_id)
        session.add(study)
        session.flush()
        for p in pairs:
            a, b = clips.get(int(p["clip_a"])), clips.get(int(p["clip_b"]))
            _check_pair(p, a, b, steps, model_a_id, model_b_id)
            session.add(StudyPair(study_id=study.id, position=int(p["position"]), gold=bool(p["gold"]),
                                  clip_a_id=a.id, clip_b_id=b.id, swap=bool(p["swap"]),
                                  pair_lo=min(a.id, b.id), pair_hi=max(a.id, b.id)))
        return study.id

    return retrying(engine, work)


def _check_pair(pair: Mapping[str, Any], a: Clip | None, b: Clip | None, steps: int, model_a_id: int,
                model_b_id: int) -> None:
    for key, clip in (("clip_a", a), ("clip_b", b)):
        if clip is None:
            raise ValueError(f"{key} {pair[key]!r} does not exist")
        if clip.steps != steps:
            raise ValueError(f"{key} {clip.id} has {clip.steps} steps, the study {steps}")
    if a.id == b.id:
        raise ValueError(f"clip {a.id} cannot be compared with itself")
    if pair["gold"]:
        if not b.broken or a.broken:
            raise ValueError(f"gold check {a.id} / {b.id}: clip_b must be the broken clip and clip_a an intact one")
    elif (a.model_id, b.model_id) != (model_a_id, model_b_id) or a.broken or b.broken:
        raise ValueError(f"pair {a.id} / {b.id}: clip_a must be an intact clip of model A (id {model_a_id}) "
                         f"and clip_b of model B (id {model_b_id})")


def _study_dict(session: Session, study: Study) -> dict[str, Any]:
    models = {m.id: m for m in session.scalars(select(Model).where(Model.id.in_((study.model_a_id,
                                                                               study.model_b_id))))}
    golds = list(session.scalars(select(StudyPair.gold).where(StudyPair.study_id == study.id)))
    a, b = models[study.model_a_id], models[study.model_b_id]
    return {"id": study.id, "name": study.name, "model_a": a.name, "model_a_dir": a.directory,
            "model_b": b.name, "model_b_dir": b.directory, "model_a_id": a.id, "model_b_id": b.id,
            "steps": study.steps, "seed": study.seed, "folder": study.folder, "created_at": study.created_at,
            "n_pairs": golds.count(False), "n_gold": golds.count(True),
            "for_rater": None if study.for_rater_id is None else session.get(Rater, study.for_rater_id).name}


def get_study(engine: Engine, name: str) -> dict[str, Any]:
    """A study by name (its models' names and directories, counts of pairs and gold
    checks); ``ValueError`` naming the studies there are when there is none."""
    with session_scope(engine) as session:
        study = session.scalar(select(Study).where(Study.name == name))
        if study is None:
            known = list(session.scalars(select(Study.name).order_by(Study.id)))
            raise ValueError(f"no study called {name!r}; studies: {', '.join(known) or 'none yet'}")
        return _study_dict(session, study)


def list_studies(engine: Engine) -> list[dict[str, Any]]:
    """Every study, oldest first (as ``get_study``)."""
    with session_scope(engine) as session:
        return [_study_dict(session, s) for s in session.scalars(select(Study).order_by(Study.id))]


def study_pairs(engine: Engine, name: str) -> list[dict[str, Any]]:
    """The pairs of a study in order of service: ``pair_id``, ``position``, ``gold``,
    ``clip_a`` (model A's / intact), ``clip_b`` (model B's / broken), ``swap``."""
    study_id = get_study(engine, name)["id"]
    with session_scope(engine) as session:
        rows = session.scalars(select(StudyPair).where(StudyPair.study_id == study_id)
                               .order_by(StudyPair.position, StudyPair.id))
        return [{"pair_id": p.id, "position": p.position, "gold": p.gold, "clip_a": p.clip_a_id,
                 "clip_b": p.clip_b_id, "swap": p.swap} for p in rows]


def next_study_pair(engine: Engine, rater: str) -> ServedPair | None:
    """The next study pair ``rater`` has not judged (oldest study first, then position),
    left and right as stored, leaving out studies made for another rater; None when there
    is none. Every rater meets the pairs in the same order, so pairs are shared early
    (agreement needs shared pairs)."""
    with session_scope(engine) as session:
        query = select(StudyPair).order_by(StudyPair.study_id, StudyPair.position, StudyPair.id)
        rater_id = session.scalar(select(Rater.id).where(Rater.name == rater_key(rater)))
        others = exists().where(Study.id == StudyPair.study_id, Study.for_rater_id.is_not(None),
                                Study.for_rater_id != (rater_id if rater_id is not None else -1))
        query = query.where(~others)  # a study for one rater is served to them only
        if rater_id is not None:
            done = exists().where(Comparison.rater_id == rater_id, Comparison.pair_lo == StudyPair.pair_lo,
                                  Comparison.pair_hi == StudyPair.pair_hi)
            query = query.where(~done)
        pair = session.scalars(query.limit(1)).first()
        if pair is None:
            return None
        a, b = _clip_info(session.get(Clip, pair.clip_a_id)), _clip_info(session.get(Clip, pair.clip_b_id))
        left, right = (b, a) if pair.swap else (a, b)
        return ServedPair(pair.id, pair.study_id, left, right)


def study_rows(engine: Engine, study_id: int | None = None) -> list[dict[str, Any]]:
    """Every comparison of a study pair (of one study, or of all): ``comparison_id``,
    ``study``, ``pair`` (the pair id), ``gold``, ``rater``, ``verdict`` (``a``: model A's
    clip preferred, in a gold check the intact one; ``b``; ``tie``), in comparison order."""
    rater = aliased(Rater)
    query = (
        select(Comparison.id, Study.name, StudyPair.id, StudyPair.gold, StudyPair.clip_a_id, rater.name,
               Comparison.clip_a_id, Comparison.clip_b_id, Comparison.winner)
        .join(StudyPair, and_(StudyPair.pair_lo == Comparison.pair_lo, StudyPair.pair_hi == Comparison.pair_hi))
        .join(Study, Study.id == StudyPair.study_id)
        .join(rater, rater.id == Comparison.rater_id)
        .order_by(Comparison.id, StudyPair.id)
    )
    if study_id is not None:
        query = query.where(StudyPair.study_id == study_id)
    with session_scope(engine) as session:
        rows = []
        for cid, study, pair, gold, model_a_clip, name, shown_a, shown_b, winner in session.execute(query):
            verdict = "tie" if winner == "tie" else (
                "a" if (shown_a if winner == "a" else shown_b) == model_a_clip else "b")
            rows.append({"comparison_id": cid, "study": study, "pair": pair, "gold": gold, "rater": name,
                         "verdict": verdict})
        return rows


def study_report(engine: Engine, name: str, max_gold_fail: float = MAX_GOLD_FAIL) -> dict[str, Any]:
    """The report of a study: ``study``, ``model_a``, ``model_b``, ``n_pairs``, ``n_gold``
    and the figures of ``db.study_stats.summarise`` (``n_comparisons``, ``wins_a``,
    ``wins_b``, ``ties``, ``win_rate``, ``ci_low``, ``ci_high``, ``p_value``, ``n_raters``,
    ``krippendorff_alpha``, ``gold_failures``, ``n_raters_excluded``, ...)."""
    study = get_study(engine, name)
    figures = summarise(study_rows(engine, study["id"]), max_gold_fail)
    return {"study": study["name"], "model_a": study["model_a"], "model_b": study["model_b"],
            "model_a_dir": study["model_a_dir"], "model_b_dir": study["model_b_dir"], "steps": study["steps"],
            "n_pairs": study["n_pairs"], "n_gold": study["n_gold"], **figures}


def gold_record(engine: Engine) -> dict[str, dict[str, int]]:
    """``{rater: {"failed", "checks"}}`` over the gold checks of every study: what
    ``rlmusic reward fit --exclude-gold-failures`` leaves raters out by."""
    failed, checks = gold_counts(study_rows(engine))
    return {rater: {"failed": failed[rater], "checks": n} for rater, n in checks.items() if n}


def gold_comparison_ids(engine: Engine) -> set[int]:
    """Ids of the comparisons that are gold checks (attention, not taste)."""
    return {row["comparison_id"] for row in study_rows(engine) if row["gold"]}


# ----------------------------------------------------------------------------- completions

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or typed
CODE_LENGTH = 10  # 50 random bits: a code cannot be guessed for another rater


def _new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def _unrecorded_completions(session: Session, rater_id: int) -> list[int]:
    """Ids of the studies (with pairs) whose every pair the rater has judged, with no completion yet."""
    judged = exists().where(Comparison.rater_id == rater_id, Comparison.pair_lo == StudyPair.pair_lo,
                            Comparison.pair_hi == StudyPair.pair_hi)
    open_pair = exists().where(StudyPair.study_id == Study.id, ~judged)
    has_pairs = exists().where(StudyPair.study_id == Study.id)
    recorded = exists().where(StudyCompletion.study_id == Study.id, StudyCompletion.rater_id == rater_id)
    return list(session.scalars(select(Study.id).where(has_pairs, ~open_pair, ~recorded).order_by(Study.id)))


def completions_of(engine: Engine, rater: str) -> list[dict[str, Any]]:
    """The studies ``rater`` has finished, each ``{"study", "code", "completed_at"}`` (oldest
    first). A study whose pairs ``rater`` has now all judged gets its completion code here, once:
    the first call that finds it complete stores a fresh unique code (a read alone otherwise);
    later calls return the same code."""
    key = rater_key(rater)
    with session_scope(engine) as session:
        rater_id = session.scalar(select(Rater.id).where(Rater.name == key))
        if rater_id is None:
            return []
        new = _unrecorded_completions(session, rater_id)
    if new:
        def work(session: Session) -> None:  # run again on a conflict: a second tab's row is then seen
            for study_id in _unrecorded_completions(session, rater_id):
                session.add(StudyCompletion(study_id=study_id, rater_id=rater_id, code=_new_code(),
                                            completed_at=utcnow()))
            session.flush()

        retrying(engine, work)
    with session_scope(engine) as session:
        rows = session.execute(
            select(Study.name, StudyCompletion.code, StudyCompletion.completed_at)
            .join(Study, Study.id == StudyCompletion.study_id)
            .where(StudyCompletion.rater_id == rater_id).order_by(StudyCompletion.completed_at, StudyCompletion.id))
        return [{"study": name, "code": code, "completed_at": at} for name, code, at in rows]


def study_completions(engine: Engine, name: str) -> list[dict[str, Any]]:
    """Who finished study ``name``: ``{"rater", "code", "completed_at"}`` each, in order of
    completion (a rater is listed once ``completions_of`` has seen them finish: the Compare page
    asks on every visit)."""
    study = get_study(engine, name)
    with session_scope(engine) as session:
        rows = session.execute(
            select(Rater.name, StudyCompletion.code, StudyCompletion.completed_at)
            .join(Rater, Rater.id == StudyCompletion.rater_id)
            .where(StudyCompletion.study_id == study["id"]).order_by(StudyCompletion.completed_at, StudyCompletion.id))
        return [{"rater": r, "code": c, "completed_at": at} for r, c, at in rows]
