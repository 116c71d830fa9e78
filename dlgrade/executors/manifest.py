"""A class run on a cluster, written down as plain JSON: what to grade, how, and how it went.

Layout inside the results folder (the worker never sees it: the whole results folder is hidden)::

    RESULTS/.dlgrade/slurm/<run>/manifest.json      the run: assignment, seed, limits, students, shards, job ids
    RESULTS/.dlgrade/slurm/<run>/grade.sbatch       the job array's script (one task per shard)
    RESULTS/.dlgrade/slurm/<run>/collect.sbatch     the final job: grades.csv and the reports
    RESULTS/.dlgrade/slurm/<run>/progress/<i>.json  the student task i is grading now
    RESULTS/.dlgrade/slurm/<run>/outcome.json       why students were left unfinished (the final job writes it)
    RESULTS/.dlgrade/slurm/<run>/logs/              the tasks' output

Results themselves come back only through ``RESULTS/<student>/results.json``, which the engine
writes atomically, test by test (``extra_data.complete`` stays false until the last test).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dlgrade.config import AssignmentConfig, load_assignment
from dlgrade.grade import GradeOptions
from dlgrade.results import read_results, write_json_atomic

RUNS = Path(".dlgrade") / "slurm"
VERSION = 1


@dataclass(frozen=True)
class Manifest:
    run: str                                  # the run's folder name: a timestamp
    assignment: str
    root: str                                 # the project checkout (assignments/, graders/ ...), on shared storage
    results: str
    seed: int
    sandbox: str
    device: str
    limits: dict[str, Any]                    # the resolved [limits] (assignment.toml < environment < command line)
    students: dict[str, str]                  # every student of the class: id -> submission path
    shards: tuple[tuple[str, ...], ...]       # the students each array task grades, in order
    python: str                               # the interpreter the tasks run (a venv on shared storage)
    settings: dict[str, Any]                  # the SlurmSettings used
    backend_options: tuple[tuple[str, Any], ...] = ()
    force: bool = False
    created: float = 0.0
    array_job: str = ""
    collect_job: str = ""
    version: int = VERSION

    @property
    def folder(self) -> Path:
        return Path(self.results) / RUNS / self.run

    @property
    def path(self) -> Path:
        return self.folder / "manifest.json"

    def config(self) -> AssignmentConfig:
        return load_assignment(self.assignment, Path(self.root)).with_limits(**self.limits)

    def grade_options(self) -> GradeOptions:
        return GradeOptions(sandbox=self.sandbox, seed=self.seed, jobs=1, force=self.force, device=self.device,
                            backend_options=self.backend_options)

    def task_of(self, student: str) -> str:
        """``<array job>_<index>`` of the task that grades ``student`` in this run ('' if none)."""
        for i, shard in enumerate(self.shards):
            if student in shard:
                return f"{self.array_job}_{i}"
        return ""

    def counts_as_done(self, student: str, st: ResultState) -> bool:
        """Complete results this run does not grade again: with ``--force``, only those written since it began."""
        in_run = any(student in shard for shard in self.shards)
        return st.state == "done" and (not self.force or not in_run or st.mtime >= self.created)

    def save(self) -> Path:
        write_json_atomic(self.path, asdict(self))
        return self.path

    def with_jobs(self, array_job: str, collect_job: str = "") -> Manifest:
        return replace(self, array_job=array_job, collect_job=collect_job)


def load_manifest(path: Path) -> Manifest:
    """Read a manifest back, checking every field's type (the file is plain JSON written by dlgrade)."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise ValueError(f"{path}: not a dlgrade run manifest of version {VERSION}")
    known = {f.name for f in fields(Manifest)}
    data = {k: v for k, v in data.items() if k in known}
    data["shards"] = tuple(tuple(str(s) for s in shard) for shard in data.get("shards", []))
    data["backend_options"] = tuple((str(k), v) for k, v in data.get("backend_options", []))
    data["students"] = {str(k): str(v) for k, v in data.get("students", {}).items()}
    if not isinstance(data.get("seed"), int) or not isinstance(data.get("limits"), dict):
        raise ValueError(f"{path}: seed and limits are missing")
    return Manifest(**data)


def runs(results: Path) -> list[Manifest]:
    """The runs recorded in a results folder, oldest first (unreadable manifests are left out)."""
    out = []
    for path in sorted((Path(results) / RUNS).glob("*/manifest.json")):
        try:
            out.append(load_manifest(path))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(out, key=lambda m: (m.created, m.run))


def new_run_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"


# ----------------------------------------------------------------------------- students' results


@dataclass(frozen=True)
class ResultState:
    state: str              # "done" | "partial" (cut off, resumable) | "failed" (grader error, stopped) | "missing"
    score: float = 0.0
    max_score: float = 0.0
    status: str = ""        # extra_data.status
    reason: str = ""
    tests: int = 0
    mtime: float = 0.0
    data: dict[str, Any] = field(default_factory=dict, repr=False)


def result_state(results: Path, student: str) -> ResultState:
    """What ``RESULTS/<student>/results.json`` says. "done" is what local grading skips: tests, no grader errors,
    ``complete`` true; a "stopped" student (its task was killed by its own code) is done too."""
    path = Path(results) / student / "results.json"
    try:
        data = read_results(path)
        mtime = path.stat().st_mtime
    except (OSError, ValueError):
        return ResultState("missing")
    extra = data.get("extra_data", {}) if isinstance(data.get("extra_data"), dict) else {}
    tests: list[Any] = data["tests"] if isinstance(data.get("tests"), list) else []
    errors = extra.get("grader_errors")
    complete = extra.get("complete", True) is True
    state = "done" if tests and not errors and complete else ("partial" if not complete and not errors else "failed")
    try:
        score, max_score = float(data.get("score", 0.0)), float(extra.get("max_score", 0.0))
    except (TypeError, ValueError):
        score, max_score, state = 0.0, 0.0, "failed"
    return ResultState(state, score, max_score, str(extra.get("status", "")), str(extra.get("reason", "")), len(tests),
                       mtime, data)
