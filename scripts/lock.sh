#!/usr/bin/env bash
# `make lock`: rewrite constraints.txt, the versions every machine installs (make setup
# installs with `pip -c constraints.txt`; CI and a fresh clone get the same packages).
# Resolves the newest versions of rlmusic's dependencies and dev extras in a fresh,
# throw-away venv, freezes them, and writes the lock. Then run `make test` and commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
pip="$tmp/venv/bin/python -m pip"
$pip install -q --upgrade pip
$pip install -q "torch==${TORCH_VERSION}"
# rlmusic's own requirements and dev extras, read from pyproject.toml (installing the
# package itself would leave a build/ folder in the checkout)
"$tmp/venv/bin/python" -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > "$tmp/requirements.txt"
$pip install -q -r "$tmp/requirements.txt"
$pip install -q --no-deps "tinysoundfont>=0.3.7"   # scripts/setup.sh installs it the same way
{
  echo "# The lock: the versions make setup installs (pip -c constraints.txt) on every machine."
  echo "# Written by \`make lock\` (scripts/lock.sh) on $(date -u +%Y-%m-%d) with $($tmp/venv/bin/python -V);"
  echo "# do not edit by hand. \`rlmusic --version\` says whether a venv matches it."
  # torch without its local label (+cpu): the CUDA build of the same version matches too
  $pip freeze --all --exclude pip | sed -E 's/^(torch==[^+]+)\+.*/\1/'
} > constraints.txt.tmp
mv constraints.txt.tmp constraints.txt
echo "lock: constraints.txt pins $(grep -c '==' constraints.txt) packages"
