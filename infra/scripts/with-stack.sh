#!/usr/bin/env bash
# Runs a command against a private local stack (.local/bench), started for it
# and stopped after it, whatever happens: for load runs and benchmarks.
set -euo pipefail
# shellcheck source=infra/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$root"
private_stack "$root/.local/bench"
"$@"
