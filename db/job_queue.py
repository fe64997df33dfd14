"""The job queue: workers claim queued jobs, hold them with heartbeats, report progress,
curves and log lines, and finish them; lost jobs go back to the queue; cancellation.

A claim is safe under concurrent workers on both backends: on PostgreSQL the candidate
row is locked with ``FOR UPDATE SKIP LOCKED`` (a second worker skips it and takes the
next), on SQLite the claim runs in a ``BEGIN IMMEDIATE`` transaction (one writer at a
time); on both the row is switched with ``UPDATE ... WHERE status = 'queued'`` and the
claim counts only when that changed one row. Every later write of the holder names the
worker, and is refused (``"lost"``) once the job is no longer its own, so a worker that
was presumed dead and comes back never writes over the job's new holder.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from db.engine import retrying, session_scope
from db.jobs import TERMINAL_STATUSES, job_dict
from db.models import Job, JobPoint, utcnow

LOG_TAIL_LINES = 200  # a job keeps this many of its last log lines
LOG_TAIL_CHARS = 20_000  # and at most this many characters of them
DEFAULT_MAX_ATTEMPTS = 3  # claims of one job before a lost one is failed instead of requeued

# What a holder hears back from ``report``: go on, stop cleanly (cancel asked), or stop
# without writing anything more (the job is no longer its own).
OK, CANCEL, LOST = "ok", "cancel", "lost"


def _locked(session: Session, query):
    """``query`` with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (SQLite holds the write lock)."""
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def _append_log(job: Job, lines: Sequence[str] | None) -> None:
    if not lines:
        return
    kept = ((job.log_tail or "").splitlines() + [line.rstrip("\n") for line in lines])[-LOG_TAIL_LINES:]
    text = "\n".join(kept)
    job.log_tail = text[-LOG_TAIL_CHARS:]


def claim_job(engine: Engine, worker: str, kinds: Sequence[str] | None = None, *,
              job_id: int | None = None) -> dict[str, Any] | None:
    """Take the oldest queued job of the queue (of ``kinds`` when given) for ``worker``:
    it becomes ``running``, held by ``worker``, its ``attempts`` counted. None when none
    is queued. With ``job_id``: take that job only (a sweep's trial taking its own row)."""
    if not worker:
        raise ValueError("a worker needs a non-empty name to claim jobs")

    def work(session: Session) -> dict[str, Any] | None:
        query = select(Job.id).where(Job.status == "queued").order_by(Job.id).limit(1)
        query = query.where(Job.id == job_id) if job_id is not None else query.where(Job.origin == "queue")
        if kinds:
            query = query.where(Job.kind.in_(list(kinds)))
        found = session.scalars(_locked(session, query)).first()
        if found is None:
            return None
        now = utcnow()
        claimed = session.execute(
            update(Job).where(Job.id == found, Job.status == "queued")
            .values(status="running", worker=worker, heartbeat_at=now, attempts=Job.attempts + 1,
                    cancel_requested=False, finished_at=None)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:
            return None  # another worker switched it first (cannot happen under the locks)
        job = session.get(Job, found, populate_existing=True)
        if job.started_at is None:
            job.started_at = now
        _append_log(job, [f"claimed by {worker} (attempt {job.attempts})"])
        return job_dict(job)

    return retrying(engine, work)


def report(
    engine: Engine,
    job_id: int,
    worker: str,
    *,
    progress: float | None = None,
    metrics: dict[str, Any] | None = None,
    point: tuple[int, dict[str, Any]] | None = None,
    log: Sequence[str] | None = None,
) -> str:
    """The holder's heartbeat, with what it has to report; returns ``OK``, ``CANCEL``
    (a cancel was asked: stop cleanly) or ``LOST`` (not its job any more: write nothing).

    Args:
        progress: fraction done, 0..1.
        metrics: replaces the job's latest metrics.
        point: ``(step, {metric: value})`` appended to the job's curves.
        log: lines appended to the job's log tail.
    """
    if progress is not None and not 0.0 <= progress <= 1.0:
        raise ValueError(f"job progress must be in [0, 1], got {progress!r}")

    def work(session: Session) -> str:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status != "running" or job.worker != worker:
            return LOST
        job.heartbeat_at = utcnow()
        if progress is not None:
            job.progress = float(progress)
        if metrics is not None:
            job.metrics = metrics
        if point is not None:
            session.add(JobPoint(job_id=job_id, step=int(point[0]), values=dict(point[1])))
        _append_log(job, log)
        return CANCEL if job.cancel_requested else OK

    return retrying(engine, work)


def finish_job(
    engine: Engine,
    job_id: int,
    worker: str,
    status: str,
    *,
    metrics: dict[str, Any] | None = None,
    error: str | None = None,
    log: Sequence[str] | None = None,
) -> bool:
    """The holder ends its job: ``succeeded``, ``failed``, ``cancelled``, or ``queued``
    (handed back, e.g. its worker was asked to stop: another worker resumes it). Returns
    False, changing nothing, when the job is no longer held by ``worker``."""
    if status not in (*TERMINAL_STATUSES, "queued"):
        raise ValueError(f"a job is finished as one of {', '.join(TERMINAL_STATUSES)} or queued, not {status!r}")

    def work(session: Session) -> bool:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status != "running" or job.worker != worker:
            return False
        job.status = status
        if metrics is not None:
            job.metrics = metrics
        if error is not None:
            job.error = error
        if status == "succeeded":
            job.progress = 1.0
        if status == "queued":
            job.worker = job.heartbeat_at = None
        else:
            job.finished_at = utcnow()
        _append_log(job, log)
        return True

    return retrying(engine, work)


def request_cancel(engine: Engine, job_id: int) -> str:
    """Cancel a job: a queued one is ``cancelled`` at once; a running one is asked to stop
    (its holder stops at the next rollout and keeps its checkpoint). Returns the status
    now: ``cancelled`` or ``running``. A finished job raises ``ValueError``."""

    def work(session: Session) -> str:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None:
            raise ValueError(f"job id {job_id!r} does not exist")
        if job.status in TERMINAL_STATUSES:
            raise ValueError(f"job {job_id} is already {job.status}")
        if job.status == "queued":
            job.status, job.finished_at = "cancelled", utcnow()
            _append_log(job, ["cancelled before it started"])
        else:
            job.cancel_requested = True
            _append_log(job, ["cancel requested"])
        return job.status

    return retrying(engine, work)


def requeue_lost(
    engine: Engine, lost_after_s: float, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> list[dict[str, Any]]:
    """Running jobs whose holder sent no heartbeat for ``lost_after_s`` seconds: a queued
    job goes back to the queue (its next worker resumes it from its last checkpoint)
    unless it was cancelled or has had ``max_attempts`` claims; a job a command or a sweep
    ran is failed. Returns ``{"id", "status", "message"}`` for each."""
    if lost_after_s <= 0:
        raise ValueError(f"lost_after_s must be > 0, got {lost_after_s!r}")
    cutoff = utcnow() - timedelta(seconds=lost_after_s)

    def work(session: Session) -> list[dict[str, Any]]:
        query = select(Job).where(Job.status == "running", Job.heartbeat_at < cutoff).order_by(Job.id)
        changed = []
        for job in session.scalars(_locked(session, query)).all():
            message = (f"lost: worker {job.worker} sent no heartbeat since "
                       f"{job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC")
            if job.origin == "queue" and not job.cancel_requested and job.attempts < max_attempts:
                job.status, job.worker, job.heartbeat_at = "queued", None, None
                message += "; back in the queue"
            else:
                job.status, job.finished_at = ("cancelled" if job.cancel_requested else "failed"), utcnow()
                if job.origin == "queue" and not job.cancel_requested:
                    message += f"; failed after {job.attempts} attempts"
                job.error = job.error or message
            _append_log(job, [message])
            changed.append({"id": job.id, "status": job.status, "message": message})
        return changed

    return retrying(engine, work)


def job_points(engine: Engine, job_id: int) -> list[dict[str, Any]]:
    """A job's curves: one dict per reported point, ``step`` then its metrics, in order."""
    with session_scope(engine) as session:
        rows = session.scalars(select(JobPoint).where(JobPoint.job_id == job_id).order_by(JobPoint.id))
        return [{"step": p.step, **p.values} for p in rows]
