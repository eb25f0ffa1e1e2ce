#!/usr/bin/env bash
# `make test-localstack`: the integration and end-to-end suite of `make test`
# on LocalStack (host mode, no Docker): SQS, SNS, Secrets Manager and
# CloudWatch on LocalStack, DynamoDB and its stream on moto. fmt, clippy and
# the template lint are not run again (`make test` runs them).
#
# It starts its own pair (.local/test-localstack), whatever the shell points
# at, and hands it to the two commands a user with their own emulator runs,
# as that user would (PLATFORMSYNC_AWS_ENDPOINT): `make up`/`make down`
# (bring-your-own: template resources created there, the emulator left
# running) and then `make test --suite-only`. It stops both emulators at the
# end, whatever happened, and lists every test skipped on LocalStack with its
# reason. Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"

state=$root/.local/test-localstack
export PLATFORMSYNC_STATE_DIR=$state
# Our own pair, not whatever a sourced stack.env or the shell names.
unset AWS_ENDPOINT_URL PLATFORMSYNC_AWS_ENDPOINT PLATFORMSYNC_STACK_ENDPOINT \
  AWS_ENDPOINT_URL_DYNAMODB AWS_ENDPOINT_URL_DYNAMODB_STREAMS AWS_ENDPOINT_URL_DYNAMODBSTREAMS
stack=infra/scripts/local-stack.sh
cleanup() {
  local t0=$SECONDS
  PLATFORMSYNC_STATE_DIR=$state/byo-up infra/scripts/down.sh >/dev/null 2>&1 || true
  PLATFORMSYNC_STATE_DIR=$state "$stack" down
  echo "test-localstack: stopped in $((SECONDS - t0)) s"
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }
took() { echo "test-localstack: $1 took $((SECONDS - $2)) s"; }

step "install (pinned moto, pinned localstack-core in .local/localstack-venv)"
t=$SECONDS
"$stack" install
infra/scripts/localstack.sh install
took install "$t"

step "the LocalStack pair"
t=$SECONDS
PLATFORMSYNC_EMULATOR=localstack "$stack" up
# shellcheck disable=SC1091
source "$state/stack.env"
took start "$t"
# What a user with their own LocalStack (and moto for DynamoDB) sets.
export PLATFORMSYNC_AWS_ENDPOINT=$AWS_ENDPOINT_URL

step "bring your own: make up / make down against it"
t=$SECONDS
PLATFORMSYNC_STATE_DIR=$state/byo-up PLATFORMSYNC_STAGE=byo infra/scripts/up.sh >"$state/byo-up.log" 2>&1 ||
  { cat "$state/byo-up.log"; exit 1; }
python3 - "$state/byo-up/resources.json" "$AWS_ENDPOINT_URL" "$AWS_ENDPOINT_URL_DYNAMODB" <<'PY'
import json, sys
deployment, localstack, moto = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
refs = {k: v["Ref"] for k, v in deployment["Resources"].items()}
queues = [r for r in refs.values() if r.startswith(localstack)]
assert queues, f"no queue of the template on LocalStack ({localstack}): {refs}"
print(f"make up created {len(refs)} resources of template.yaml ({len(queues)} queues on LocalStack)")
PY
grep -q "^export PLATFORMSYNC_EMULATOR=localstack$" "$state/byo-up/stack.env"
grep -q "^export AWS_ENDPOINT_URL_DYNAMODB=$AWS_ENDPOINT_URL_DYNAMODB$" "$state/byo-up/stack.env"
PLATFORMSYNC_STATE_DIR=$state/byo-up infra/scripts/down.sh
# down stops nothing of an emulator it did not start.
PLATFORMSYNC_STATE_DIR=$state "$stack" status >/dev/null ||
  { echo "make down stopped the emulator it was given" >&2; exit 1; }
took "make up + make down" "$t"

step "the suite (make test's cargo test, on LocalStack)"
t=$SECONDS
set +e
PLATFORMSYNC_TEST_STATE_DIR=$state/suite infra/scripts/test.sh --suite-only 2>&1 | tee "$state/suite.log"
rc=${PIPESTATUS[0]}
set -e
took suite "$t"

step "skipped on LocalStack (docs/local-stack.md says why)"
skipped=$(grep -h '^SKIPPED ' "$state/suite.log" | sort -u || true)
echo "${skipped:-(none)}"
exit "$rc"
