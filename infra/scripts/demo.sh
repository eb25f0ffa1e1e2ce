#!/usr/bin/env bash
# `make demo`: the whole pipeline on this machine. Installs what is missing,
# starts a private local stack (.local/demo), runs a simulated SafeSync day
# through ingest, fan-out and push to a local customer endpoint, prints what
# was delivered, and stops everything it started.
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
private_stack "$root/.local/demo" platformsync-demo
# Function logs go to .local/demo/pipeline/runner/runner.log.
target/debug/platformsync-demo
