#!/usr/bin/env bash
# LocalStack in host mode (no Docker): pinned `localstack-core` in a
# virtualenv of its own (Python 3.13), on a free loopback port, serving only
# the services PlatformSync uses besides DynamoDB: SQS, SNS, Secrets Manager,
# CloudWatch. DynamoDB and its stream stay on moto (local-stack.sh starts the
# pair with PLATFORMSYNC_EMULATOR=localstack). Starts at most one per state
# directory, records exactly what it started, and stops only that.
#
#   infra/scripts/localstack.sh install   # pinned localstack-core into .local/localstack-venv (idempotent)
#   infra/scripts/localstack.sh start     # start (if not running), wait until its services run; prints the URL
#   infra/scripts/localstack.sh stop      # SIGTERM, a bounded wait, then SIGKILL to its process group
#   infra/scripts/localstack.sh status
#
# PLATFORMSYNC_STATE_DIR (default .local) holds localstack.{pid,port,log} and
# its file system root. PLATFORMSYNC_LOCALSTACK_PYTHON: a Python 3.13 (default:
# pyenv's 3.13.0, else python3.13 on PATH).
set -euo pipefail

# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
venv=${PLATFORMSYNC_LOCALSTACK_VENV:-$root/.local/localstack-venv}
lock=$root/infra/python/localstack.lock
pidfile=$state/localstack.pid
portfile=$state/localstack.port
log=$state/localstack.log
# The services the template uses apart from DynamoDB (health must show each
# "running" before we call it up).
services=sqs,sns,secretsmanager,cloudwatch

say() { printf 'localstack: %s\n' "$*" >&2; }

python313() {
  local candidates=("${PLATFORMSYNC_LOCALSTACK_PYTHON:-}" "$HOME/.pyenv/versions/3.13.0/bin/python3")
  command -v python3.13 >/dev/null && candidates+=("$(command -v python3.13)")
  for p in "${candidates[@]}"; do
    [ -n "$p" ] && [ -x "$p" ] && "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' && { echo "$p"; return 0; }
  done
  say "needs Python 3.13 (pyenv install 3.13.0, or set PLATFORMSYNC_LOCALSTACK_PYTHON)"
  return 1
}

install() { venv_install "$venv" "$lock" localstack-core python313; }

# The pid we started, if that process is still our LocalStack.
running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "localstack.runtime.main" || return 1
  grep -qz "^GATEWAY_LISTEN=127.0.0.1:$(cat "$portfile" 2>/dev/null)\$" "/proc/$pid/environ" 2>/dev/null || return 1
  echo "$pid"
}

# Health answers before the services have loaded; wait until each one runs.
services_running() {
  local health
  health=$(curl -fsS --max-time 2 "$1/_localstack/health" 2>/dev/null) || return 1
  python3 -c '
import json, sys
states = json.loads(sys.argv[2]).get("services", {})
sys.exit(any(states.get(s) not in ("running", "available") for s in sys.argv[1].split(",")))
' "$services" "$health" 2>/dev/null
}

start() {
  mkdir -p "$state"
  if pid=$(running_pid); then
    say "already running (pid $pid, port $(cat "$portfile"))"
    echo "http://127.0.0.1:$(cat "$portfile")"
    return 0
  fi
  install
  local port url
  port=$(free_port)
  url=http://127.0.0.1:$port
  mkdir -p "$state/localstack-fs"
  # - OVERRIDE_IN_DOCKER=0: host mode, whatever the machine looks like.
  # - GATEWAY_SERVER=hypercorn: the default (twisted) server ignores the host
  #   of GATEWAY_LISTEN and binds every interface; hypercorn binds loopback.
  # - DNS_ADDRESS=0: no DNS server (it would bind port 53 on every interface).
  # - DISABLE_EVENTS, SKIP_SSL_CERT_DOWNLOAD: nothing leaves the machine.
  # - EAGER_SERVICE_LOADING: load the services at start, not on the first
  #   request of a test (which would then race its own timeout).
  # - SQS_ENDPOINT_STRATEGY=path: queue URLs on this very host and port.
  # - FILESYSTEM_ROOT: its files under our state dir, not in the venv.
  # setsid: its own session and process group, so a Ctrl-C in the calling
  # terminal does not take it down mid-run, and `stop` can end the group.
  env OVERRIDE_IN_DOCKER=0 GATEWAY_SERVER=hypercorn \
    GATEWAY_LISTEN="127.0.0.1:$port" LOCALSTACK_HOST="127.0.0.1:$port" \
    SERVICES="$services" EAGER_SERVICE_LOADING=1 DNS_ADDRESS=0 \
    DISABLE_EVENTS=1 SKIP_SSL_CERT_DOWNLOAD=1 SQS_ENDPOINT_STRATEGY=path \
    FILESYSTEM_ROOT="$state/localstack-fs" \
    setsid "$venv/bin/python" -m localstack.runtime.main >"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  echo "$port" >"$portfile"
  for _ in $(seq 1 600); do
    services_running "$url" && { say "up on $url (pid $(cat "$pidfile"))"; echo "$url"; return 0; }
    [ -d "/proc/$(cat "$pidfile")" ] || break
    sleep 0.2
  done
  say "LocalStack did not come up on port $port; its log:"
  tail -30 "$log" >&2
  stop
  return 1
}

stop() {
  if pid=$(running_pid); then
    # Its shutdown can hang (a service's thread that never ends): SIGTERM, a
    # bounded wait, then the whole process group it started (setsid made
    # pid the group id), by id.
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 "${PLATFORMSYNC_LOCALSTACK_STOP_WAIT:-100}"); do
      [ -d "/proc/$pid" ] || break
      sleep 0.1
    done
    if [ -d "/proc/$pid" ]; then
      say "no exit after SIGTERM; killing its process group $pid"
    fi
    # The group, if anything of it is left (the leader, or children that
    # outlived it).
    if [ -n "$(ps -o pid= -g "$pid" 2>/dev/null)" ]; then
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    say "stopped (pid $pid)"
  fi
  rm -f "$pidfile" "$portfile"
}

status() {
  if pid=$(running_pid); then
    echo "localstack running: pid $pid, http://127.0.0.1:$(cat "$portfile")"
  else
    echo "localstack not running"
    return 3
  fi
}

case ${1:-} in
  install) install ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
