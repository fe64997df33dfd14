"""Ratings database throughput and queue latency (prints figures; not a timed test).

Measures, on a fresh database:
  - clips enqueued per second (bulk ``enqueue_clips``) while filling the queue;
  - star ratings written per second by one writer, and by ``--writers`` concurrent
    writers (threads, then forked processes), each ``add_rating`` one transaction;
  - ``next_clip`` latency (median, p95) with ``--clips`` clips in the queue, for a rater
    who has already rated part of it while others have rated more; also for
    ``order="priority"`` and for ``next_pair``.

    python benchmarks/bench_db.py                       # SQLite file in a temp dir
    python benchmarks/bench_db.py --url postgresql+psycopg://postgres@127.0.0.1:5432/test

With ``--import-rows N`` it measures instead a large ``rlmusic ratings import`` (N star
rows over ``--import-clips`` clips) on SQLite and, with ``--pg-url``, on PostgreSQL, side
by side in one run, while another process rates like the listening app (one rating every
0.1 s with the app's bound, ``timeout_s``): import time, rows per second, the ratio of
the two backends, and how long each of the app's ratings waited.

    python benchmarks/bench_db.py --import-rows 200000 --pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test

For PostgreSQL the run happens in a new schema (dropped at the end), so any database
may be given. Absolute figures depend on the disk (commit = fsync) and the CPU load.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

import db
import db.bulk


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default=None, help="database URL (default: a temp SQLite file)")
    p.add_argument("--clips", type=int, default=100_000, help="clips in the queue")
    p.add_argument("--steps", type=int, default=64, help="tokens per clip")
    p.add_argument(
        "--background",
        type=int,
        default=20_000,
        help="ratings by other raters before measuring (spreads n_ratings)",
    )
    p.add_argument(
        "--already",
        type=int,
        default=2_000,
        help="clips the measured rater has rated before measuring",
    )
    p.add_argument("--ratings", type=int, default=2_000, help="ratings of the single writer")
    p.add_argument("--writers", type=int, default=8, help="concurrent writers")
    p.add_argument("--per-writer", type=int, default=500, help="ratings per concurrent writer")
    p.add_argument("--queries", type=int, default=300, help="next_clip calls measured")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--import-rows", type=int, default=0,
                   help="measure a CSV import of this many star rows instead (0: the queue benchmark)")
    p.add_argument("--import-clips", type=int, default=20_000, help="clips the imported rows rate")
    p.add_argument("--batch-rows", type=int, default=db.bulk.BATCH_ROWS,
                   help="rows per import transaction (0: the whole file in one)")
    p.add_argument("--app-timeout", type=float, default=10.0,
                   help="the app rater's bound on a rating's wait, seconds (a longer wait is counted busy)")
    p.add_argument("--pg-url", default=None, help="with --import-rows: also measure on this PostgreSQL")
    return p.parse_args()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _writer(url: str, rater: str, clip_ids: list[int], seed: int) -> None:
    engine = db.get_engine(url)
    rng = random.Random(seed)
    for clip_id in clip_ids:
        db.add_rating(engine, rater, clip_id, rng.randint(1, 5))


def concurrent_rate(url: str, clip_ids: list[int], writers: int, per: int, kind: str) -> float:
    """Ratings per second of ``writers`` writers, each rating ``per`` distinct clips."""
    tag = uuid.uuid4().hex[:6]
    jobs = [(url, f"{kind}{tag}_{k}", clip_ids[k * per : (k + 1) * per], k) for k in range(writers)]
    if kind == "threads":
        workers = [threading.Thread(target=_writer, args=job) for job in jobs]
    else:
        ctx = multiprocessing.get_context("fork")
        workers = [ctx.Process(target=_writer, args=job) for job in jobs]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    if kind == "processes":
        failed = [w.exitcode for w in workers if w.exitcode != 0]
        assert not failed, f"writer processes failed: {failed}"
    return writers * per / elapsed


def run(url: str, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    db.upgrade(url)
    engine = db.get_engine(url)
    backend = make_url(url).get_backend_name()
    print(f"backend: {backend}   clips: {args.clips:,}   steps: {args.steps}")

    prior = db.register_model(engine, name="prior", directory="/bench/prior", kind="prior")
    tuned = db.register_model(
        engine, name="tuned", directory="/bench/tuned", kind="tuned", parent_id=prior
    )
    start = time.perf_counter()
    clip_ids: list[int] = []
    batch = 5_000
    for i in range(0, args.clips, batch):
        n = min(batch, args.clips - i)
        clips = [
            {
                "tokens": [rng.randrange(39) for _ in range(args.steps)],
                "midi_path": f"clips/{i + k:06d}.mid",
                "seed": i + k,
            }
            for k in range(n)
        ]
        clip_ids += db.enqueue_clips(engine, prior if (i // batch) % 2 == 0 else tuned, clips)
    elapsed = time.perf_counter() - start
    print(f"enqueue_clips          {args.clips / elapsed:10,.0f} clips/s")

    # Background: other raters have rated the oldest part of the queue unevenly.
    start = time.perf_counter()
    for r in range(args.background):
        clip = clip_ids[int(rng.random() ** 2 * len(clip_ids) * 0.3)]
        db.add_rating(engine, f"other{r % 50}", clip, rng.randint(1, 5))
    if args.background:
        elapsed = time.perf_counter() - start
        print(f"background ratings     {args.background / elapsed:10,.0f} ratings/s (setup)")

    # Single writer: distinct fresh clips, one transaction each.
    fresh = clip_ids[len(clip_ids) // 2 :]
    start = time.perf_counter()
    for clip in fresh[: args.ratings]:
        db.add_rating(engine, "single", clip, rng.randint(1, 5))
    elapsed = time.perf_counter() - start
    print(f"add_rating, 1 writer   {args.ratings / elapsed:10,.0f} ratings/s")

    pool = fresh[args.ratings :]
    for kind in ("threads", "processes"):
        need = args.writers * args.per_writer
        rate = concurrent_rate(url, pool[:need], args.writers, args.per_writer, kind)
        print(f"add_rating, {args.writers} {kind:9s} {rate:8,.0f} ratings/s")

    # The measured rater has rated the clips next_clip would give first (worst case for
    # the index walk: it must skip them), then rates what it is shown.
    for clip in clip_ids[: args.already]:
        db.add_rating(engine, "me", clip, 3)
    latencies = []
    for _ in range(args.queries):
        t = time.perf_counter()
        clip = db.next_clip(engine, "me")
        latencies.append(time.perf_counter() - t)
        db.add_rating(engine, "me", clip.id, rng.randint(1, 5))
    print(
        f"next_clip (fewest)     median {statistics.median(latencies) * 1e3:6.2f} ms"
        f"   p95 {percentile(latencies, 0.95) * 1e3:6.2f} ms"
    )

    db.set_clip_priority(engine, {c: rng.random() for c in rng.sample(clip_ids, 5_000)})
    latencies = []
    for _ in range(args.queries):
        t = time.perf_counter()
        clip = db.next_clip(engine, "me", order="priority")
        latencies.append(time.perf_counter() - t)
        db.add_rating(engine, "me", clip.id, rng.randint(1, 5))
    print(
        f"next_clip (priority)   median {statistics.median(latencies) * 1e3:6.2f} ms"
        f"   p95 {percentile(latencies, 0.95) * 1e3:6.2f} ms"
    )

    latencies = []
    for _ in range(max(1, args.queries // 3)):
        t = time.perf_counter()
        a, b = db.next_pair(engine, "me")
        latencies.append(time.perf_counter() - t)
        db.add_comparison(engine, "me", a.id, b.id, rng.choice(["a", "b", "tie"]))
    print(
        f"next_pair              median {statistics.median(latencies) * 1e3:6.2f} ms"
        f"   p95 {percentile(latencies, 0.95) * 1e3:6.2f} ms"
    )
    s = db.stats(engine)
    print(f"final: {s['clips']:,} clips, {s['ratings']:,} ratings, {s['raters']} raters")


# ----------------------------------------------------------------------------- large imports


def app_rater(url: str, clip_ids: list[int], timeout_s: float, ready, stop, results) -> None:
    """Rate like the listening app until ``stop``: one rating every 0.1 s, each bounded by
    ``timeout_s``; sends back each rating's wait (None: gave up, the database was busy)."""
    engine = db.get_engine(url)
    engine.connect().close()
    waits = []
    ready.set()
    for clip in clip_ids:
        if stop.is_set():
            break
        start = time.perf_counter()
        try:
            db.add_rating(engine, "app rater", clip, 3, timeout_s=timeout_s)
            waits.append(time.perf_counter() - start)
        except db.DatabaseBusyError:
            waits.append(None)
        time.sleep(0.1)
    results.send(waits)


