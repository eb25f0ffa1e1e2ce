#!/usr/bin/env bash
# `make chaos`: the soak run of issue 19 (see docs/reliability.md). Builds
# what it needs, starts a private local stack (.local/chaos), runs
# platformsync-chaos with its defaults plus CHAOS_ARGS (or this script's
# arguments), writes docs/reliability.md, and stops exactly what it started.
# Exits non-zero when anything is lost, delivered twice or leaked.
#
#   make chaos                                         # the full default run
#   make chaos CHAOS_ARGS="--transactions 2000 --kills 3 --chaos-seconds 120"
#   infra/scripts/chaos.sh --seed 7                    # replay seed 7
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
private_stack "${PLATFORMSYNC_CHAOS_STATE_DIR:-$root/.local/chaos}" platformsync-chaos
# shellcheck disable=SC2086 # CHAOS_ARGS is a list of flags on purpose.
target/debug/platformsync-chaos --report docs/reliability.md \
  --state-dir "${PLATFORMSYNC_STATE_DIR#"$root"/}/runs" ${CHAOS_ARGS:-} "$@"
