# dlgrade — `make demo` and `make test` are the two commands a new machine needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.dlgrade-installed
ASSIGNMENT ?= lstm_lm_vit
SUBMISSIONS ?= dist/demo/submissions
OUT    ?= dist/results
JOBS   ?= $(shell nproc 2>/dev/null || echo 1)

.PHONY: setup test lint demo release grade validate bench bench-peers clean sandbox-image sandbox-image-gpu bundle report slurm-cluster

setup: $(STAMP)

# Re-installs only when the dependency list changes; torch is pinned (2.13.0, CPU build offline).
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

lint: setup
	$(BIN)/ruff check dlgrade graders reference_solutions assignments tests scripts gradescope_bundle
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q --durations=15

release: setup
	$(BIN)/dlgrade release $(ASSIGNMENT) --out dist

# Gradescope autograder: dist/$(ASSIGNMENT)/autograder.zip (docs/gradescope.md)
bundle: setup
	$(BIN)/dlgrade bundle $(ASSIGNMENT) --out dist

# HTML/Markdown reports and the class summary for a graded folder (dlgrade grade writes them too)
report: setup
	$(BIN)/dlgrade report $(OUT)

validate: setup
	$(BIN)/dlgrade validate $(ASSIGNMENT) --out dist -j $(JOBS)

grade: setup
	$(BIN)/dlgrade grade $(ASSIGNMENT) $(SUBMISSIONS) --out $(OUT)

demo: setup
	$(BIN)/dlgrade release $(ASSIGNMENT) --out dist
	$(BIN)/python scripts/demo_submissions.py $(ASSIGNMENT) dist/demo/submissions
	@# the demo class holds two students that cannot be graded (an empty folder, a text file named .zip): --allow-broken
	@# keeps the exit status 0; without it `dlgrade grade` exits 1 after listing them
	$(BIN)/dlgrade grade $(ASSIGNMENT) dist/demo/submissions --out dist/demo/results -j 2 --seed 2026 --allow-broken
	$(BIN)/python scripts/demo_submissions.py --check dist/demo/results
	@echo "Demo done: student release in dist/$(ASSIGNMENT)/student.zip, results in dist/demo/results/<student>/results.json, grades in dist/demo/results/grades.csv"

# The docker sandbox's image, built offline (debootstrap + a local wheelhouse; see sandbox/README.md).
# Cached by content: a second run with nothing changed takes a second. Set DLGRADE_BASE_IMAGE=python:3.11-slim
# to build FROM a registry image instead.
sandbox-image: setup
	bash scripts/start_docker.sh
	PYTHON=$(BIN)/python bash sandbox/build.sh cpu

# GPU image: needs a CUDA base from a registry, e.g. DLGRADE_BASE_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu22.04
sandbox-image-gpu: setup
	PYTHON=$(BIN)/python DLGRADE_NO_WHEELHOUSE=1 bash sandbox/build.sh gpu

# A single-node Slurm cluster on this machine (as root), to try `dlgrade grade --executor slurm` (docs/cluster.md)
slurm-cluster:
	bash scripts/install_slurm.sh
	bash scripts/start_slurm.sh

# Grading speed per assignment, sandbox and -j (docs/performance.md); BENCH_ARGS=--quick takes about a minute
bench: setup
	$(BIN)/python scripts/bench.py $(BENCH_ARGS)

# otter-grader side by side on a shared small suite, from its own pinned venv (.venv-peers)
PEERS := .venv-peers
$(PEERS)/.installed: scripts/bench_peers/requirements.txt
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install -q -r scripts/bench_peers/requirements.txt
	@touch $@

bench-peers: setup $(PEERS)/.installed
	$(BIN)/python scripts/bench_peers/run.py $(BENCH_ARGS)

clean:
	rm -rf dist
