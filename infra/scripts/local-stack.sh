#!/usr/bin/env bash
# The local AWS stack: moto server in a project virtualenv, on a free loopback
# port. Starts at most one per state directory, records exactly what it
# started, and stops only that.
#
#   infra/scripts/local-stack.sh install   # pinned moto into .local/venv (idempotent)
#   infra/scripts/local-stack.sh up        # start (if not running) and wait until it answers
#   infra/scripts/local-stack.sh down      # stop what `up` started; fine if nothing runs
#   infra/scripts/local-stack.sh status
#
# PLATFORMSYNC_STATE_DIR (default .local) holds the pid, port, log and
# stack.env; `make test` uses its own (.local/test) so it never touches the
# stack a developer started with `make up`.
# PLATFORMSYNC_AWS_ENDPOINT=http://127.0.0.1:4566 uses an emulator you already
# run (LocalStack, say) instead of starting moto: `up` then starts nothing and
# `down` stops nothing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=${PLATFORMSYNC_STATE_DIR:-$root/.local}
case $state in /*) ;; *) state=$root/$state ;; esac
venv=${PLATFORMSYNC_VENV:-$root/.local/venv}
lock=$root/infra/python/moto.lock
pidfile=$state/moto.pid
portfile=$state/moto.port
log=$state/moto.log
envfile=$state/stack.env

say() { printf 'local-stack: %s\n' "$*" >&2; }

install() {
  local stamp=$venv/.installed-$(sha256sum "$lock" | cut -c1-16)
  [ -f "$stamp" ] && return 0
  say "installing pinned moto into $venv"
  mkdir -p "$(dirname "$venv")"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
  rm -f "$venv"/.installed-*
  touch "$stamp"
}

# The pid we started, if that process is still our moto server.
running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "moto_server.*-p $(cat "$portfile" 2>/dev/null)" || return 1
  echo "$pid"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() {
  local url=$1
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$url/moto-api/data.json" 2>/dev/null ||
       curl -fsS -o /dev/null "$url/_localstack/health" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  return 1
}

write_env() {
  local endpoint=$1
  mkdir -p "$state"
  # Fake credentials: the emulator accepts any, and they make sure nothing
  # here can ever sign a request for a real account.
  cat >"$envfile" <<ENV
export AWS_ENDPOINT_URL=$endpoint
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_EC2_METADATA_DISABLED=true
export PLATFORMSYNC_STAGE=\${PLATFORMSYNC_STAGE:-local}
ENV
}

up() {
  mkdir -p "$state"
  if [ -n "${PLATFORMSYNC_AWS_ENDPOINT:-}" ]; then
    wait_ready "$PLATFORMSYNC_AWS_ENDPOINT" || { say "no emulator answers at $PLATFORMSYNC_AWS_ENDPOINT"; exit 1; }
    write_env "$PLATFORMSYNC_AWS_ENDPOINT"
    say "using the emulator at $PLATFORMSYNC_AWS_ENDPOINT"
    return 0
  fi
  if pid=$(running_pid); then
    say "already running (pid $pid, port $(cat "$portfile"))"
    return 0
  fi
  install
  local port
  port=$(free_port)
  # setsid: its own session, so a Ctrl-C in the calling terminal does not
  # take it down half-way through a test run.
  setsid "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "$port" >"$portfile"
  if ! wait_ready "http://127.0.0.1:$port"; then
    say "moto did not answer on port $port; its log:"
    tail -20 "$log" >&2
    down
    exit 1
  fi
  write_env "http://127.0.0.1:$port"
  say "moto server up on http://127.0.0.1:$port (pid $(cat "$pidfile")); env in $envfile"
}

down() {
  if pid=$(running_pid); then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    say "stopped moto (pid $pid)"
  fi
  rm -f "$pidfile" "$portfile" "$envfile"
}

status() {
  if pid=$(running_pid); then
    echo "moto running: pid $pid, http://127.0.0.1:$(cat "$portfile")"
  else
    echo "not running"
    return 3
  fi
}

case ${1:-} in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
