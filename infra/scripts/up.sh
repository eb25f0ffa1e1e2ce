#!/usr/bin/env bash
# `make up`: the local stack, the runner (functions and their event sources)
# and the reference receiver, in the background, until `make down`.
# Writes .local/stack.env with everything the CLI needs; `source` it.
#
# PLATFORMSYNC_EXTRA_CA_FILE and PLATFORMSYNC_ALLOW_CIDRS let the push reach a
# receiver of your own on loopback (its CA, and e.g. 127.0.0.0/8); by default
# the bundled receiver's CA and loopback are used.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
state=${PLATFORMSYNC_STATE_DIR:-$root/.local}
export PLATFORMSYNC_STATE_DIR=$state
stage=${PLATFORMSYNC_STAGE:-local}

cargo build --quiet --locked --bin platformsync-runner --bin platformsync-receiver --bin platformsync-bootstrap --bin platformsync
infra/scripts/local-stack.sh up
# shellcheck disable=SC1091
source "$state/stack.env"
target/debug/platformsync-bootstrap --stage "$stage" --out "$state/resources.json" --ingest-key-out "$state/ingest-key"

alive() { # pidfile, expected command name
  [ -f "$1" ] && [ -r "/proc/$(cat "$1")/cmdline" ] && tr '\0' ' ' <"/proc/$(cat "$1")/cmdline" | grep -q "$2"
}

# The reference receiver, with a key of its own.
mkdir -p "$state/receiver"
[ -f "$state/receiver/key" ] || (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/receiver/key")
if ! alive "$state/receiver.pid" platformsync-receiver; then
  rm -f "$state/receiver/receiver.json"
  setsid target/debug/platformsync-receiver --state-dir "$state/receiver" --key-file "$state/receiver/key" --raw-key \
    >"$state/receiver.log" 2>&1 </dev/null &
  echo $! >"$state/receiver.pid"
  for _ in $(seq 1 100); do [ -f "$state/receiver/receiver.json" ] && break; sleep 0.1; done
fi
receiver_url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$state/receiver/receiver.json")

# The runner: every function of template.yaml and its event sources.
if ! alive "$state/runner.pid" platformsync-runner; then
  rm -f "$state/runner/runner.json"
  setsid target/debug/platformsync-runner --deployment "$state/resources.json" --state-dir "$state/runner" \
    --env "PLATFORMSYNC_EXTRA_CA_FILE=${PLATFORMSYNC_EXTRA_CA_FILE:-$state/receiver/ca.pem}" \
    --env "PLATFORMSYNC_ALLOW_CIDRS=${PLATFORMSYNC_ALLOW_CIDRS:-127.0.0.0/8}" \
    --sqs-visibility-timeout 60 >"$state/runner.log" 2>&1 </dev/null &
  echo $! >"$state/runner.pid"
  for _ in $(seq 1 300); do [ -f "$state/runner/runner.json" ] && break; sleep 0.1; done
  [ -f "$state/runner/runner.json" ] || { echo "the runner did not start; see $state/runner.log" >&2; exit 1; }
fi
api_url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ApiUrl"])' "$state/runner/runner.json")
# Idempotent: a second `make up` replaces these lines rather than adding more.
sed -i '/^export PLATFORMSYNC_\(API_URL\|INGEST_KEY\|RECEIVER_[A-Z_]*\)=/d; /^export PLATFORMSYNC_STAGE=[^$]/d' "$state/stack.env"
cat >>"$state/stack.env" <<ENV
export PLATFORMSYNC_STAGE=$stage
export PLATFORMSYNC_API_URL=$api_url
export PLATFORMSYNC_INGEST_KEY=$(cat "$state/ingest-key")
export PLATFORMSYNC_RECEIVER_URL=$receiver_url
export PLATFORMSYNC_RECEIVER_KEY_FILE=$state/receiver/key
export PLATFORMSYNC_RECEIVER_CA=$state/receiver/ca.pem
ENV
cat <<MSG
ready:
  source $state/stack.env
  HTTP API (SafeSync posts here):  $api_url/v1/uploads
  receiver (a customer endpoint):  $receiver_url   (key in \$PLATFORMSYNC_RECEIVER_KEY_FILE, raw Authorization header)
  logs:                            $state/runner.log, $state/receiver.log
  try: target/debug/platformsync simulate --api \$PLATFORMSYNC_API_URL --key-env PLATFORMSYNC_INGEST_KEY --assign-to demo
MSG
