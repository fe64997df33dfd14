"""The seed of the tests that assert a statistic of training or sampling.

Such a test is marked ``@pytest.mark.statistical`` and derives every seed it uses from
``seed(k)``: ``k`` with ``RLMUSIC_TEST_SEED`` unset or 0 (the seeds the suite has always
used), ``k + 1000 * RLMUSIC_TEST_SEED`` otherwise, so each test seed draws new data, new
initial weights and new samples. ``scripts/test_seeds.sh K`` runs the marked tests for
seeds 0..K-1 and prints how many seeds each passes: a statistical test asserts what holds
on every seed, with a margin its docstring justifies by the spread measured there.
"""

from __future__ import annotations

import os


def read_test_seed() -> int:
    raw = os.environ.get("RLMUSIC_TEST_SEED", "0").strip() or "0"
    if not raw.isdigit():
        raise ValueError(f"RLMUSIC_TEST_SEED must be a whole number >= 0, got {raw!r}")
    return int(raw)


TEST_SEED = read_test_seed()


def seed(k: int = 0) -> int:
    """The ``k``-th seed of a statistical test under this test seed."""
    return k + 1000 * TEST_SEED
