"""The worker: takes queued jobs one at a time, runs them, records how they went.

A loop: hand lost jobs back to the queue (``db.requeue_lost``: no heartbeat for
``lost_after_s``), claim the oldest queued job (``db.claim_job``: two workers never take
the same one), run it under a ``JobRecorder`` (heartbeats from a thread, progress,
cancel), finish it. A job's *runner* (one per kind, handed in by ``rlmusic worker``)
returns the job's final metrics, or None when it stopped early; then the job is
cancelled (a cancel was asked) or handed back to the queue (the worker was asked to stop:
Ctrl-C or SIGTERM), and another worker resumes it from its checkpoint. A runner's error
fails its job (one line in ``error``, the traceback in the log tail) and the worker goes on.

The worker announces itself in the workers table (``db.register_worker``): a thread
sends its heartbeat every ``heartbeat_s``, idle or not, naming the job it runs, and it
is marked stopped when the loop ends, also on Ctrl-C or SIGTERM (the Jobs page says from
this whether a queued job will be picked up).
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import db
from rlmusic.jobs.record import HEARTBEAT_S, REPORT_EVERY_S, JobRecorder, error_text, worker_name

# runner(job dict, recorder, device) -> final metrics, or None when stopped before the end
Runner = Callable[[dict[str, Any], JobRecorder, str], "dict[str, Any] | None"]


@dataclass
class WorkerConfig:
    """Options of ``rlmusic worker``."""

    until_empty: bool = False  # exit when no job is queued instead of waiting for more
    max_jobs: int | None = None  # exit after running this many jobs
    device: str = "auto"  # torch device for jobs that do not name one (auto: CUDA when present)
    poll_s: float = 2.0  # seconds between looks at an empty queue
    heartbeat_s: float = HEARTBEAT_S  # seconds between heartbeats of the running job
    report_every_s: float = REPORT_EVERY_S  # at most one progress write per this many seconds
    lost_after_s: float = 60.0  # a running job without heartbeat this long is lost: requeued
    max_attempts: int = 3  # claims of a job before a lost one is failed instead of requeued
    kinds: tuple[str, ...] | None = None  # job kinds this worker takes (default: all it can run)
    name: str | None = None  # worker name in the jobs table (default: host:pid:worker-xxxxxx)

    def validate(self) -> None:
        if self.max_jobs is not None and self.max_jobs < 1:
            raise ValueError(f"--max-jobs must be >= 1, got {self.max_jobs}")
        for key in ("poll_s", "heartbeat_s", "lost_after_s"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be > 0, got {getattr(self, key)}")
        if self.lost_after_s <= 2 * self.heartbeat_s:
            raise ValueError(f"lost_after_s ({self.lost_after_s}) must exceed two heartbeats "
                             f"({self.heartbeat_s} s each), or live jobs would be taken for lost")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")


class Worker:
    """Runs queued jobs of the kinds in ``runners`` (see the module docstring)."""

    def __init__(self, engine, runners: dict[str, Runner], config: WorkerConfig | None = None,
                 say: Callable[[str], None] = print):
        self.engine, self.runners, self.config, self.say = engine, runners, config or WorkerConfig(), say
        self.config.validate()
        unknown = set(self.config.kinds or ()) - set(runners)
        if unknown:
            raise ValueError(f"this worker cannot run jobs of kind {sorted(unknown)}; it runs {sorted(runners)}")
        self.name = self.config.name or worker_name()
        self.kinds = tuple(self.config.kinds or runners)
        self.stopping = False
        self.done: list[tuple[int, str]] = []  # (job id, how it ended), in order
        self.job_id: int | None = None  # the job running now (what the heartbeat says)
        self._beat_now = threading.Event()  # wakes the heartbeat thread (a job started or ended)
        self._quit = threading.Event()

    def run(self) -> list[tuple[int, str]]:
        """The loop; returns (job id, status) of every job this worker ran."""
        c = self.config
        with _sigterm_as_ctrl_c(), self._announced():
            while not self.stopping and (c.max_jobs is None or len(self.done) < c.max_jobs):
                for lost in db.requeue_lost(self.engine, c.lost_after_s, c.max_attempts):
                    self.say(f"worker: job {lost['id']} {lost['message']}")
                job = db.claim_job(self.engine, self.name, self.kinds)
                if job is None:
                    if c.until_empty:
                        break
                    time.sleep(c.poll_s)
                    continue
                self._running(job["id"])
                try:
                    self.done.append((job["id"], self.run_job(job)))
                finally:
                    self._running(None)
        return self.done

    # -- announcing itself in the workers table
    @contextlib.contextmanager
    def _announced(self):
        """Registered, with a heartbeat thread, for the block; marked stopped after it
        (however it ends)."""
        db.register_worker(self.engine, self.name, host=socket.gethostname(), pid=os.getpid(), kinds=self.kinds)
        self._quit.clear()
        beat = threading.Thread(target=self._beat, name="heartbeat-worker", daemon=True)
        beat.start()
        try:
            yield
        finally:
            self._quit.set()
            self._beat_now.set()
            beat.join(timeout=2 * self.config.heartbeat_s + 5)
            try:
                db.worker_stopped(self.engine, self.name)
            except Exception as exc:  # the database is gone too: the heartbeat ages out instead
                print(f"worker {self.name}: could not record its stop: {error_text(exc)}", file=sys.stderr)

    def _running(self, job_id: int | None) -> None:
        self.job_id = job_id
        self._beat_now.set()  # say so now, not at the next heartbeat

    def _beat(self) -> None:
        while True:
            self._beat_now.wait(self.config.heartbeat_s)
            self._beat_now.clear()
            if self._quit.is_set():
                return
            try:
                db.worker_heartbeat(self.engine, self.name, self.job_id)
            except Exception as exc:  # a database hiccup must not kill the worker; the next beat retries
                print(f"worker {self.name}: heartbeat failed: {error_text(exc)}", file=sys.stderr)

    def run_job(self, job: dict[str, Any]) -> str:
        """Run one claimed job to its end; returns how it ended."""
        c = self.config
        recorder = JobRecorder(self.engine, job, self.name, heartbeat_s=c.heartbeat_s,
                               report_every_s=c.report_every_s)
        resumed = f", attempt {job['attempts']}" if job["attempts"] > 1 else ""
        self.say(f"worker: job {job['id']} ({job['kind']}{resumed}) started")
        start = time.monotonic()
        with recorder, contextlib.redirect_stdout(_Tee(sys.stdout, recorder.log)):
            try:
                metrics = self.runners[job["kind"]](job, recorder, c.device)
            except KeyboardInterrupt:  # Ctrl-C / SIGTERM, or a job that stops by raising it
                self.stopping = self.stopping or not recorder.stop_requested
                recorder.stopped("the worker was interrupted")
            except Exception as exc:  # the job fails; the worker goes on with the next
                recorder.fail(exc)
            else:
                if metrics is not None:
                    recorder.succeed(metrics)
                else:
                    if not recorder.stop_requested:  # the run obeyed Ctrl-C / SIGTERM
                        self.stopping = True
                    recorder.stopped("the worker was asked to stop")
        status = recorder.status or "lost"
        detail = f": {db.get_job(self.engine, job['id'])['error']}" if status == "failed" else ""
        self.say(f"worker: job {job['id']} ({job['kind']}) {status} after {time.monotonic() - start:.1f} s{detail}")
        return status


class _Tee(io.TextIOBase):
    """Writes through to ``stream`` and hands every complete line to ``line``: what a job
    prints goes to the worker's output and to the job's log tail."""

    def __init__(self, stream, line: Callable[[str], None]):
        self.stream, self.line, self.buffer = stream, line, ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for done in lines:
            self.line(done)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class _sigterm_as_ctrl_c:  # noqa: N801 - a context manager
    """SIGTERM (a cluster, or ``make run`` stopping the worker) acts as Ctrl-C: a tuning job
    stops cleanly at the next env step and goes back to the queue with its checkpoint.
    It calls what Ctrl-C would call now, and raises ``KeyboardInterrupt`` where SIGINT is
    ignored (a worker started in the background by a script: ``make run``)."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._as_ctrl_c)
        return self

    @staticmethod
    def _as_ctrl_c(signum, frame):
        handler = signal.getsignal(signal.SIGINT)
        if not callable(handler):  # SIG_IGN or SIG_DFL
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
        return False
