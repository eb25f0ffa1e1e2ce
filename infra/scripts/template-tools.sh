#!/usr/bin/env bash
# Template checks and the SAM build, with pinned tools in a project virtualenv.
#
#   infra/scripts/template-tools.sh lint        # cfn-lint + sam validate --lint (offline)
#   infra/scripts/template-tools.sh sam-build   # sam build with cargo-lambda (zig) for every function
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
venv=$root/.local/tools-venv

install() {
  local lock=$1 stamp
  stamp=$venv/.installed-$(basename "$lock")-$(sha256sum "$lock" | cut -c1-16)
  [ -f "$stamp" ] && return 0
  echo "template-tools: installing $(basename "$lock") into $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
  touch "$stamp"
}

# Offline: a fake region and credentials, no telemetry, no update checks.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline
export SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1

case ${1:-} in
  lint)
    install infra/python/tools.lock
    "$venv/bin/cfn-lint" template.yaml
    "$venv/bin/sam" validate --lint --template template.yaml
    ;;
  sam-build)
    install infra/python/tools.lock
    install infra/python/cargo-lambda.lock
    # cargo-lambda (and the zig it brings) must come first on PATH.
    PATH="$venv/bin:$PATH" "$venv/bin/sam" build --template template.yaml --beta-features
    for f in .aws-sam/build/*/bootstrap; do
      printf '%-40s %s bytes\n' "$f" "$(stat -c %s "$f")"
    done
    ;;
  *) echo "usage: $0 lint|sam-build" >&2; exit 2 ;;
esac
