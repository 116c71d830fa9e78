#!/usr/bin/env bash
# Build the dlgrade sandbox image offline: `make sandbox-image` runs this.
#
#   sandbox/build.sh [cpu|gpu]
#
# 1. base image   DLGRADE_BASE_IMAGE if set (e.g. python:3.11-slim from a registry); else
#                 dlgrade-base:bookworm, a minimal Debian with python3 made by debootstrap and
#                 `docker import` (no registry needed).
# 2. wheelhouse   pinned wheels for the base image's Python, from the host (pip download;
#                 torch's CPU build from a local wheel or the CPU index), installed in the build
#                 with `pip install --no-index`.
# 3. image        dlgrade-sandbox:cpu (or :gpu) FROM the base.
#
# Idempotent and cached by content: each image carries a label with the hash of what it was
# built from; when the hash matches, the step is skipped (a second run takes seconds).
# Outputs (rootfs, wheelhouse, build context) go to dist/sandbox/ (DLGRADE_SANDBOX_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
FLAVOUR=${1:-cpu}
WORK=${DLGRADE_SANDBOX_DIR:-dist/sandbox}
IMAGE=${DLGRADE_IMAGE:-dlgrade-sandbox:$FLAVOUR}
SUITE=${DLGRADE_DEBIAN_SUITE:-bookworm}
MIRROR=${DLGRADE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PY=${PYTHON:-python3}
log() { printf '[sandbox-image] %s\n' "$*" >&2; }
hash_of() { sha256sum | cut -c1-16; }
label_of() { docker image inspect "$1" --format "{{ index .Config.Labels \"$2\" }}" 2>/dev/null || true; }

if ! docker info >/dev/null 2>&1; then
    log "the Docker engine is not reachable (is dockerd running? try: sudo systemctl start docker, or scripts/start_docker.sh as root)"
    exit 3
fi
mkdir -p "$WORK"
t0=$(date +%s)

# ---- 1. base image -------------------------------------------------------------------------
if [[ -n "${DLGRADE_BASE_IMAGE:-}" ]]; then
    BASE=$DLGRADE_BASE_IMAGE
    docker image inspect "$BASE" >/dev/null 2>&1 || docker pull "$BASE"
elif [[ "$FLAVOUR" == gpu ]]; then
    log "the GPU image needs a CUDA base from a registry: set DLGRADE_BASE_IMAGE (e.g. nvidia/cuda:12.8.1-runtime-ubuntu22.04)"
    exit 2
else
    BASE=dlgrade-base:$SUITE
    PACKAGES=python3,python3-venv
    key=$(printf 'v1 %s %s %s\n' "$SUITE" "$PACKAGES" "$(sed -n '/^# ---- 1/,/^# ---- 2/p' "$0")" | hash_of)
    if [[ "$(label_of "$BASE" dlgrade.key)" == "$key" ]]; then
        log "base $BASE is up to date ($key)"
    else
        command -v debootstrap >/dev/null || { log "debootstrap is missing: apt-get install -y debootstrap"; exit 2; }
        rootfs=$WORK/rootfs-$SUITE
        rm -rf "$rootfs"
        log "debootstrap $SUITE (minbase + $PACKAGES) into $rootfs"
        debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
               "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/var/log/*
        log "docker import -> $BASE"
        tar --numeric-owner -C "$rootfs" -c . | docker import \
            --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            --change "LABEL dlgrade.key=$key" --change 'CMD ["python3"]' - "$BASE" >/dev/null
        rm -rf "$rootfs"
    fi
fi
base_id=$(docker image inspect "$BASE" --format '{{.Id}}')
pyver=$(docker run --rm --network none --entrypoint python3 "$BASE" -c 'import sys; print("%d%d" % sys.version_info[:2])')
log "base $BASE: Python ${pyver:0:1}.${pyver:1}"

# ---- 2. wheelhouse -------------------------------------------------------------------------
ctx=$WORK/context-$FLAVOUR
wheels=$ctx/wheels
mkdir -p "$wheels"
cp sandbox/requirements-worker.txt "$ctx/"
if [[ "${DLGRADE_NO_WHEELHOUSE:-}" == 1 ]]; then
    rm -f "$wheels"/*.whl   # the build installs from the index instead
else
    req_key=$(cat sandbox/requirements-worker.txt | hash_of)-$pyver-$FLAVOUR
    if [[ "$(cat "$wheels/.key" 2>/dev/null)" != "$req_key" ]]; then
        rm -f "$wheels"/*.whl
        # torch's CPU build: a local wheel (DLGRADE_TORCH_WHEELS, default /opt/wheels) or the CPU index
        extra=()
        local_torch=$(ls "${DLGRADE_TORCH_WHEELS:-/opt/wheels}"/torch-*-cp"$pyver"-*.whl 2>/dev/null | head -1 || true)
        if [[ -n "$local_torch" ]]; then
            extra=(--find-links "$(dirname "$local_torch")")
        elif [[ "$FLAVOUR" == cpu ]]; then
            extra=(--extra-index-url "${TORCH_INDEX:-https://download.pytorch.org/whl/cpu}")
        fi
        log "pip download the worker's wheels for cp$pyver into $wheels"
        "$PY" -m pip download -q --only-binary=:all: --python-version "$pyver" --implementation cp \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            "${extra[@]}" -r sandbox/requirements-worker.txt -d "$wheels"
        echo "$req_key" >"$wheels/.key"
    fi
fi

# ---- 3. sandbox image ----------------------------------------------------------------------
dockerfile=sandbox/Dockerfile.$FLAVOUR
key=$( { echo "$base_id"; cat "$dockerfile" sandbox/requirements-worker.txt; ls "$wheels"; } | hash_of)
if [[ "$(label_of "$IMAGE" dlgrade.key)" == "$key" ]]; then
    log "$IMAGE is up to date ($key)"
else
    log "docker build $IMAGE FROM $BASE"
    docker build -q --build-arg BASE="$BASE" --label dlgrade.key="$key" -f "$dockerfile" -t "$IMAGE" "$ctx" >/dev/null
fi
size=$(docker image inspect "$IMAGE" --format '{{.Size}}')
log "$IMAGE ready: $((size / 1024 / 1024)) MB, $(( $(date +%s) - t0 )) s"
