"""``rlmusic jobs``: the job queue.

``jobs submit tune|round|generate [that command's options]`` checks the options as the
command would and queues the job (last line: its id); ``rlmusic worker`` runs it.
``jobs list`` shows the latest jobs, ``jobs show ID`` one job (status, progress, metrics,
log tail, output folder), ``jobs cancel ID`` cancels a queued job at once and stops a
running one at its next rollout (its checkpoint is kept: ``rlmusic tune --out DIR --resume``).
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import Any

from rlmusic.cli.job_kinds import KINDS, check, option_value
from rlmusic.jobs.record import db_safe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = sub.add_parser("submit", help="queue a job: tune, round or generate, with that command's options")
    submit.add_argument("kind", choices=KINDS, help="the command the job runs")
    submit.add_argument("options", nargs=argparse.REMAINDER,
                        help="its options, as for `rlmusic KIND` (--out defaults to $RLMUSIC_HOME/jobs/job-ID)")
    listing = sub.add_parser("list", help="the latest jobs, newest first")
    listing.add_argument("--status", help="only jobs of this status (queued, running, succeeded, failed, cancelled)")
    listing.add_argument("--limit", type=int, default=20, help="how many jobs (default 20)")
    listing.add_argument("--json", action="store_true", help="one JSON object per job instead of a table")
    show = sub.add_parser("show", help="one job: status, progress, metrics, log tail, output folder")
    show.add_argument("id", type=int, help="the id of the job to show (rlmusic jobs list)")
    show.add_argument("--json", action="store_true", help="the job as one JSON object")
    show.add_argument("--log-lines", type=int, default=20, help="lines of the log tail to print (default 20)")
    cancel = sub.add_parser("cancel", help="cancel a queued job; stop a running one at its next rollout")
    cancel.add_argument("id", type=int, help="the id of the job to cancel (rlmusic jobs list)")


def engine():
    import db

    eng = db.get_engine()
    db.check_schema(eng)
    return eng


def submit(kind: str, options: list[str]) -> int:
    import db

    eng = engine()
    config = check(kind, options)
    job_id = db.create_job(eng, kind, db_safe(config), origin="queue", output_dir=option_value(config["argv"], "--out"))
    out = db.get_job(eng, job_id)["output_dir"]
    print(f"jobs: queued {kind} job {job_id} (output {out}); run it with `rlmusic worker`")
    print(job_id)
    return 0


def age(when: datetime | None) -> str:
    if when is None:
        return "-"
    seconds = (datetime.now(UTC) - when).total_seconds()
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}min ago" if seconds < 7200 \
        else f"{seconds / 3600:.1f}h ago"


def progress_text(job: dict[str, Any]) -> str:
    return "-" if job["progress"] is None else f"{100 * job['progress']:.0f}%"


def list_jobs(status: str | None, limit: int, as_json: bool) -> int:
    import db

    jobs = db.list_jobs(engine(), limit=limit, status=status)
    if as_json:
        for job in jobs:
            print(json.dumps(job, default=str))
        return 0
    if not jobs:
        print("jobs: none" + (f" {status}" if status else "") + " (rlmusic jobs submit ...)")
        return 0
    print(f"{'id':>5}  {'kind':<8} {'status':<10} {'progress':>8}  {'origin':<6} {'created':<12} output")
    for job in jobs:
        status_text = job["status"] + ("*" if job["cancel_requested"] and job["status"] == "running" else "")
        print(f"{job['id']:>5}  {job['kind']:<8} {status_text:<10} {progress_text(job):>8}  {job['origin']:<6} "
              f"{age(job['created_at']):<12} {job['output_dir'] or '-'}")
    if any(j["cancel_requested"] and j["status"] == "running" for j in jobs):
        print("(* cancel requested: stops at its next rollout)")
    return 0


def show(job_id: int, as_json: bool, log_lines: int) -> int:
    import db

    eng = engine()
    job = db.get_job(eng, job_id)
    if as_json:
        print(json.dumps({**job, "points": len(db.job_points(eng, job_id))}, default=str))
        return 0
    lines = [
        f"job {job['id']}: {job['kind']} {job['status']}"
        + (" (cancel requested)" if job["cancel_requested"] and job["status"] == "running" else ""),
        f"  progress      {progress_text(job)}",
        f"  output        {job['output_dir'] or '-'}",
        f"  origin        {job['origin']} (attempts {job['attempts']})",
        f"  worker        {job['worker'] or '-'} (heartbeat {age(job['heartbeat_at'])})",
        f"  created       {job['created_at']:%Y-%m-%d %H:%M:%S} UTC",
        f"  started       {job['started_at']:%Y-%m-%d %H:%M:%S} UTC" if job["started_at"] else "  started       -",
        f"  finished      {job['finished_at']:%Y-%m-%d %H:%M:%S} UTC" if job["finished_at"] else "  finished      -",
    ]
    if job["config"].get("argv") is not None:
        lines.append(f"  options       {' '.join(job['config']['argv'])}")
    if job["parent_id"] is not None:
        lines.append(f"  sweep         job {job['parent_id']}")
    if job["metrics"]:
        lines.append("  metrics")
        for key, value in sorted(job["metrics"].items()):
            if isinstance(value, (int, float, str)) or value is None:
                text = f"{value:.4g}" if isinstance(value, float) else str(value)
                lines.append(f"    {key:<40} {text}")
    if job["error"]:
        lines.append(f"  error         {job['error']}")
    tail = (job["log_tail"] or "").splitlines()[-log_lines:] if log_lines > 0 else []
    if tail:
        lines.append("  log (last lines)")
        lines += [f"    {line}" for line in tail]
    print("\n".join(lines))
    return 0


def cancel(job_id: int) -> int:
    import db

    status = db.request_cancel(engine(), job_id)
    if status == "cancelled":
        print(f"jobs: job {job_id} cancelled (it had not started)")
    else:
        print(f"jobs: job {job_id} asked to stop; it stops at its next rollout and keeps its checkpoint")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.action == "submit":
        return submit(args.kind, args.options)
    if args.action == "list":
        if args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
        return list_jobs(args.status, args.limit, args.json)
    if args.action == "show":
        return show(args.id, args.json, args.log_lines)
    return cancel(args.id)
