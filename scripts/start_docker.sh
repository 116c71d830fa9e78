#!/usr/bin/env bash
# Make sure a Docker engine answers: install docker.io when the engine is missing (Debian/Ubuntu,
# as root), start dockerd in the background when it is not running, wait until it answers.
# Idempotent: does nothing when `docker info` already works.
set -euo pipefail
log() { printf '[docker] %s\n' "$*" >&2; }
if docker info >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        log "no Docker engine: install Docker (https://docs.docker.com/engine/install/) or use --sandbox process"
        exit 3
    fi
    log "installing docker.io"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null \
        || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >/dev/null; }
fi
if [[ $(id -u) -ne 0 ]]; then
    log "dockerd is installed but not running; start it as root (systemctl start docker)"
    exit 3
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
    log "starting dockerd (log: /var/log/dlgrade-dockerd.log)"
    nohup dockerd >/var/log/dlgrade-dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        log "engine ready: $(docker version --format '{{.Server.Version}}')"
        exit 0
    fi
    sleep 1
done
log "dockerd did not answer within 60 s; see /var/log/dlgrade-dockerd.log"
exit 3
