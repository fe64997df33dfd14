# The two commands a fresh machine needs: `make run` and `make test`.
# Both create .venv and install what they need (Debian packages too, as root).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export RLMUSIC_HOME ?= $(CURDIR)/.rlmusic
# One BLAS/OpenMP thread per test process: on a busy 2-core machine two spinning
# threads made small LSTM steps 100x slower. Override for benchmarks.
test: export OMP_NUM_THREADS ?= 1

.PHONY: setup setup-cuda lock run test lint clean

setup:
	@scripts/setup.sh

# On a machine with an NVIDIA GPU: the CUDA build of torch instead of the CPU wheel.
setup-cuda:
	@RLMUSIC_TORCH=cuda scripts/setup.sh

# Rewrite the lock (constraints.txt) with the newest versions that resolve today; then
# `make test` and commit both. setup installs exactly what the lock names.
lock:
	@scripts/lock.sh

run: setup
	@scripts/run.sh

test: setup
	$(BIN)/ruff check rlmusic envs db app tests benchmarks scripts alembic
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check rlmusic envs db app tests benchmarks scripts alembic

clean:
	rm -rf $(VENV) .rlmusic .pytest_cache
