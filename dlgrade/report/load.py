"""Read a results folder into frozen records, and decide what each audience may see.

The only input is what `dlgrade grade` (or Gradescope) wrote: ``<dir>/<student>/results.json``
and, when present, ``student_output.txt``. Every field is treated as untrusted text: a missing or
mistyped field falls back to an empty value, and a file that cannot be read becomes an
``Unreadable`` entry instead of an exception.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlgrade.results import FAULTS, GradeRow, faults_of

AUDIENCES = ("student", "instructor")
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")


@dataclass(frozen=True)
class ReportView:
    """Who reads the report and how far the course has got (Gradescope's visibility stages)."""

    audience: str = "student"
    after_due_date: bool = False
    published: bool = False

    def __post_init__(self) -> None:
        if self.audience not in AUDIENCES:
            raise ValueError(f"audience must be one of {', '.join(AUDIENCES)}, got {self.audience!r}")

    @property
    def instructor(self) -> bool:
        return self.audience == "instructor"

    def shows(self, visibility: str) -> bool:
        """May this audience see a test's outcome and output? Unknown visibilities count as hidden."""
        if self.instructor or visibility == "visible":
            return True
        if visibility == "after_due_date":
            return self.after_due_date or self.published
        if visibility == "after_published":
            return self.published
        return False

    @property
    def totals_shown(self) -> bool:
        """The full total (hidden tests included) is shown to instructors, and to students once published."""
        return self.instructor or self.published


@dataclass(frozen=True)
class Test:
    number: str
    name: str
    part: str
    score: float
    max_score: float
    status: str
    output: str
    visibility: str
    diagnosis: str | None
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    fault: str = ""                 # results.FAULTS kind when the student's code broke this test

    @property
    def passed(self) -> bool:
        return self.status == "passed" and self.score >= self.max_score


@dataclass(frozen=True)
class Answer:
    """A written answer found in a submitted notebook (graded by hand, never by the autograder)."""

    notebook: str
    question: str
    cells: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class Claim:
    """A result a notebook's output claims (results' ``extra_data.claims``), next to the grader's re-measured value."""

    name: str
    notebook: str
    kind: str                        # "accuracy" (fractions) | "perplexity" | "loss"
    claimed: float | None
    cell: int | None
    line: str
    log_found: bool
    log_lines: int
    measured: float | None
    measured_visibility: str
    metric: str
    threshold: float | None
    direction: str
    handout_target: float | None
    part: str
    rule: str                        # "none" | "zero" | "warn" | "off"
    message: str


@dataclass(frozen=True)
class Student:
    student: str
    folder: str                     # the folder name under the results dir (links, file names)
    assignment: str
    seed: str
    score: float
    max_score: float
    tests: tuple[Test, ...]
    execution_time: float
    output: str
    warnings: tuple[str, ...]
    grader_errors: tuple[str, ...]
    stdout: str
    status: str = "graded"          # "graded", "not graded", "grader error", "in progress"
    reason: str = ""                # why it was not graded
    answers: tuple[Answer, ...] = ()  # written answers of notebook submissions (graded/notebooks.json)
    claims: tuple[Claim, ...] = ()    # training-log claims of notebook submissions (extra_data.claims)

    @property
    def failed_to_grade(self) -> bool:
        return bool(self.grader_errors) or not self.tests or self.status != "graded"

    @property
    def not_graded(self) -> bool:
        """Nothing gradable was submitted (an unreadable zip, none of the files asked for)."""
        return self.status == "not graded"

    @property
    def faults(self) -> tuple[str, ...]:
        """What the student's code broke ("crashed the worker (...)"), for the class summary's attention list."""
        return faults_of([{"fault": t.fault, "output": t.output} for t in self.tests])

    @property
    def label(self) -> str:
        """The status as grades.csv shows it ("not graded: <reason>")."""
        return self.row().label

    def row(self) -> GradeRow:
        """This student's grades.csv row (the same one `dlgrade grade` writes)."""
        parts: dict[str, float] = {}
        for t in self.tests:
            if t.part:
                parts[t.part] = round(parts.get(t.part, 0.0) + t.score, 4)
        return GradeRow(self.student, self.score, self.max_score, parts, self.seed, self.status, self.reason)


@dataclass(frozen=True)
class Unreadable:
    folder: str
    reason: str


def _num(value: Any, default: float = 0.0) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _texts(value: Any) -> tuple[str, ...]:
    return tuple(_text(v) for v in value) if isinstance(value, list) else ()


def _test(top: dict[str, Any], detail: dict[str, Any], index: int) -> Test:
    """One test from Gradescope's entry, completed by dlgrade's extra_data entry when there is one."""
    tags = top.get("tags") if isinstance(top.get("tags"), list) else []
    part = _text(detail.get("part") or (tags[0] if tags else ""))
    extra = _dict(detail.get("extra"))
    visibility = _text(top.get("visibility") or detail.get("visibility") or "visible")
    diagnosis = detail.get("diagnosis")
    return Test(number=_text(top.get("number") or index + 1), name=_text(top.get("name") or f"test {index + 1}"), part=part,
                score=_num(top.get("score")), max_score=_num(top.get("max_score")),
                status=_text(top.get("status") or ("passed" if _num(top.get("score")) >= _num(top.get("max_score")) else "failed")),
                output=_text(top.get("output")), visibility=visibility,
                diagnosis=_text(diagnosis) if diagnosis else None, seconds=_num(detail.get("seconds")), extra=extra,
                fault=fault if (fault := _text(detail.get("fault"))) in FAULTS else "")


def read_answers(folder: Path) -> tuple[Answer, ...]:
    """The written answers intake found in a student's notebooks (``graded/notebooks.json``); () when none or unreadable."""
    try:
        data = json.loads((folder / "graded" / "notebooks.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return ()
    found: list[Answer] = []
    for nb in data if isinstance(data, list) else []:
        answers, cells = _dict(_dict(nb).get("answers")), _dict(_dict(nb).get("answer_cells"))
        for question, text in answers.items():
            where = cells.get(question)
            numbers = tuple(int(n) for n in where if isinstance(n, int)) if isinstance(where, list) else ()
            found.append(Answer(_text(nb.get("notebook")), _text(question), numbers, _text(text)[:20_000]))
    return tuple(found)


def _maybe(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def read_claims(value: Any) -> tuple[Claim, ...]:
    """``extra_data.claims`` (untrusted like every field: wrong types become empty values)."""
    out = []
    for c in value[:50] if isinstance(value, list) else []:
        c = _dict(c)
        cell = c.get("cell")
        out.append(Claim(name=_text(c.get("name")), notebook=_text(c.get("notebook")), kind=_text(c.get("kind")),
                         claimed=_maybe(c.get("claimed")), cell=cell if isinstance(cell, int) and not isinstance(cell, bool) else None,
                         line=_text(c.get("line"))[:500], log_found=c.get("log_found") is True,
                         log_lines=int(_num(c.get("log_lines"))), measured=_maybe(c.get("measured")),
                         measured_visibility=_text(c.get("measured_visibility")), metric=_text(c.get("metric")),
                         threshold=_maybe(c.get("threshold")), direction=_text(c.get("direction")),
                         handout_target=_maybe(c.get("handout_target")), part=_text(c.get("part")),
                         rule=_text(c.get("rule")) or "none", message=_text(c.get("message"))[:2000]))
    return tuple(out)


def read_student(folder: Path) -> Student | Unreadable:
    path = folder / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return Unreadable(folder.name, f"{path.name} cannot be read: {type(exc).__name__}: {exc}"[:300])
    if not isinstance(data, dict) or not isinstance(data.get("tests", []), list):
        return Unreadable(folder.name, f"{path.name} is not a Gradescope results object")
    extra = _dict(data.get("extra_data"))
    tops = [t for t in data.get("tests", []) if isinstance(t, dict)]
    details = [t for t in extra.get("tests", []) if isinstance(t, dict)] if isinstance(extra.get("tests"), list) else []
    tests = tuple(_test(top, details[i] if i < len(details) else {}, i) for i, top in enumerate(tops))
    stdout_path = folder / "student_output.txt"
    try:
        stdout = stdout_path.read_text(encoding="utf-8", errors="replace")[:20_000] if stdout_path.is_file() else ""
    except OSError:
        stdout = ""
    max_score = _num(extra.get("max_score"), sum(t.max_score for t in tests))
    return Student(student=_text(extra.get("student") or folder.name), folder=folder.name, assignment=_text(extra.get("assignment")),
                   seed=_text(extra.get("seed", "")), score=_num(data.get("score"), sum(t.score for t in tests)),
                   max_score=max_score, tests=tests, execution_time=_num(data.get("execution_time")),
                   output=_text(data.get("output")), warnings=_texts(extra.get("warnings")),
                   grader_errors=_texts(extra.get("grader_errors")), stdout=stdout,
                   status=_text(extra.get("status")) or ("grader error" if extra.get("grader_errors") else "graded"),
                   reason=_text(extra.get("reason")), answers=read_answers(folder), claims=read_claims(extra.get("claims")))


def read_class(results_dir: Path) -> tuple[list[Student], list[Unreadable]]:
    """Every ``<student>/results.json`` under results_dir, sorted by folder name."""
    if not results_dir.is_dir():
        raise FileNotFoundError(f"no results folder {results_dir}")
    students: list[Student] = []
    unreadable: list[Unreadable] = []
    for folder in sorted(p for p in results_dir.iterdir() if p.is_dir() and (p / "results.json").exists()):
        got = read_student(folder)
        (students if isinstance(got, Student) else unreadable).append(got)  # type: ignore[arg-type]
    return students, unreadable
