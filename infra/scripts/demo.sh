#!/usr/bin/env bash
# `make demo`: the whole pipeline on this machine. Installs what is missing,
# starts a private local stack (.local/demo), runs a simulated SafeSync day
# through ingest, fan-out and push to a local customer endpoint, prints what
# was delivered, and stops everything it started.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

export PLATFORMSYNC_STATE_DIR=$root/.local/demo
stack=infra/scripts/local-stack.sh
trap '"$stack" down' EXIT

echo "Building (first run: a few minutes)..."
cargo build --quiet --locked --bin platformsync-runner --bin platformsync-demo
"$stack" up
# shellcheck disable=SC1091
source "$PLATFORMSYNC_STATE_DIR/stack.env"
# Function logs go to .local/demo/pipeline/runner/runner.log.
target/debug/platformsync-demo
