#!/usr/bin/env bash
# Set up a fresh machine: .venv with the project from the dependency lock, and redis-server.
# Safe to run twice: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
# The lock of the whole dependency set (scripts/lock.sh refreshes it): torch's CUDA build on hosts
# with an NVIDIA driver, its CPU build (torch==2.13.0+cpu) elsewhere, so nothing pulls CUDA into CI.
if command -v nvidia-smi >/dev/null 2>&1; then LOCK=requirements/cuda.txt; else LOCK=requirements/cpu.txt; fi
STAMP=$VENV/.installed-$(cat "$LOCK" pyproject.toml | sha1sum | cut -c1-12)

if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$STAMP" ]; then
  echo "==> installing $LOCK and the project into $VENV"
  "$VENV/bin/python" -m pip install -q "pip==26.3"
  "$VENV/bin/pip" install -q -r "$LOCK"
  "$VENV/bin/pip" install -q --no-deps -e .
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
fi

APT_UPDATED=""
need() {  # need COMMAND DEBIAN_PACKAGE... : install the packages when COMMAND is missing
  local command=$1; shift
  command -v "$command" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing $* from Debian"
    [ -n "$APT_UPDATED" ] || { apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "$command is missing: install it (Debian/Ubuntu: sudo apt-get install $*)" >&2
    exit 1
  fi
}

need_path() {  # need_path PATH DEBIAN_PACKAGE... : install the packages when PATH is missing
  local path=$1; shift
  [ -e "$path" ] && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing $* from Debian"
    [ -n "$APT_UPDATED" ] || { apt-get update -qq; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  else
    echo "$path is missing: install it (Debian/Ubuntu: sudo apt-get install $*)" >&2
    exit 1
  fi
}

need redis-server redis-server
if [ "${1:-}" = "test" ]; then
  need chromium chromium chromium-driver  # the dashboard's end-to-end test
  need go golang-go  # the Go client's tests (clients/go, GOPATH mode)
  need_path /usr/share/gocode/src/github.com/gomodule/redigo golang-github-gomodule-redigo-dev
fi
if [ "${1:-}" = "image" ]; then  # make image-test: build the image without a registry
  need podman podman
  need runc runc  # crun refuses hosts with cgroup v1 and v2 controllers side by side
  need debootstrap debootstrap debian-archive-keyring
fi
