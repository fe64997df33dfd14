"""Generation split across Ray tasks, with the same manifest and seeds as the local path.

A batch is cut into chunks (``rlmusic.models.generate.chunks``; chunk ``i`` is sampled
with its own seed ``chunk_seed(seed, i)``), the chunks are dealt out in contiguous runs,
one Ray task per run, and each task samples its chunks and writes their clip files
(``generate_part``) into the output folder, which on a cluster must be shared by every
node. The driver writes ``manifest.jsonl`` from the rows the tasks return, in clip
order. Same seed, same melodies, same files as ``rlmusic generate`` without Ray.
"""

from __future__ import annotations

from pathlib import Path

from rlmusic.jobs.cluster import ray_session
from rlmusic.models.generate import chunks, generate_part, read_primer, write_manifest
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


def _part(threads: int, *args) -> list[dict]:
    set_threads(threads)
    return generate_part(*args)


def generate_clips_ray(
    model_dir: str | Path | None,
    n: int,
    out: str | Path,
    steps: int = 64,
    seed: int = 0,
    temperature: float = 1.0,
    top_k: int | None = None,
    primer: str | Path | None = None,
    primer_track: int | None = None,
    audio_format: str | None = None,
    tempo: float = 120.0,
    instrument: str = "piano",
    device: str = "auto",
    batch_size: int = 512,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    tasks: int | None = None,
    threads: int = 1,
) -> tuple[list[dict], str | None]:
    """``generate_clips`` on Ray (module docstring): same arguments and result, plus the
    cluster ``address`` (None: a local Ray of ``num_cpus``), the number of ``tasks``
    (default: one per CPU of the cluster) and torch ``threads`` per task."""
    if n < 1 or steps < 1:
        raise ValueError(f"need n >= 1 and steps >= 1, got n={n}, steps={steps}")
    plan = chunks(n, batch_size)
    primer_seq, how = read_primer(model_dir, primer, primer_track)
    out = Path(out).resolve()
    model = None if model_dir is None else str(Path(model_dir).resolve())
    with ray_session(address, num_cpus) as ray:
        parts = tasks or max(1, int(ray.cluster_resources().get("CPU", 1)))
        remote = ray.remote(num_cpus=1)(_part)
        refs = [remote.remote(threads, model, run, str(out), steps, seed, temperature, top_k, primer_seq,
                              audio_format, tempo, instrument, device) for run in deal(plan, parts)]
        rows = [row for part in ray.get(refs) for row in part]
    rows.sort(key=lambda row: row["index"])
    write_manifest(out, rows)
    return rows, how
