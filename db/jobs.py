"""Fine-tuning jobs and rounds of the loop (which ratings fitted which reward model,
and which reward model tuned which model)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.engine import retrying, session_scope
from db.models import JOB_STATUSES, Comparison, Job, Model, Rating, Round, utcnow

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


def _job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "config": job.config,
        "status": job.status,
        "metrics": job.metrics,
        "error": job.error,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def create_job(engine: Engine, kind: str, config: dict[str, Any]) -> int:
    """Record a new job (status ``queued``); returns its id.

    Args:
        kind: what the job does, e.g. ``"tune"``, ``"reward"``, ``"generate"``.
        config: the full configuration it runs with (JSON-serialisable).
    """
    if not kind or not isinstance(kind, str) or len(kind) > 32:
        raise ValueError(f"job kind {kind!r} must be a non-empty string of at most 32 characters")
    if not isinstance(config, dict):
        raise ValueError(f"job config must be a dict, got {type(config).__name__}")

    def work(session: Session) -> int:
        job = Job(kind=kind, config=config, status="queued")
        session.add(job)
        session.flush()
        return job.id

    return retrying(engine, work)


def update_job(
    engine: Engine,
    job_id: int,
    *,
    status: str | None = None,
    metrics: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    """Update a job. Arguments left None are not changed.

    Args:
        status: one of ``JOB_STATUSES``; ``running`` stamps ``started_at`` (first time),
            ``succeeded``/``failed``/``cancelled`` stamp ``finished_at``.
        metrics: replaces the stored metrics (send the whole dict).
        error: error text (traceback) of a failed job.
    """
    if status is not None and status not in JOB_STATUSES:
        raise ValueError(f"job status {status!r} is not one of {', '.join(JOB_STATUSES)}")

    def work(session: Session) -> None:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise ValueError(f"job id {job_id!r} does not exist")
        now = utcnow()
        if status is not None:
            job.status = status
            if status == "running" and job.started_at is None:
                job.started_at = now
            if status in TERMINAL_STATUSES:
                job.finished_at = now
        if metrics is not None:
            job.metrics = metrics
        if error is not None:
            job.error = error

    retrying(engine, work)


def get_job(engine: Engine, job_id: int) -> dict[str, Any]:
    """One job as a dict (``ValueError`` if there is none)."""
    with session_scope(engine) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise ValueError(f"job id {job_id!r} does not exist")
        return _job_dict(job)


def list_jobs(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The ``limit`` most recent jobs, newest first."""
    with session_scope(engine) as session:
        jobs = session.scalars(select(Job).order_by(Job.id.desc()).limit(limit)).all()
        return [_job_dict(j) for j in jobs]


# ----------------------------------------------------------------------------- rounds


def to_ranges(ids: Iterable[int]) -> list[list[int]]:
    """Sorted unique ids as inclusive ranges: ``[1, 2, 3, 7] -> [[1, 3], [7, 7]]``."""
    ranges: list[list[int]] = []
    for i in sorted(set(ids)):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1][1] = i
        else:
            ranges.append([i, i])
    return ranges


def from_ranges(ranges: Iterable[Iterable[int]]) -> list[int]:
    """Inverse of ``to_ranges``."""
    return [i for lo, hi in ranges for i in range(lo, hi + 1)]


def _missing(session: Session, column, ids: list[int]) -> list[int]:
    found: set[int] = set()
    for start in range(0, len(ids), 5000):
        found.update(session.scalars(select(column).where(column.in_(ids[start : start + 5000]))))
    return sorted(set(ids) - found)


def record_round(
    engine: Engine,
    *,
    reward_model_dir: str,
    rating_ids: Iterable[int],
    comparison_ids: Iterable[int],
    tuned_model_id: int | None = None,
    parent_model_id: int | None = None,
    notes: str | None = None,
) -> int:
    """Record one round of the loop; returns its id.

    Args:
        reward_model_dir: directory of the reward model fitted in this round.
        rating_ids: the star ratings it was fitted on (``star_rows`` ids).
        comparison_ids: the comparisons it was fitted on (``pair_rows`` ids).
        tuned_model_id: the model tuned with that reward model, once known.
        parent_model_id: the model the tuning started from.
        notes: free text.
    """
    rating_ids = sorted(set(int(i) for i in rating_ids))
    comparison_ids = sorted(set(int(i) for i in comparison_ids))

    def work(session: Session) -> int:
        missing = _missing(session, Rating.id, rating_ids)
        if missing:
            raise ValueError(f"rating ids {missing[:10]} do not exist")
        missing = _missing(session, Comparison.id, comparison_ids)
        if missing:
            raise ValueError(f"comparison ids {missing[:10]} do not exist")
        for label, model_id in (("tuned", tuned_model_id), ("parent", parent_model_id)):
            if model_id is not None and session.get(Model, model_id) is None:
                raise ValueError(f"{label} model id {model_id!r} does not exist")
        round_ = Round(
            reward_model_dir=str(reward_model_dir),
            rating_id_ranges=to_ranges(rating_ids),
            comparison_id_ranges=to_ranges(comparison_ids),
            n_ratings=len(rating_ids),
            n_comparisons=len(comparison_ids),
            tuned_model_id=tuned_model_id,
            parent_model_id=parent_model_id,
            notes=notes,
        )
        session.add(round_)
        session.flush()
        return round_.id

    return retrying(engine, work)


def set_round_tuned_model(engine: Engine, round_id: int, tuned_model_id: int) -> None:
    """Attach the model a round's reward model tuned (known only after tuning)."""

    def work(session: Session) -> None:
        round_ = session.get(Round, round_id)
        if round_ is None:
            raise ValueError(f"round id {round_id!r} does not exist")
        if session.get(Model, tuned_model_id) is None:
            raise ValueError(f"tuned model id {tuned_model_id!r} does not exist")
        round_.tuned_model_id = tuned_model_id

    retrying(engine, work)


def list_rounds(engine: Engine) -> list[dict[str, Any]]:
    """All rounds, oldest first, with their rating and comparison ids expanded."""
    with session_scope(engine) as session:
        return [
            {
                "id": r.id,
                "reward_model_dir": r.reward_model_dir,
                "rating_ids": from_ranges(r.rating_id_ranges),
                "comparison_ids": from_ranges(r.comparison_id_ranges),
                "n_ratings": r.n_ratings,
                "n_comparisons": r.n_comparisons,
                "tuned_model_id": r.tuned_model_id,
                "parent_model_id": r.parent_model_id,
                "notes": r.notes,
                "created_at": r.created_at,
            }
            for r in session.scalars(select(Round).order_by(Round.id))
        ]
