#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and no Docker (Python 3.10+ with torch built for CUDA and pytest;
# this project carried over as a working tree). No internet needed.
#
#   bash scripts/gpu_check.sh                 # on the GPU machine; writes $OUT/gpu_check.json and $OUT/gpu_check.log if OUT is set
#   DEVICE=cpu bash scripts/gpu_check.sh      # dry run here: the CPU stands in for the GPU
#   bash scripts/gpu_check.sh --fetch-wheels  # here, with PyPI: the wheels the GPU machine may lack (nbformat and its
#                                             # needs, for Python 3.12) into bench/wheels; carry that folder along
#
# For every assignment: reference, one catalogued bug and the skeleton graded with --device cuda twice (same seed)
# and once on the CPU; the worker must report cuda, the two GPU runs must agree in score and per-test verdicts, the
# GPU verdicts must equal the CPU's; it prints seconds per submission and per part, CPU against GPU.
# Time-boxed: BUDGET_S (default 400 s) for the grading, the whole script under 8 minutes (the driver is killed at 440 s).
# Settings: PYTHON (default python3), DEVICE (default cuda), BUDGET_S, ASSIGNMENTS (comma-separated),
# WHEELS (a folder of wheels to install offline when a dependency is missing; default bench/wheels).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
BUDGET_S=${BUDGET_S:-400}
WHEELS=${WHEELS:-bench/wheels}
log() { printf '[gpu-check] %s\n' "$*" >&2; }
if [[ "${1:-}" == "--fetch-wheels" ]]; then   # pins as in the project's venv (pip freeze of .venv)
    mkdir -p "$WHEELS"
    platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
    exec "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
        -d "$WHEELS" nbformat==5.11.1 fastjsonschema==2.22.3 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
        referencing==0.37.0 rpds-py==2026.9.1 jupyter-core==5.9.1 platformdirs==4.14.9 traitlets==5.16.1 pytest-timeout==2.4.0
fi
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    exec > >(tee "$OUT/gpu_check.log") 2>&1
fi
started=$(date +%s)

# 1. dlgrade importable without downloads: the working tree on PYTHONPATH; missing dependencies from local wheels
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
missing=$(timeout 60 "$PY" - <<'EOF'
import importlib.util, pathlib
need = ["torch", "numpy", "pytest", "jinja2", "rich", "packaging"]
if any(p.read_text().find(".ipynb") >= 0 for p in pathlib.Path("assignments").glob("*/assignment.toml")):
    need.append("nbformat")
print(" ".join(n for n in need if importlib.util.find_spec(n) is None))
EOF
)
if [[ -n "$missing" ]]; then
    if compgen -G "$WHEELS/*.whl" >/dev/null; then   # never a torch wheel: the machine's CUDA build must stay
        log "missing: $missing; installing the wheels of $WHEELS offline into /tmp/dlgrade-site"
        timeout 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/dlgrade-site $(ls "$WHEELS"/*.whl | grep -v '/torch-') \
            || log "pip could not install the wheels"
        export PYTHONPATH="$PYTHONPATH:/tmp/dlgrade-site"
    else
        log "missing Python packages: $missing (no wheels in $WHEELS; see docs/performance.md, 'GPU check')"
    fi
fi
timeout 60 "$PY" -c "import dlgrade.grade" || { log "dlgrade does not import; stopping"; exit 2; }

# 2. the machine
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(uname -r)"
command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
    | sed 's/^/[gpu-check] gpu: /' >&2

# 3. the process sandbox's namespaces: some container runtimes refuse them; then grade without (and say so)
if [[ $(id -u) -eq 0 ]] && ! timeout 20 unshare --mount --net --pid --fork true 2>/dev/null; then
    log "this machine refuses new mount/network/PID namespaces: grading with DLGRADE_NAMESPACES=0 (uid and rlimits only)"
    export DLGRADE_NAMESPACES=0
fi

# 4. grade and compare (the driver holds the per-step time boxes)
timeout -s KILL 440 "$PY" scripts/gpu_check.py --device "$DEVICE" --budget "$BUDGET_S" ${ASSIGNMENTS:+--assignments "$ASSIGNMENTS"} \
    ${OUT:+--out "$OUT"}
rc=$?
log "finished in $(( $(date +%s) - started )) s (exit $rc)"
exit $rc
