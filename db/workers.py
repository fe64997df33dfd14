"""Workers announce themselves: a ``rlmusic worker`` registers when it starts, sends a
heartbeat (with the job it is running) every few seconds, and says when it stopped.

A worker is *alive* while it has not stopped and its last heartbeat is at most
``within_s`` seconds old: one killed outright (no chance to say it stopped) drops out
once its heartbeats age. This is what lets the Jobs page say whether a queued job will be
picked up. Which job a worker holds stays the jobs table's business (``db.job_queue``);
the ``job_id`` here is what the worker last said it was running.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.engine import retrying, session_scope
from db.models import Worker, utcnow

ALIVE_WITHIN_S = 30.0  # default: a worker whose heartbeat is older than this is taken for gone


def worker_dict(worker: Worker) -> dict[str, Any]:
    """A worker row as a plain dict, with ``seen_s_ago`` (seconds since its heartbeat)."""
    return {
        "id": worker.id,
        "name": worker.name,
        "host": worker.host,
        "pid": worker.pid,
        "kinds": list(worker.kinds),
        "started_at": worker.started_at,
        "heartbeat_at": worker.heartbeat_at,
        "stopped_at": worker.stopped_at,
        "job_id": worker.job_id,
        "seen_s_ago": max(0.0, (utcnow() - worker.heartbeat_at).total_seconds()),
    }


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError(f"worker name {name!r} must be a non-empty string of at most 200 characters")
    return name


def register_worker(engine: Engine, name: str, *, host: str, pid: int, kinds: Sequence[str]) -> int:
    """A worker starts: record it (or, for a name seen before, start its row afresh);
    returns the row's id."""
    _check_name(name)
    if not isinstance(pid, int) or isinstance(pid, bool) or pid < 0:
        raise ValueError(f"worker pid must be an integer >= 0, got {pid!r}")
    kinds = [str(k) for k in kinds]
    if not kinds:
        raise ValueError("a worker takes at least one job kind")

    def work(session: Session) -> int:
        worker = session.scalars(select(Worker).where(Worker.name == name).with_for_update()).first()
        now = utcnow()
        if worker is None:
            worker = Worker(name=name)
            session.add(worker)
        worker.host, worker.pid, worker.kinds = str(host)[:255], pid, kinds
        worker.started_at = worker.heartbeat_at = now
        worker.stopped_at = worker.job_id = None
        session.flush()
        return worker.id

    return retrying(engine, work)


def worker_heartbeat(engine: Engine, name: str, job_id: int | None = None) -> bool:
    """The worker ``name`` is alive and running ``job_id`` (None: idle). False, changing
    nothing, when no such worker is registered or it has stopped."""

    def work(session: Session) -> bool:
        worker = session.scalars(select(Worker).where(Worker.name == name).with_for_update()).first()
        if worker is None or worker.stopped_at is not None:
            return False
        worker.heartbeat_at, worker.job_id = utcnow(), job_id
        return True

    return retrying(engine, work)


def worker_stopped(engine: Engine, name: str) -> bool:
    """The worker ``name`` ends: stamp ``stopped_at`` (it runs no job any more). False
    when no such worker is registered."""

    def work(session: Session) -> bool:
        worker = session.scalars(select(Worker).where(Worker.name == name).with_for_update()).first()
        if worker is None:
            return False
        now = utcnow()
        worker.heartbeat_at, worker.job_id = now, None
        worker.stopped_at = worker.stopped_at or now
        return True

    return retrying(engine, work)


def get_worker(engine: Engine, name: str) -> dict[str, Any] | None:
    """The worker called ``name`` (alive or not), or None."""
    with session_scope(engine) as session:
        worker = session.scalars(select(Worker).where(Worker.name == name)).first()
        return None if worker is None else worker_dict(worker)


def live_workers(engine: Engine, within_s: float = ALIVE_WITHIN_S, kind: str | None = None) -> list[dict[str, Any]]:
    """Workers alive now: not stopped, a heartbeat in the last ``within_s`` seconds (and
    taking jobs of ``kind`` when given); the most recently heard first."""
    if not within_s > 0:
        raise ValueError(f"within_s must be > 0, got {within_s!r}")
    cutoff = utcnow() - timedelta(seconds=within_s)
    with session_scope(engine) as session:
        query = (select(Worker).where(Worker.stopped_at.is_(None), Worker.heartbeat_at >= cutoff)
                 .order_by(Worker.heartbeat_at.desc(), Worker.id.desc()))
        workers = [worker_dict(w) for w in session.scalars(query)]
    return [w for w in workers if kind is None or kind in w["kinds"]]
