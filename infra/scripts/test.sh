#!/usr/bin/env bash
# `make test`: everything a change must pass, on a stack of its own.
# Installs what is missing, starts a private local stack (.local/test), runs
# formatting and lint checks and every test, and stops exactly what it started,
# whatever happened. Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

export PLATFORMSYNC_STATE_DIR=$root/.local/test
stack=infra/scripts/local-stack.sh
trap '"$stack" down' EXIT

step() { printf '\n== %s\n' "$*"; }

step "format"
cargo fmt --all -- --check

step "template: cfn-lint and sam validate --lint"
infra/scripts/template-tools.sh lint

step "local AWS stack"
"$stack" up
# shellcheck disable=SC1091
source "$PLATFORMSYNC_STATE_DIR/stack.env"

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build (the end-to-end tests start the runner binary)"
cargo build --workspace --bins --locked

step "tests"
cargo test --workspace --locked --no-fail-fast
