# shellcheck shell=bash
# What the scripts beside this one share; sourced, never run:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sets `root` (the repository) and `state` (PLATFORMSYNC_STATE_DIR, default
# .local, made absolute). A script that sources it defines `say` before
# calling venv_install.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
state=${PLATFORMSYNC_STATE_DIR:-$root/.local}
case $state in /*) ;; *) state=$root/$state ;; esac

# venv_install VENV LOCK WHAT [FIND_PYTHON]: the pinned set LOCK in VENV,
# installed again only when LOCK changes (the stamp names its hash).
# FIND_PYTHON, a command that prints the interpreter VENV is made with, runs
# only when VENV does not exist yet (default python3).
venv_install() {
  local venv=$1 lock=$2 what=$3 find_python=${4:-} stamp python=python3
  stamp=$venv/.installed-$(sha256sum "$lock" | cut -c1-16)
  [ -f "$stamp" ] && return 0
  say "installing pinned $what into $venv"
  mkdir -p "$(dirname "$venv")"
  if [ ! -x "$venv/bin/python" ]; then
    [ -z "$find_python" ] || python=$("$find_python")
    "$python" -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
  rm -f "$venv"/.installed-*
  touch "$stamp"
}

# A loopback port nothing listens on (the kernel's pick).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# private_stack DIR [BIN...]: a local stack of its own in DIR for the rest
# of this script, stopped when the script exits whatever happens, with its
# stack.env sourced. BINs are built first, with the local runner that serves
# the functions (from the repository root).
private_stack() {
  export PLATFORMSYNC_STATE_DIR=$1
  shift
  trap '"$root/infra/scripts/local-stack.sh" down' EXIT
  if [ $# -gt 0 ]; then
    echo "Building (first run: a few minutes)..."
    cargo build --quiet --locked --bin platformsync-runner "${@/#/--bin=}"
  fi
  "$root/infra/scripts/local-stack.sh" up
  # shellcheck disable=SC1091
  source "$PLATFORMSYNC_STATE_DIR/stack.env"
}
