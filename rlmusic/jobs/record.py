"""A job recording itself in the jobs table while it runs.

``JobRecorder`` holds one running job for one worker name: a background thread sends a
heartbeat every ``heartbeat_s`` seconds (with the log lines gathered since), the job
reports progress, metrics and curve points (at most every ``report_every_s`` seconds),
and at the end it is finished as succeeded, failed, cancelled, or handed back to the
queue. Each write hears back whether a cancel was asked (``cancel_requested``) or the
job is no longer this worker's (``lost``: another worker took it after a lost
heartbeat); either makes ``stop_requested`` true, which a tuning run's ``monitor``
(``tune_monitor``) turns into a clean stop at the next rollout.

``command_recorder`` is what ``rlmusic tune`` / ``rlmusic round`` use when run by hand:
the run records itself as a ``cli`` job, or, when the database is not set up, says so in
one line and runs unrecorded (``NullRecorder``).
"""

from __future__ import annotations

import math
import numbers
import os
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import Any

import db
from db.job_queue import CANCEL, LOST

HEARTBEAT_S = 10.0  # seconds between heartbeats of a running job
REPORT_EVERY_S = 2.0  # at most one progress write (and curve point) per this many seconds


def worker_name(tag: str = "worker") -> str:
    """A name no other process shares: ``host:pid:tag-xxxxxx``."""
    return f"{socket.gethostname()}:{os.getpid()}:{tag}-{uuid.uuid4().hex[:6]}"


def finite_numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of ``metrics`` as floats (what a curve point holds)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


