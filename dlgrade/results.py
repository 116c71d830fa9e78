"""Results: frozen records, Gradescope's results.json, and the class grades.csv."""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

MAX_TEST_OUTPUT = 8_000      # characters per test shown to the student
MAX_TOP_OUTPUT = 20_000


@dataclass(frozen=True)
class TestResult:
    name: str
    number: str
    score: float
    max_score: float
    status: str                  # "passed" | "failed"
    output: str
    visibility: str
    part: str
    nodeid: str
    diagnosis: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    spec: str = ""               # the handout sentence or interface line the test checks
    advice: bool = False         # 0 points: behaviour the handout does not ask for, shown as advice
    fault: str = ""              # the student's code broke the test itself: one of FAULTS ("" otherwise)


# How a student's code can break a test rather than fail it; the class summary flags these students.
FAULTS = {"import": "did not import", "limit": "timed out or ran out of memory", "crash": "crashed the worker"}


@dataclass(frozen=True)
class ClaimRecord:
    """A result a notebook's output claims (``[[claims]]``), next to what the grader re-measured on generated data."""

    name: str
    notebook: str
    kind: str                            # "accuracy" (a fraction) | "perplexity" | "loss"
    claimed: float | None                # the final value found in the notebook's output; None: none found
    cell: int | None = None              # where: the cell's number (every cell counted from the top) ...
    execution_count: int | None = None   # ... and its In [n]
    line: str = ""                       # the output line it was read from
    log_found: bool = False              # a training log was found (at least min_log_lines lines, and one)
    log_lines: int = 0
    log_cells: tuple[int, ...] = ()
    measured: float | None = None        # the threshold test's value on generated data; None: it did not record one
    measured_visibility: str = ""        # that test's visibility: reports show the value only where they show the test
    metric: str = ""                     # the threshold's metric ("test accuracy")
    threshold_name: str = ""
    threshold: float | None = None       # the threshold's value, and its direction ("higher" | "lower")
    direction: str = ""
    handout_target: float | None = None  # the handout's target on the real data set
    part: str = ""
    rule: str = "none"                   # "none" (log and value found) | "zero" | "warn" | "off" (not applied)
    message: str = ""                    # what is missing and what the rule did ("" when nothing is missing)
    spec: str = ""


@dataclass(frozen=True)
class SubmissionResult:
    student: str
    assignment: str
    seed: int
    tests: tuple[TestResult, ...]
    execution_time: float
    output: str
    warnings: tuple[str, ...] = ()
    grader_errors: tuple[str, ...] = ()
    stdout: str = ""
    complete: bool = True        # False while tests are still being graded (results are written test by test)
    status: str = "graded"       # "graded" | "not graded" (nothing gradable was submitted) | "grader error"
    reason: str = ""             # why, when not graded
    claims: tuple[ClaimRecord, ...] = ()   # notebook training-log claims (extra_data.claims)
    leftovers: tuple[str, ...] = ()         # processes the submission left running, killed when its worker ended
    pending: tuple[TestResult, ...] = ()    # while incomplete: the tests not yet run (0 points), for a cut-off run

    @property
    def score(self) -> float:
        return round(sum(t.score for t in self.tests), 4)

    @property
    def max_score(self) -> float:
        return round(sum(t.max_score for t in self.tests), 4)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n[... truncated ...]"


def to_gradescope(result: SubmissionResult) -> dict[str, Any]:
    """Gradescope's results.json (https://gradescope-autograders.readthedocs.io/en/latest/specs/)."""
    tests = [{"name": t.name, "number": t.number, "score": t.score, "max_score": t.max_score, "status": t.status,
              "output": _clip(t.output, MAX_TEST_OUTPUT), "visibility": t.visibility,
              **({"tags": [t.part]} if t.part else {})} for t in result.tests]
    status = result.status if result.complete else "in progress"
    return {
        "score": result.score,
        "execution_time": round(result.execution_time, 3),
        "output": _clip(result.output, MAX_TOP_OUTPUT),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"seed": result.seed, "assignment": result.assignment, "student": result.student,
                       "max_score": result.max_score, "warnings": list(result.warnings),
                       "grader_errors": list(result.grader_errors), "complete": result.complete,
                       "status": status, "reason": result.reason,
                       "diagnoses": sorted({t.diagnosis for t in result.tests if t.diagnosis}),
                       "tests": [_shallow(t) for t in result.tests], "claims": [asdict(c) for c in result.claims],
                       "leftovers": list(result.leftovers),
                       **({} if result.complete else {"pending": [_shallow(t) for t in result.pending]})},
    }


