"""``rlmusic worker``: take queued jobs (``rlmusic jobs submit``) one at a time and run
them, until stopped (or the queue is empty with ``--until-empty``).

Two workers never take the same job (SQLite and PostgreSQL). A job whose worker stopped
sending heartbeats for ``--lost-after`` seconds goes back to the queue and the next worker
resumes it from its last checkpoint. Ctrl-C or SIGTERM stops the running tuning job at the
next env step, hands it back to the queue with its checkpoint, and ends the worker. All
workers of one queue should use the same ``--lost-after`` (docs/jobs.md).
"""

from __future__ import annotations

import argparse

from rlmusic.cli.job_kinds import KINDS, run_job
from rlmusic.cli.options import add_device, add_threads, apply_threads
from rlmusic.jobs.worker import Worker, WorkerConfig

DEFAULTS = WorkerConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--until-empty", action="store_true", help="exit when no job is queued (default: wait for more)")
    parser.add_argument("--max-jobs", type=int, help="exit after running this many jobs")
    add_device(parser)
    add_threads(parser)
    parser.add_argument("--kinds", help=f"comma-separated job kinds to take (default: all of {', '.join(KINDS)})")
    parser.add_argument("--name", help="this worker's name in the jobs table (default: host:pid:worker-xxxxxx)")
    parser.add_argument("--poll", type=float, default=DEFAULTS.poll_s,
                        help=f"seconds between looks at an empty queue (default {DEFAULTS.poll_s:g})")
    parser.add_argument("--heartbeat", type=float, default=DEFAULTS.heartbeat_s,
                        help=f"seconds between heartbeats of the running job (default {DEFAULTS.heartbeat_s:g})")
    parser.add_argument("--report-every", type=float, default=DEFAULTS.report_every_s,
                        help=f"at most one progress write per this many seconds (default {DEFAULTS.report_every_s:g})")
    parser.add_argument("--lost-after", type=float, default=DEFAULTS.lost_after_s,
                        help="a running job without heartbeat this many seconds is lost and goes back to the "
                             f"queue (default {DEFAULTS.lost_after_s:g})")
    parser.add_argument("--max-attempts", type=int, default=DEFAULTS.max_attempts,
                        help=f"claims of a job before a lost one is failed instead (default {DEFAULTS.max_attempts})")


def main(args: argparse.Namespace) -> int:
    import db

    apply_threads(args)
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip()) if args.kinds else None
    config = WorkerConfig(until_empty=args.until_empty, max_jobs=args.max_jobs, device=args.device,
                          poll_s=args.poll, heartbeat_s=args.heartbeat, report_every_s=args.report_every,
                          lost_after_s=args.lost_after, max_attempts=args.max_attempts, kinds=kinds, name=args.name)
    config.validate()
    engine = db.get_engine()
    db.check_schema(engine)
    worker = Worker(engine, {kind: run_job for kind in KINDS}, config, say=lambda line: print(line, flush=True))
    print(f"worker {worker.name}: taking {', '.join(worker.kinds)} jobs"
          + (" until the queue is empty" if config.until_empty else ""), flush=True)
    done = worker.run()
    counts: dict[str, int] = {}
    for _, status in done:
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
    print(f"worker {worker.name}: ran {len(done)} jobs ({summary})", flush=True)
    return 0
