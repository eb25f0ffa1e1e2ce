#!/usr/bin/env bash
# Template checks and the SAM build, with pinned tools in a project virtualenv.
#
#   infra/scripts/template-tools.sh lint        # cfn-lint + sam validate --lint + iam (offline)
#   infra/scripts/template-tools.sh iam         # the expanded template's IAM (infra/template/check_iam.py)
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
    # The template as CloudFormation receives it (SAM translator, pinned in
    # tools.lock, offline): every permission names this stack's resources.
    "$venv/bin/python" infra/template/check_iam.py template.yaml
    ;;
  iam)
    install infra/python/tools.lock
    "$venv/bin/python" infra/template/check_iam.py template.yaml
    ;;
  sam-build)
    install infra/python/tools.lock
    install infra/python/cargo-lambda.lock
    # Every AWS::Serverless::Function in template.yaml is built (BuildMethod
    # rust-cargolambda, CodeUri = functions/<crate>, BuildProperties.Binary =
    # its bin): `sam build` with no resource id builds them all, each in its
    # crate's directory, so with that crate's features only (no aws-config,
    # no aws-lc: docs/benchmarks.md).
    # - cargo-lambda (and the zig it brings, `python -m ziglang`) must come
    #   first on PATH; the venv's python is the one that has ziglang.
    # - A target directory of its own: the Lambda builds (aarch64, zig linker)
    #   neither take the dev target's lock for minutes nor change the
    #   fingerprints of its host artifacts. SAM's copy step reads the same
    #   CARGO_TARGET_DIR (cargo metadata), so it finds target/lambda/<bin>.
    # - Release mode always (the workspace profile: LTO, strip, panic=abort):
    #   a stray SAM_BUILD_MODE=debug would produce 100+ MB binaries.
    unset SAM_BUILD_MODE
    export CARGO_TARGET_DIR=${PLATFORMSYNC_SAM_TARGET_DIR:-$root/.aws-sam/cargo-target}
    PATH="$venv/bin:$PATH" "$venv/bin/sam" build --template template.yaml \
      --beta-features --build-in-source
    # The stripped size of every bootstrap (Lambda target: <= 6 MB each,
    # recorded in docs/benchmarks.md).
    limit=$((6 * 1000 * 1000)) over=0
    echo "stripped arm64 bootstrap sizes (target: at most 6 MB = 6,000,000 bytes each)"
    for f in .aws-sam/build/*/bootstrap; do
      [ -f "$f" ] || continue
      size=$(stat -c %s "$f")
      note=""
      if command -v file >/dev/null && ! file "$f" | grep -q ', stripped'; then note=" (NOT stripped)"; fi
      if [ "$size" -gt "$limit" ]; then note="$note (over 6 MB)"; over=1; fi
      awk -v f="$f" -v s="$size" -v n="$note" 'BEGIN { printf "%-50s %9d bytes  %5.2f MB%s\n", f, s, s / 1e6, n }'
    done
    [ "$over" = 0 ] || echo "template-tools: some bootstrap is over the 6 MB target (see docs/benchmarks.md)" >&2
    ;;
  *) echo "usage: $0 lint|iam|sam-build" >&2; exit 2 ;;
esac