def _json_safe(value: Any) -> Any:
    """Strict JSON: non-finite floats become null, unknown objects their string."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def _shallow(t: TestResult) -> dict[str, Any]:
    """A test's fields as a dict, without asdict's deep copy (written at once; results are written after every test)."""
    return {f.name: getattr(t, f.name) for f in fields(t)}


def write_json_atomic(path: Path, data: dict[str, Any], indent: int | None = 2) -> None:
    """Write JSON by one rename. ``indent=None``: compact, with json's C encoder (about ten times faster)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_json_safe(data), indent=indent, allow_nan=False))
    os.replace(tmp, path)


def write_results(result: SubmissionResult, out_dir: Path) -> Path:
    path = out_dir / "results.json"
    write_json_atomic(path, to_gradescope(result), indent=2 if result.complete else None)  # partial: after every test
    if result.stdout:
        (out_dir / "student_output.txt").write_text(result.stdout)
    return path


def read_results(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@dataclass(frozen=True)
class GradeRow:
    """One student's line of grades.csv and of the command's table, read back from a results.json."""

    student: str
    score: float
    max_score: float
    parts: dict[str, float]
    seed: int | str
    status: str                  # "graded", "not graded", "grader error", "in progress"
    reason: str = ""
    faults: tuple[str, ...] = ()  # "<what> (<first test's message>)" for each FAULTS kind the student's code showed
    leftovers: tuple[str, ...] = ()  # processes its code left running, killed when its worker ended (extra_data.leftovers)

    @property
    def label(self) -> str:
        """The status as the table and grades.csv show it ("not graded: <reason>")."""
        return f"{self.status}: {self.reason}" if self.reason and self.status != "graded" else self.status

    @classmethod
    def from_results(cls, data: dict[str, Any]) -> GradeRow:
        extra = data.get("extra_data", {})
        parts: dict[str, float] = {}
        for t in data.get("tests", []):
            for tag in t.get("tags", []):
                parts[tag] = round(parts.get(tag, 0.0) + float(t["score"]), 4)
        status = str(extra.get("status") or ("grader error" if extra.get("grader_errors") else "graded"))
        if status == "graded" and extra.get("grader_errors"):
            status = "grader error"
        return cls(student=str(extra.get("student", "?")), score=float(data["score"]),
                   max_score=float(extra.get("max_score", 0.0)), parts=parts, seed=extra.get("seed", ""),
                   status=status, reason=str(extra.get("reason", "")), faults=faults_of(extra.get("tests", [])),
                   leftovers=tuple(n for n in _list(extra.get("leftovers")) if isinstance(n, str)))


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def faults_of(tests: Any) -> tuple[str, ...]:
    """What broke a student's tests (extra_data.tests entries), one line per kind with its first message."""
    first: dict[str, str] = {}
    for t in tests if isinstance(tests, list) else []:
        kind = t.get("fault") if isinstance(t, dict) else None
        if isinstance(kind, str) and kind in FAULTS and kind not in first:
            first[kind] = " ".join(str(t.get("output", "")).split())[:200]
    return tuple(f"{FAULTS[k]} ({first[k]})" for k in FAULTS if k in first)


def write_grades_csv(rows: list[GradeRow], parts: dict[str, str], path: Path) -> Path:
    """One row per student: id, total, max, one column per part, then seed and status."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["student_id", "total", "max_score", *parts, "seed", "status"])
        for row in sorted(rows, key=lambda r: r.student):
            w.writerow([row.student, row.score, row.max_score, *(row.parts.get(p, 0.0) for p in parts), row.seed, row.label])
    return path
