#!/usr/bin/env bash
# Creates .venv and installs everything rlmusic needs on a fresh machine:
# Debian packages (FluidSynth + a General MIDI soundfont, Chromium for the browser
# tests, nginx and openssl for the TLS proxy in front of the app, docs/deploy.md) when we are root, torch pinned to the local CPU wheel, then the package
# with its dev extras, every Python package at the version the lock (constraints.txt,
# rewritten by `make lock`) names, so a fresh machine, CI and a developer's venv run the
# same versions. Idempotent: a second run only checks.
#
# On a machine with an NVIDIA GPU: `RLMUSIC_TORCH=cuda make setup` installs the CUDA
# build of the same torch version from PyTorch's index (TORCH_CUDA_INDEX, default cu128;
# pick the one matching the driver, e.g. .../whl/cu126) and checks that torch sees the
# GPU; `--device auto` then tunes and generates on CUDA. Switching variants reinstalls torch.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_VARIANT=${RLMUSIC_TORCH:-cpu}
TORCH_CUDA_INDEX=${TORCH_CUDA_INDEX:-https://download.pytorch.org/whl/cu128}
case "$TORCH_VARIANT" in
  cpu|cuda) ;;
  *) echo "setup: RLMUSIC_TORCH must be cpu or cuda, got '$TORCH_VARIANT'" >&2; exit 1 ;;
esac
DEBS="fluidsynth fluid-soundfont-gm chromium nginx openssl"

missing=""
for p in $DEBS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "setup: WARNING: Debian packages missing and not root:$missing" >&2
    echo "setup: audio falls back to pretty_midi's bundled soundfont via pyfluidsynth;" >&2
    echo "setup: browser tests need /usr/bin/chromium, the proxy test nginx and openssl." >&2
  fi
fi

stamp=.venv/.installed
LOCK=constraints.txt
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/setup.sh ] \
   && [ "$stamp" -nt "$LOCK" ] && [ "$(cat "$stamp")" = "$TORCH_VARIANT" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
if [ "$TORCH_VARIANT" = cuda ]; then
  # The CUDA build: PyTorch's own index for torch, PyPI for its dependencies.
  .venv/bin/python -m pip install -q -c "$LOCK" --force-reinstall "torch==${TORCH_VERSION}" \
    --index-url "$TORCH_CUDA_INDEX" --extra-index-url https://pypi.org/simple
else
  # An unpinned torch pulls a multi-GB CUDA build; the pin takes the CPU wheel here.
  .venv/bin/python -m pip install -q -c "$LOCK" "torch==${TORCH_VERSION}"
fi
.venv/bin/python -m pip install -q -c "$LOCK" -e ".[dev]"
# The pip-only audio route (TinySoundFont + pretty_midi's bundled GM soundfont), for
# machines without libfluidsynth. --no-deps: its only declared dependency, PyAudio, is
# for live playback, has no Linux wheel and does not build without PortAudio headers.
.venv/bin/python -m pip install -q -c "$LOCK" --no-deps "tinysoundfont>=0.3.7"
if [ "$TORCH_VARIANT" = cuda ] && ! .venv/bin/python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "setup: WARNING: the CUDA build of torch is installed but sees no GPU (driver? TORCH_CUDA_INDEX?)" >&2
fi
echo "$TORCH_VARIANT" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'))"
.venv/bin/python -c 'from rlmusic.environment import lock_status; print("setup:", lock_status())'
