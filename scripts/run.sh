#!/usr/bin/env bash
# `make run`: the product end to end on the embedded default database (SQLite under
# RLMUSIC_HOME): schema upgraded, clips generated from the shipped prior (and from the
# newest tuned model, if one exists), evaluated, enqueued with audio, and the listening
# app served on http://127.0.0.1:${PORT:-8501}.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export RLMUSIC_HOME=${RLMUSIC_HOME:-$PWD/.rlmusic}
PORT=${PORT:-8501}
stamp=$(date +%Y%m%d-%H%M%S)

echo "== rlmusic home: $RLMUSIC_HOME"
echo "== audio: $($BIN/python -c 'from rlmusic.audio import synth_route; print(synth_route())')"
echo "== database: upgrade to the newest schema"
$BIN/rlmusic db upgrade

echo "== generate 16 clips from the shipped prior and put them in the rating queue"
$BIN/rlmusic generate -n 16 --steps 64 --seed "$RANDOM" --out "$RLMUSIC_HOME/clips/prior-$stamp" --enqueue

tuned=$(ls -1dt "$RLMUSIC_HOME"/models/tuned-* 2>/dev/null | head -n 1 || true)
if [ -n "$tuned" ] && [ -f "$tuned/config.json" ]; then
  echo "== generate 16 clips from the newest tuned model: $tuned"
  $BIN/rlmusic generate --model "$tuned" -n 16 --steps 64 --seed "$RANDOM" \
    --out "$RLMUSIC_HOME/clips/$(basename "$tuned")-$stamp" --enqueue
fi

echo "== evaluate the shipped prior (RL Tuner's metrics, structure, originality)"
$BIN/rlmusic evaluate -n 200 --steps 32

echo "== listening app: http://127.0.0.1:$PORT  (Ctrl-C to stop)"
exec $BIN/rlmusic app --port "$PORT"
