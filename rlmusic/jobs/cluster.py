"""A Ray session for what outgrows one process: an existing cluster (``address``) or a
local Ray started on demand with a few CPUs, no dashboard and no usage statistics.

When Ray is already initialised in this process (a test, a notebook, a nested call) the
session reuses it and leaves it running; otherwise it shuts down what it started.
Tasks and trials get the driver's ``RLMUSIC_DATABASE_URL``, ``RLMUSIC_HOME`` and thread
settings, so on a cluster every node records into the same database and writes under
the same (shared) folder: docs/jobs.md, "A Ray cluster".
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT_LOCAL_CPUS = 2  # CPUs a local Ray claims when none is said (the machine is shared)
OBJECT_STORE_BYTES = 256 * 2**20  # a local Ray's object store: clips travel as small arrays
PASSED_ENV = ("RLMUSIC_DATABASE_URL", "RLMUSIC_HOME", "OMP_NUM_THREADS")


def worker_env() -> dict[str, str]:
    """The driver's settings every Ray worker process gets."""
    env = {key: os.environ[key] for key in PASSED_ENV if os.environ.get(key)}
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[object]:
    """``ray``, initialised: on the cluster at ``address`` (``auto``: the one this machine
    belongs to), else a local Ray with ``num_cpus`` CPUs (default ``DEFAULT_LOCAL_CPUS``)."""
    if num_cpus is not None and num_cpus < 1:
        raise ValueError(f"a local Ray needs num_cpus >= 1, got {num_cpus}")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        yield ray
        return
    common = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False,
              "runtime_env": {"env_vars": worker_env()}}
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=num_cpus or DEFAULT_LOCAL_CPUS, object_store_memory=OBJECT_STORE_BYTES, **common)
    except ConnectionError as exc:
        raise ValueError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()
