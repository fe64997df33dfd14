# The two commands a fresh machine needs: `make run` and `make test`.
# Both create .venv and install what they need (Debian packages too, as root).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
export RLMUSIC_HOME ?= $(CURDIR)/.rlmusic

.PHONY: setup run test lint clean

setup:
	@scripts/setup.sh

run: setup
	@scripts/run.sh

test: setup
	$(BIN)/ruff check rlmusic envs db app tests benchmarks scripts alembic
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check rlmusic envs db app tests benchmarks scripts alembic

clean:
	rm -rf $(VENV) .rlmusic .pytest_cache
