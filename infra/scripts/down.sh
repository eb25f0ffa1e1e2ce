#!/usr/bin/env bash
# `make down`: stops what `make up` started (runner, receiver, local stack),
# checking each pid is still the process it started; fine when nothing runs.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
state=${PLATFORMSYNC_STATE_DIR:-$root/.local}
export PLATFORMSYNC_STATE_DIR=$state
for name in runner receiver; do
  pidfile=$state/$name.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "platformsync-$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
done
infra/scripts/local-stack.sh down
