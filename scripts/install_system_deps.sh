#!/usr/bin/env bash
# Debian packages the full test suite uses, installed only when missing (idempotent, as root):
#   docker.io    the Docker engine for the docker sandbox tests (scripts/start_docker.sh starts it)
#   debootstrap  builds the sandbox's base image offline (sandbox/build.sh)
#   chromium     renders the HTML reports headless in tests/test_report.py
#   patch        applies the full-marks fixture patches
set -euo pipefail
log() { printf '[deps] %s\n' "$*" >&2; }
declare -A need=([dockerd]=docker.io [debootstrap]=debootstrap [chromium]=chromium [patch]=patch)
missing=()
for cmd in "${!need[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${missing[*]}: install them (Debian/Ubuntu: sudo apt-get install -y ${missing[*]}); their tests skip meanwhile"
    exit 0
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${missing[@]}" >/dev/null; }
