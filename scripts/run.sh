#!/usr/bin/env bash
# `make run`: the product end to end on the embedded default database (SQLite under
# RLMUSIC_HOME): schema upgraded, a researcher invite for the local user, a blind A/B
# study of the shipped prior against the shipped tuned model (when the package ships one),
# clips generated from the shipped prior (and from the newest tuned model, if one exists),
# evaluated, enqueued with audio, one `rlmusic worker` started beside the app (same
# database, same RLMUSIC_HOME; it runs the jobs the Jobs page queues, logging to
# $RLMUSIC_HOME/logs/worker.log), and the listening app served on
# http://127.0.0.1:${PORT:-8501}; the last lines before it starts are your invite link.
# Ctrl-C stops the app and then the worker (SIGTERM: a running tuning job stops at its next
# env step and goes back to the queue with its checkpoint).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export RLMUSIC_HOME=${RLMUSIC_HOME:-$PWD/.rlmusic}
PORT=${PORT:-8501}
stamp=$(date +%Y%m%d-%H%M%S)

echo "== rlmusic home: $RLMUSIC_HOME"
echo "== audio: $($BIN/python -c 'from rlmusic.audio.synth import synth_route; print(synth_route())')"
echo "== database: upgrade to the newest schema"
$BIN/rlmusic db upgrade

me=${USER:-$(id -un)}
echo "== invite: a researcher link for $me (a new link each run; the old one stops working)"
invite=$($BIN/rlmusic raters invite "$me" --researcher --port "$PORT" | tail -n 1)

# the shipped tuned model to study: structure (the product's aim: form without copying) when
# the package has it, else any other; melodies as long as the model was tuned for
read -r shipped_tuned study_steps < <($BIN/python -c 'from rlmusic.models.checkpoint import shipped_models, load_provenance
names = [n for n in shipped_models() if n != "prior"]
name = "structure" if "structure" in names else (names[0] if names else "")
steps = int(load_provenance(shipped_models()[name]).extra.get("tune_config", {}).get("steps", 64)) if name else 64
print(name or "-", steps)')
if [ "$shipped_tuned" = "-" ]; then
  echo "== blind study: skipped, this package ships no tuned model yet (only the prior)"
else
  study="prior-vs-$shipped_tuned"
  if $BIN/rlmusic study list | grep "^$study:" >/dev/null; then
    echo "== blind study $study: already there ($BIN/rlmusic study report $study)"
  else
    echo "== blind study $study: 16 pairs of $study_steps steps + 4 gold checks, judged on the Compare page"
    $BIN/rlmusic study create "$study" --models prior "$shipped_tuned" --clips 16 --steps "$study_steps" --gold 4 --seed 0
  fi
fi

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

# The worker runs in a session of its own (setsid), so a Ctrl-C at the terminal reaches the
# app but not the worker (a background job of a script ignores SIGINT anyway); the trap
# below stops it with one SIGTERM when this script ends, however it ends, and waits for it.
worker_pid=
stop_worker() {
  [ -n "$worker_pid" ] || return 0
  if kill -TERM "$worker_pid" 2>/dev/null; then
    echo "== stopping the worker (pid $worker_pid); a running job goes back to the queue with its checkpoint"
    local waited=0  # bash reaps its children as they end: kill -0 fails once the worker is gone
    while kill -0 "$worker_pid" 2>/dev/null && [ "$waited" -lt 240 ]; do
      sleep 0.5
      waited=$((waited + 1))
    done
    if kill -KILL "$worker_pid" 2>/dev/null; then  # a job that would not stop in 2 minutes
      echo "== the worker did not stop in 2 minutes: killed; its job goes back to the queue once it counts as lost"
    fi
    wait "$worker_pid" 2>/dev/null || true
  fi
  worker_pid=
}
trap stop_worker EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

mkdir -p "$RLMUSIC_HOME/logs"
worker_log=$RLMUSIC_HOME/logs/worker.log
setsid=$(command -v setsid || true)
PYTHONUNBUFFERED=1 $setsid $BIN/rlmusic worker >>"$worker_log" 2>&1 </dev/null &
worker_pid=$!
echo "== worker: pid $worker_pid runs the jobs the Jobs page queues; log $worker_log"

echo "== listening app: http://127.0.0.1:$PORT  (Ctrl-C to stop the app and the worker); invited raters only"
echo "== your researcher link ($me): $invite"
echo "== invite raters with: $BIN/rlmusic raters invite NAME --port $PORT"
$BIN/rlmusic app --port "$PORT"