def import_benchmark(url: str, args: argparse.Namespace, folder: Path) -> dict:
    """One import of ``--import-rows`` star rows with an app rater alongside; the figures."""
    rng = random.Random(args.seed)
    db.upgrade(url)
    engine = db.get_engine(url)
    model = db.register_model(engine, name="prior", directory="/bench/prior", kind="prior")
    clips: list[int] = []
    for i in range(0, args.import_clips, 5_000):
        n = min(5_000, args.import_clips - i)
        clips += db.enqueue_clips(engine, model, [
            {"tokens": [rng.randrange(39) for _ in range(args.steps)], "midi_path": f"clips/{i + k:06d}.mid"}
            for k in range(n)])
    raters = max(1, -(-args.import_rows // len(clips)))
    pairs = [(c, r) for r in range(raters) for c in clips][: args.import_rows]
    rng.shuffle(pairs)
    source = folder / f"import-{uuid.uuid4().hex[:6]}.csv"
    source.write_text("clip_id,rater,stars\n" + "".join(f"{c},rater {r},{rng.randint(1, 5)}\n" for c, r in pairs))
    ctx = multiprocessing.get_context("fork")
    ready, stop = ctx.Event(), ctx.Event()
    receive, send = ctx.Pipe(duplex=False)
    targets = rng.sample(clips, min(len(clips), 2_000))
    rater = ctx.Process(target=app_rater, args=(url, targets, args.app_timeout, ready, stop, send))
    rater.start()
    ready.wait(60)
    start = time.perf_counter()
    counts = db.import_ratings(engine, source, batch_rows=args.batch_rows)
    elapsed = time.perf_counter() - start
    stop.set()
    waits = receive.recv()
    rater.join()
    assert counts["inserted"] == len(pairs), counts
    done = [w for w in waits if w is not None]
    return {"seconds": elapsed, "rows_per_s": len(pairs) / elapsed, "ratings": len(waits),
            "busy": len(waits) - len(done), "median": statistics.median(done) if done else float("nan"),
            "p95": percentile(done, 0.95) if done else float("nan"), "max": max(done) if done else float("nan")}


def run_import(args: argparse.Namespace) -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        results["SQLite"] = import_benchmark(url, args, Path(tmp))
        db.dispose_engine(url)
        if args.pg_url:
            with postgres_schema(args.pg_url) as pg:
                results["PostgreSQL"] = import_benchmark(pg, args, Path(tmp))
    batches = "one transaction" if not args.batch_rows else f"batches of {args.batch_rows:,} rows"
    print(f"import of {args.import_rows:,} star rows over {args.import_clips:,} clips, {batches}; "
          f"an app rater alongside (a rating every 0.1 s, bound {args.app_timeout:g} s)")
    names = list(results)
    print(f"{'':34s}" + "".join(f"{n:>16s}" for n in names))
    rows = [("import time (s)", "seconds", "{:16.1f}"), ("rows per second", "rows_per_s", "{:16,.0f}"),
            ("app ratings during the import", "ratings", "{:16d}"), ("app ratings that gave up (busy)", "busy", "{:16d}"),
            ("app rating wait, median (ms)", "median", "{:16.1f}"), ("app rating wait, p95 (ms)", "p95", "{:16.1f}"),
            ("app rating wait, max (ms)", "max", "{:16.1f}")]
    for label, key, fmt in rows:
        scale = 1e3 if label.endswith("(ms)") else 1
        print(f"{label:34s}" + "".join(fmt.format(results[n][key] * scale) for n in names))
    if "PostgreSQL" in results:
        ratio = results["PostgreSQL"]["seconds"] / results["SQLite"]["seconds"]
        print(f"PostgreSQL / SQLite import time: {ratio:.2f}x")


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """The URL of a new schema of the PostgreSQL database ``base_url``, dropped at the end."""
    name = f"rlmusic_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {name}")
    separator = "&" if "?" in base_url else "?"
    url = f"{base_url}{separator}options={quote(f'-csearch_path={name}')}"
    try:
        yield url
    finally:
        db.dispose_engine(url)
        with admin.connect() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        admin.dispose()


def main() -> None:
    args = parse_args()
    if args.import_rows:
        run_import(args)
        return
    if args.url is None:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            run(url, args)
            db.dispose_engine(url)
        return
    if make_url(args.url).get_backend_name() != "postgresql":
        run(args.url, args)
        return
    with postgres_schema(args.url) as url:
        run(url, args)


if __name__ == "__main__":
    main()
