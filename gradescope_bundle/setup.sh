#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (Ubuntu 22.04, Python 3.10
# by default). It installs the engine into a world-readable virtual environment, creates the
# unprivileged user that runs students' code, and locks the bundle (hidden tests, reference) away.
#
# Environment (for tests and other hosts; Gradescope sets none of them):
#   AUTOGRADER_ROOT     where Gradescope's layout lives (default /autograder)
#   DLGRADE_PYTHON      the interpreter for the venv (default python3; 3.10 or newer)
#   DLGRADE_WHEELHOUSE  install offline from this folder of wheels (pip --no-index --find-links)
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"  # useradd, even when called with a user's PATH

ROOT="${AUTOGRADER_ROOT:-/autograder}"
SRC="$ROOT/source"
VENV="$ROOT/dlgrade-venv"
PY="${DLGRADE_PYTHON:-python3}"
WORKER_USER="$(sed -n 's/.*"worker_user": *"\([^"]*\)".*/\1/p' "$SRC/bundle.json")"
WORKER_USER="${WORKER_USER:-dlgrade-worker}"

say() { echo "[dlgrade setup] $*"; }

# 1. Python 3.10+ that can make a venv with pip (Ubuntu ships venv/ensurepip as a separate package)
rm -rf "$VENV"
if ! command -v "$PY" >/dev/null 2>&1 || ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
    say "installing python3, python3-venv and python3-pip with apt"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
    || { echo "dlgrade needs Python 3.10 or newer; set DLGRADE_PYTHON" >&2; exit 1; }

# 2. the user that runs students' code (no home, no shell, no password)
if ! id -u "$WORKER_USER" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$WORKER_USER"
    say "created user $WORKER_USER"
fi

# 3. into the venv: torch's CPU build (not PyPI's CUDA build), then the pinned rest
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q)
if [ -n "${DLGRADE_WHEELHOUSE:-}" ]; then
    "${PIP[@]}" --no-index --find-links "$DLGRADE_WHEELHOUSE" -r "$SRC/requirements.txt"
else
    "${PIP[@]}" --index-url https://download.pytorch.org/whl/cpu "$(grep '^torch==' "$SRC/requirements.txt")"
    "${PIP[@]}" -r "$SRC/requirements.txt"
fi

# 4. the engine goes into the venv: the worker (another user) imports dlgrade.worker from there,
#    while the source folder becomes unreadable to it
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
rm -rf "$SITE/dlgrade"
cp -r "$SRC/dlgrade" "$SITE/dlgrade"
cp "$SRC/dlgrade_gradescope.py" "$SITE/dlgrade_gradescope.py"
"$VENV/bin/python" -m compileall -q "$SITE/dlgrade" "$SITE/dlgrade_gradescope.py" >/dev/null
chmod -R a+rX,go-w "$VENV"

# 5. hidden tests, reference solutions and this bundle: root only
chown -R root:root "$SRC"
chmod 700 "$SRC"

# 6. prove the environment works before Gradescope saves the image
"$VENV/bin/python" -I -c 'import torch, numpy, pytest, dlgrade.grade, dlgrade_gradescope; print("torch", torch.__version__)'
say "ready: venv $VENV, worker user $WORKER_USER, $("$VENV/bin/python" --version)"