def error_text(exc: BaseException) -> str:
    """One line for the job's ``error``: a user's mistake in words (the database's own
    explanation when it has one), anything else as ``Type: message``."""
    explained = db.explain_error(exc)
    if explained is not None:
        return explained
    if isinstance(exc, (ValueError, FileNotFoundError, NotADirectoryError, PermissionError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class JobRecorder:
    """Records the running job ``job`` (a ``db.get_job`` dict held by ``worker``)."""

    def __init__(self, engine, job: dict[str, Any], worker: str, *, heartbeat_s: float = HEARTBEAT_S,
                 report_every_s: float = REPORT_EVERY_S):
        if heartbeat_s <= 0 or report_every_s < 0:
            raise ValueError(f"heartbeat_s must be > 0 and report_every_s >= 0, got {heartbeat_s}, {report_every_s}")
        self.engine, self.job, self.worker = engine, job, worker
        self.job_id, self.origin = job["id"], job["origin"]
        self.heartbeat_s, self.report_every_s = heartbeat_s, report_every_s
        self.cancel_requested = self.lost = self.finished = False
        self.status: str | None = None  # how it ended
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_report = -math.inf

    @property
    def stop_requested(self) -> bool:
        """A cancel was asked, or the job is no longer this worker's: stop cleanly."""
        return self.cancel_requested or self.lost

    # -- heartbeats
    def start(self) -> JobRecorder:
        """Start the heartbeat thread (``with recorder:`` does, and stops it after)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat-job-{self.job_id}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the heartbeat thread."""
        self._quit.set()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> JobRecorder:
        return self.start()

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.stop()
        if exc is not None and not self.finished:
            if isinstance(exc, KeyboardInterrupt):
                self.stopped("interrupted")
            else:
                self.fail(exc)
        return False

    def _beat(self) -> None:
        while not self._quit.wait(self.heartbeat_s):
            try:
                self._heard(db.report(self.engine, self.job_id, self.worker, log=self._take_log()))
            except Exception as exc:  # a database hiccup must not kill the job; the next beat retries
                print(f"job {self.job_id}: heartbeat failed: {error_text(exc)}", file=sys.stderr)

    def _heard(self, state: str) -> None:
        if state == CANCEL:
            self.cancel_requested = True
        elif state == LOST:
            self.lost = True

    # -- reports
    def log(self, line: str) -> None:
        """Add a line to the job's log tail (sent with the next heartbeat or report)."""
        with self._lock:
            self._pending.append(line)

    def _take_log(self) -> list[str]:
        with self._lock:
            lines, self._pending = self._pending, []
        return lines

    def progress(self, fraction: float, metrics: dict[str, Any] | None = None, step: int | None = None,
                 *, force: bool = False) -> bool:
        """Report progress (0..1), the latest metrics and, with ``step``, a curve point;
        at most every ``report_every_s`` seconds unless ``force``. Returns ``stop_requested``."""
        now = time.monotonic()
        if self.lost or (not force and now - self._last_report < self.report_every_s):
            return self.stop_requested
        self._last_report = now
        values = finite_numbers(metrics or {})
        point = (int(step), values) if step is not None and values else None
        self._heard(db.report(self.engine, self.job_id, self.worker, progress=min(1.0, max(0.0, float(fraction))),
                              metrics=None if metrics is None else values, point=point, log=self._take_log()))
        return self.stop_requested

    def tune_monitor(self, status: dict[str, Any]) -> bool:
        """A ``TuneRun`` monitor: reports env steps done and the run's metrics; True
        (stop at the next env step, keeping a checkpoint) once a stop is requested."""
        total = max(1, status["total"])
        return self.progress(status["timesteps"] / total, status["metrics"], step=status["timesteps"])

    # -- the end
    def _finish(self, status: str, **fields: Any) -> str:
        if self.finished:  # ended once already (a round records its own end): keep that
            return self.status or "lost"
        self.finished = True
        if self.lost or not db.finish_job(self.engine, self.job_id, self.worker, status,
                                          log=self._take_log(), **fields):
            self.lost = True
            self.status = "lost"
            return self.status
        self.status = status
        return status

    def succeed(self, metrics: dict[str, Any] | None = None) -> str:
        return self._finish("succeeded", metrics=None if metrics is None else db_safe(dict(metrics)))

    def fail(self, exc: BaseException | str) -> str:
        if isinstance(exc, BaseException):
            self.log("".join(traceback.format_exception(exc)).rstrip())
            return self._finish("failed", error=error_text(exc))
        return self._finish("failed", error=str(exc))

    def stopped(self, reason: str) -> str:
        """The job stopped before its end (its checkpoint kept): ``cancelled`` when a
        cancel was asked or a command ran it; a queued job whose worker stops is handed
        back to the queue for another worker to resume."""
        status = "cancelled" if self.cancel_requested or self.origin != "queue" else "queued"
        self.log(f"stopped ({'cancel requested' if self.cancel_requested else reason})"
                 + ("; back in the queue" if status == "queued" else ""))
        return self._finish(status)


class NullRecorder:
    """Stands in for ``JobRecorder`` when a run is not recorded (no database set up)."""

    job_id = None
    cancel_requested = lost = stop_requested = finished = False
    status: str | None = None

    def __enter__(self) -> NullRecorder:
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def log(self, line: str) -> None:
        pass

    def progress(self, fraction: float, metrics: dict[str, Any] | None = None, step: int | None = None,
                 *, force: bool = False) -> bool:
        return False

    def tune_monitor(self, status: dict[str, Any]) -> bool:
        return False

    def succeed(self, metrics: dict[str, Any] | None = None) -> str:
        self.status = "succeeded"
        return self.status

    def fail(self, exc: BaseException | str) -> str:
        self.status = "failed"
        return self.status

    def stopped(self, reason: str) -> str:
        self.status = "cancelled"
        return self.status


def command_recorder(kind: str, config: dict[str, Any], output_dir: str | None, prog: str,
                     parent_id: int | None = None, origin: str = "cli") -> JobRecorder | NullRecorder:
    """Record a run of ``rlmusic <prog>`` as a running job of the database
    (``RLMUSIC_DATABASE_URL``); when that database is not set up (unreachable, schema
    behind), print one line saying the run is not recorded, and return a ``NullRecorder``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    url = db.database_url()
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database and not os.path.exists(parsed.database):
            raise db.DatabaseError(f"no database at {parsed.database} (create it with `rlmusic db upgrade`)")
        engine = db.get_engine(url)
        db.check_schema(engine)
        name = worker_name(prog)
        job_id = db.create_job(engine, kind, db_safe(config), origin=origin, worker=name, parent_id=parent_id,
                               output_dir=None if output_dir is None else os.path.abspath(output_dir))
        job = db.get_job(engine, job_id)
    except (db.DatabaseError, db.SchemaOutOfDateError, SQLAlchemyError, OSError) as exc:
        reason = error_text(exc).splitlines()[0]
        print(f"{prog}: not recorded in the jobs table: {reason}", file=sys.stderr)
        return NullRecorder()
    print(f"{prog}: recorded as job {job_id} (rlmusic jobs show {job_id})", file=sys.stderr)
    return JobRecorder(engine, job, name)


def db_safe(value: Any) -> Any:
    """``value`` with what JSON cannot hold made plain: paths and other objects as
    strings, non-finite floats as None."""
    if isinstance(value, dict):
        return {str(k): db_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [db_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)
