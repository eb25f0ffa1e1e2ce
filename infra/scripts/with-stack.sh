#!/usr/bin/env bash
# Runs a command against a private local stack (.local/bench), started for it
# and stopped after it, whatever happens: for load runs and benchmarks.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export PLATFORMSYNC_STATE_DIR=$root/.local/bench
stack=infra/scripts/local-stack.sh
trap '"$stack" down' EXIT
"$stack" up
# shellcheck disable=SC1091
source "$PLATFORMSYNC_STATE_DIR/stack.env"
"$@"
