#!/usr/bin/env bash
# `make up`: a local stack that stays up for playing with (`make down` stops it).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
export PLATFORMSYNC_STATE_DIR=${PLATFORMSYNC_STATE_DIR:-$root/.local}
infra/scripts/local-stack.sh up
# shellcheck disable=SC1091
source "$PLATFORMSYNC_STATE_DIR/stack.env"
cargo run --quiet --locked -p platformsync-bootstrap -- --out "$PLATFORMSYNC_STATE_DIR/resources.json"
echo "ready: source $PLATFORMSYNC_STATE_DIR/stack.env"
