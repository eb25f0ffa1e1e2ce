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
#
# Which emulator:
# - PLATFORMSYNC_EMULATOR=moto (default): moto serves every service.
# - PLATFORMSYNC_EMULATOR=localstack: the LocalStack pair. LocalStack host
#   mode (infra/scripts/localstack.sh) serves SQS, SNS, Secrets Manager and
#   CloudWatch (AWS_ENDPOINT_URL); moto serves DynamoDB and its stream
#   (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_DYNAMODB_STREAMS).
# - Bring your own: PLATFORMSYNC_AWS_ENDPOINT, or an AWS_ENDPOINT_URL that is
#   not the one a sourced stack.env of ours set, names an emulator you already
#   run (LocalStack in Docker, say): `up` starts nothing, checks it answers and
#   writes stack.env for it (with your AWS_ENDPOINT_URL_DYNAMODB... if set);
#   `down` stops nothing of it.
# stack.env exports PLATFORMSYNC_EMULATOR (moto|localstack|other): the tests
# skip, with the reason, what an emulator is known to get wrong.
set -euo pipefail

# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
venv=${PLATFORMSYNC_VENV:-$root/.local/venv}
lock=$root/infra/python/moto.lock
pidfile=$state/moto.pid
portfile=$state/moto.port
log=$state/moto.log
envfile=$state/stack.env

say() { printf 'local-stack: %s\n' "$*" >&2; }

install() { venv_install "$venv" "$lock" moto; }

# The pid we started, if that process is still our moto server.
running_pid() {
  [ -f "$pidfile" ] || return 1
  local pid
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "moto_server.*-p $(cat "$portfile" 2>/dev/null)" || return 1
  echo "$pid"
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

# What a sourced stack.env of another emulator may have left in the shell.
endpoint_vars=(AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_DYNAMODB_STREAMS AWS_ENDPOINT_URL_DYNAMODBSTREAMS)

# write_env ENDPOINT EMULATOR [DYNAMODB_ENDPOINT]
write_env() {
  local endpoint=$1 emulator=$2 dynamodb=${3:-}
  mkdir -p "$state"
  # Fake credentials: the emulator accepts any, and they make sure nothing
  # here can ever sign a request for a real account.
  {
    cat <<ENV
export AWS_ENDPOINT_URL=$endpoint
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_EC2_METADATA_DISABLED=true
export PLATFORMSYNC_STAGE=\${PLATFORMSYNC_STAGE:-local}
export PLATFORMSYNC_EMULATOR=$emulator
export PLATFORMSYNC_STACK_ENDPOINT=$endpoint
ENV
    if [ -n "$dynamodb" ]; then
      # The SDKs read AWS_ENDPOINT_URL_DYNAMODB_STREAMS (service id
      # "DynamoDB Streams"); the form without the underscore is set too for
      # tools that spell it so.
      for v in "${endpoint_vars[@]}"; do echo "export $v=$dynamodb"; done
    else
      echo "unset ${endpoint_vars[*]}"
    fi
  } >"$envfile"
}

# The emulator you brought, if any: PLATFORMSYNC_AWS_ENDPOINT, or an
# AWS_ENDPOINT_URL that is not the endpoint of a stack.env of ours.
byo_endpoint() {
  if [ -n "${PLATFORMSYNC_AWS_ENDPOINT:-}" ]; then
    echo "$PLATFORMSYNC_AWS_ENDPOINT"
  elif [ -n "${AWS_ENDPOINT_URL:-}" ] && [ "${AWS_ENDPOINT_URL}" != "${PLATFORMSYNC_STACK_ENDPOINT:-}" ]; then
    echo "$AWS_ENDPOINT_URL"
  else
    return 1
  fi
}

# Any HTTP answer at all: the endpoint is served.
answers() {
  for _ in $(seq 1 50); do
    curl -sS --max-time 2 -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# What an endpoint is, by what it answers.
detect_emulator() {
  if curl -fsS --max-time 2 -o /dev/null "$1/_localstack/health" 2>/dev/null; then
    echo localstack
  elif curl -fsS --max-time 2 -o /dev/null "$1/moto-api/data.json" 2>/dev/null; then
    echo moto
  else
    echo other
  fi
}

up_byo() {
  local endpoint=$1 dynamodb=${AWS_ENDPOINT_URL_DYNAMODB:-}
  answers "$endpoint" || { say "no emulator answers at $endpoint (unset AWS_ENDPOINT_URL / PLATFORMSYNC_AWS_ENDPOINT to start the built-in one)"; exit 1; }
  if [ -n "$dynamodb" ]; then
    answers "$dynamodb" || { say "nothing answers at AWS_ENDPOINT_URL_DYNAMODB=$dynamodb"; exit 1; }
  fi
  local emulator
  emulator=$(detect_emulator "$endpoint")
  write_env "$endpoint" "$emulator" "$dynamodb"
  say "using the emulator you run at $endpoint ($emulator${dynamodb:+; DynamoDB at $dynamodb}); starting none"
}

up_moto() {
  if pid=$(running_pid); then
    say "moto already running (pid $pid, port $(cat "$portfile"))"
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
  say "moto server up on http://127.0.0.1:$port (pid $(cat "$pidfile"))"
}

up() {
  mkdir -p "$state"
  local endpoint
  if endpoint=$(byo_endpoint); then
    up_byo "$endpoint"
    return 0
  fi
  local emulator=${PLATFORMSYNC_EMULATOR:-moto}
  case $emulator in
    moto)
      up_moto
      write_env "http://127.0.0.1:$(cat "$portfile")" moto
      ;;
    localstack)
      up_moto
      local ls_url
      ls_url=$(PLATFORMSYNC_STATE_DIR=$state "$root/infra/scripts/localstack.sh" start) || { down; exit 1; }
      write_env "$ls_url" localstack "http://127.0.0.1:$(cat "$portfile")"
      ;;
    *) say "PLATFORMSYNC_EMULATOR must be moto or localstack, not $emulator"; exit 2 ;;
  esac
  say "env in $envfile"
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
  # LocalStack, if this state dir started one (a no-op otherwise).
  if [ -f "$state/localstack.pid" ]; then
    PLATFORMSYNC_STATE_DIR=$state "$root/infra/scripts/localstack.sh" stop
  fi
}

status() {
  local rc=3
  if pid=$(running_pid); then
    echo "moto running: pid $pid, http://127.0.0.1:$(cat "$portfile")"
    rc=0
  fi
  if [ -f "$state/localstack.pid" ] && PLATFORMSYNC_STATE_DIR=$state "$root/infra/scripts/localstack.sh" status; then
    rc=0
  fi
  [ "$rc" = 0 ] || echo "not running"
  return "$rc"
}

case ${1:-} in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
