"""Servers the tests start as subprocesses (the app, nginx): wait until one answers, stop it."""

from __future__ import annotations

import subprocess
import time

import pytest


def wait_served(proc: subprocess.Popen, ready, timeout_s: float, what: str, output) -> None:
    """Until ``ready()`` is true (an ``OSError`` counts as not yet); fails the test, with
    ``output()``, when ``proc`` exits or ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{output()}")
        try:
            if ready():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer in {timeout_s}s:\n{output()}")
        time.sleep(0.25)


def stop(proc: subprocess.Popen, wait_s: float = 15) -> None:
    """Terminate ``proc``, killing it when it does not end in ``wait_s``."""
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
