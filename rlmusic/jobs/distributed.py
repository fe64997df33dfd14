"""Generation split across Ray tasks, with the same manifest and seeds as the local path.

``generate_clips(..., executor=RayExecutor(...))``: the batch is cut into chunks as
always (``rlmusic.models.generate.chunks``; chunk ``i`` is sampled with its own seed
``chunk_seed(seed, i)``), the chunks are dealt out in contiguous runs, one Ray task per
run, and each task samples its chunks and writes their clip files (``generate_part``)
into the output folder, which on a cluster must be shared by every node. The driver
writes ``manifest.jsonl`` from the rows the tasks return, in clip order. Same seed, same
melodies, same files as without Ray.
"""

from __future__ import annotations

from pathlib import Path

from rlmusic.jobs.cluster import ray_session
from rlmusic.models.generate import generate_part
from rlmusic.runtime import set_threads


def deal(plan: list, parts: int) -> list[list]:
    """``plan`` cut into at most ``parts`` contiguous runs of near-equal length."""
    parts = max(1, min(parts, len(plan)))
    size, extra = divmod(len(plan), parts)
    runs, start = [], 0
    for k in range(parts):
        end = start + size + (k < extra)
        runs.append(plan[start:end])
        start = end
    return runs


def _part(threads: int, plan: list, part: dict) -> list[dict]:
    set_threads(threads)
    return generate_part(plan=plan, **part)


class RayExecutor:
    """Runs ``generate_part`` over a batch's chunks on Ray: the cluster at ``address``
    (None: a local Ray of ``num_cpus``), ``tasks`` tasks (default: one per CPU of the
    cluster), ``threads`` torch threads per task."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, tasks: int | None = None,
                 threads: int = 1):
        self.address, self.num_cpus, self.tasks, self.threads = address, num_cpus, tasks, threads

    def __call__(self, plan: list[tuple[int, int, int]], part: dict) -> list[dict]:
        part = {**part, "out": str(Path(part["out"]).resolve()),
                "model_dir": None if part["model_dir"] is None else str(Path(part["model_dir"]).resolve())}
        with ray_session(self.address, self.num_cpus) as ray:
            parts = self.tasks or max(1, int(ray.cluster_resources().get("CPU", 1)))
            remote = ray.remote(num_cpus=1)(_part)
            refs = [remote.remote(self.threads, run, part) for run in deal(plan, parts)]
            return [row for rows in ray.get(refs) for row in rows]
