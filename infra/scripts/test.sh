#!/usr/bin/env bash
# `make test`: everything a change must pass, on a stack of its own.
# Installs what is missing, starts a private local stack (.local/test), runs
# formatting and lint checks and every test, and stops exactly what it started,
# whatever happened. Exits non-zero on any failure.
#
#   infra/scripts/test.sh               # everything
#   infra/scripts/test.sh --suite-only  # build and tests only (no fmt, lint,
#                                       # clippy): `make test-localstack` runs
#                                       # the same tests on another emulator
#
# The emulator is local-stack.sh's choice: moto by default; the LocalStack
# pair with PLATFORMSYNC_EMULATOR=localstack; one you already run with
# PLATFORMSYNC_AWS_ENDPOINT or AWS_ENDPOINT_URL (nothing started or stopped).
set -euo pipefail
suite_only=0
case ${1:-} in
  --suite-only) suite_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--suite-only]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

export PLATFORMSYNC_STATE_DIR=${PLATFORMSYNC_TEST_STATE_DIR:-$root/.local/test}
stack=infra/scripts/local-stack.sh
trap '"$stack" down' EXIT

step() { printf '\n== %s\n' "$*"; }

if [ "$suite_only" = 0 ]; then
  step "format"
  cargo fmt --all -- --check

  step "template: cfn-lint and sam validate --lint"
  infra/scripts/template-tools.sh lint

  step "docs/openapi.yaml: OpenAPI 3.1 lint"
  infra/scripts/openapi-lint.sh
fi

step "local AWS stack"
"$stack" up
# shellcheck disable=SC1091
source "$PLATFORMSYNC_STATE_DIR/stack.env"

if [ "$suite_only" = 0 ]; then
  step "clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi

step "build (the end-to-end tests start the runner binary)"
cargo build --workspace --bins --locked

step "tests"
cargo test --workspace --locked --no-fail-fast
