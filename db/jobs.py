"""Fine-tuning jobs and rounds of the loop (which ratings fitted which reward model,
and which reward model tuned which model)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.engine import retrying, rlmusic_home, session_scope
from db.models import JOB_ORIGINS, JOB_STATUSES, Comparison, Job, Model, Rating, Round, utcnow

TERMINAL_STATUSES = ("succeeded", "failed", "cancelled")


def job_dict(job: Job) -> dict[str, Any]:
    """A job row as a plain dict (every column)."""
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
        "origin": job.origin,
        "output_dir": job.output_dir,
        "progress": job.progress,
        "worker": job.worker,
        "heartbeat_at": job.heartbeat_at,
        "attempts": job.attempts,
        "cancel_requested": job.cancel_requested,
        "log_tail": job.log_tail,
        "parent_id": job.parent_id,
    }


def create_job(
    engine: Engine,
    kind: str,
    config: dict[str, Any],
    *,
    origin: str = "cli",
    output_dir: str | None = None,
    parent_id: int | None = None,
    worker: str | None = None,
) -> int:
    """Record a new job; returns its id. It is ``queued`` for a worker to claim, or, when
    ``worker`` is given, ``running`` at once under that name (a command running itself).

    Args:
        kind: what the job does, e.g. ``"tune"``, ``"round"``, ``"generate"``, ``"sweep"``.
        config: the full configuration it runs with (JSON-serialisable).
        origin: one of ``JOB_ORIGINS``: ``queue`` (a worker runs it and requeues it when
            its worker is lost), ``cli`` (a command run by hand), ``sweep`` (a sweep's trial).
        output_dir: the folder it writes to (absolute); a queued job given none writes
            to ``$RLMUSIC_HOME/jobs/job-NNNNNN`` (``default_output_dir``).
        parent_id: the job this one belongs to (a sweep's trials).
        worker: the name of whoever runs it now (then it starts ``running``).
    """
    if not kind or not isinstance(kind, str) or len(kind) > 32:
        raise ValueError(f"job kind {kind!r} must be a non-empty string of at most 32 characters")
    if not isinstance(config, dict):
        raise ValueError(f"job config must be a dict, got {type(config).__name__}")
    if origin not in JOB_ORIGINS:
        raise ValueError(f"job origin {origin!r} is not one of {', '.join(JOB_ORIGINS)}")

    def work(session: Session) -> int:
        if parent_id is not None and session.get(Job, parent_id) is None:
            raise ValueError(f"parent job id {parent_id!r} does not exist")
        job = Job(kind=kind, config=config, status="queued", origin=origin,
                  output_dir=None if output_dir is None else str(output_dir), parent_id=parent_id,
                  attempts=0, cancel_requested=False)
        if worker is not None:
            now = utcnow()
            job.status, job.worker, job.started_at, job.heartbeat_at, job.attempts = (
                "running", worker, now, now, 1)
        session.add(job)
        session.flush()
        if job.output_dir is None and origin == "queue":
            job.output_dir = str(default_output_dir(job.id))
        return job.id

    return retrying(engine, work)


def default_output_dir(job_id: int) -> Path:
    """Where a queued job given no output folder writes: ``$RLMUSIC_HOME/jobs/job-NNNNNN``
    (on a cluster ``RLMUSIC_HOME`` is a folder every machine shares)."""
    return rlmusic_home() / "jobs" / f"job-{job_id:06d}"


def update_job(
    engine: Engine,
    job_id: int,
    *,
    status: str | None = None,
    metrics: dict[str, Any] | None = None,
    error: str | None = None,
    progress: float | None = None,
    output_dir: str | None = None,
) -> None:
    """Update a job. Arguments left None are not changed.

    Args:
        status: one of ``JOB_STATUSES``; ``running`` stamps ``started_at`` (first time),
            ``succeeded``/``failed``/``cancelled`` stamp ``finished_at``.
        metrics: replaces the stored metrics (send the whole dict).
        error: error text (traceback) of a failed job.
        progress: fraction done, 0..1.
        output_dir: the folder the job writes to.
    """
    if status is not None and status not in JOB_STATUSES:
        raise ValueError(f"job status {status!r} is not one of {', '.join(JOB_STATUSES)}")
    if progress is not None and not 0.0 <= progress <= 1.0:
        raise ValueError(f"job progress must be in [0, 1], got {progress!r}")

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
        if progress is not None:
            job.progress = float(progress)
        if output_dir is not None:
            job.output_dir = str(output_dir)

    retrying(engine, work)


def get_job(engine: Engine, job_id: int) -> dict[str, Any]:
    """One job as a dict (``ValueError`` if there is none)."""
    with session_scope(engine) as session:
        job = session.get(Job, job_id)
        if job is None:
            raise ValueError(f"job id {job_id!r} does not exist")
        return job_dict(job)


def list_jobs(
    engine: Engine,
    limit: int = 20,
    *,
    status: str | None = None,
    parent_id: int | None = None,
) -> list[dict[str, Any]]:
    """The ``limit`` most recent jobs, newest first; only those of ``status`` and of the
    sweep ``parent_id`` when given."""
    if status is not None and status not in JOB_STATUSES:
        raise ValueError(f"job status {status!r} is not one of {', '.join(JOB_STATUSES)}")
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status)
    if parent_id is not None:
        query = query.where(Job.parent_id == parent_id)
    with session_scope(engine) as session:
        return [job_dict(j) for j in session.scalars(query).all()]


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
