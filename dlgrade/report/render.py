"""Views (what a report shows, already filtered for its audience) and the jinja2 environments that render them.

HTML templates are rendered with autoescaping on; plots arrive as ``Markup`` built by
``plots`` (an element-tree serializer, so they are escaped too). The Markdown environment has
no HTML autoescape, so every ``{{ value }}`` goes through ``md_escape`` by default (jinja2's
``finalize``); only values that are already Markdown (``MdSafe``: code blocks) pass unchanged.
"""

from __future__ import annotations

import os
import re
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from dlgrade.report import plots
from dlgrade.report.load import Answer, Claim, ReportView, Student, Test, Unreadable

_SCORE_LINE = re.compile(r"^.*:\s*[-\d.]+\s*/\s*[-\d.]+\s*points\b.*$")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~!&{}])")


# ----------------------------------------------------------------------------- markdown escaping


class MdSafe(str):
    """Text that is already valid Markdown (it is not escaped again)."""


def md_escape(value: Any) -> Any:
    """Make a value inert inline Markdown: no HTML, no emphasis or links, no table-breaking pipes or newlines."""
    if isinstance(value, MdSafe) or value is None or isinstance(value, (int, float)):
        return value
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", text)


def md_code(text: str) -> MdSafe:
    """A fenced code block whose fence is longer than any backtick run in the text (so the text cannot close it)."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return MdSafe(f"{fence}text\n{text.rstrip()}\n{fence}")


# ----------------------------------------------------------------------------- views


@dataclass(frozen=True)
class PartRow:
    id: str
    title: str
    score: float
    max_score: float


@dataclass(frozen=True)
class TestRow:
    number: str
    name: str
    part: str
    shown: bool          # False: the audience sees only the name and that it is hidden
    status: str          # passed | failed | partial | hidden
    score: float
    max_score: float
    output: str
    diagnosis: str | None
    seconds: float
    visibility: str
    curve: Markup | None
    heatmaps: tuple[Markup, ...]


@dataclass(frozen=True)
class ClaimView:
    """One training-log claim as a report shows it: values already formatted for their kind."""

    student: str
    href: str
    name: str
    notebook: str
    cell: int | None
    line: str
    kind: str
    claimed: str         # "71.3 %" (accuracies as percents), "" when none was found
    measured: str        # the grader's value on generated data; "" when none, "hidden" where the test is hidden
    metric: str
    threshold: str       # "at least 64 %", "at most 7"
    handout_target: str
    log_found: bool
    log_lines: int
    rule: str            # "none" | "zero" | "warn" | "off"
    message: str


def metric_text(value: float | None, kind: str) -> str:
    """A metric as people read it: accuracies as percents (0.713 -> 71.3 %), the rest with 4 significant digits."""
    if value is None:
        return ""
    return f"{100 * value:.1f} %" if kind == "accuracy" else f"{value:.4g}"


def claim_view(c: Claim, student: str = "", href: str = "", release: ReportView | None = None) -> ClaimView:
    """``release``: the audience (the measured value is shown only where its threshold test is); None: the staff."""
    shown = release is None or release.shows(c.measured_visibility or "hidden")
    measured = metric_text(c.measured, c.kind) if shown else ("hidden" if c.measured is not None else "")
    bound = {"higher": "at least ", "lower": "at most "}.get(c.direction, "")
    threshold = f"{bound}{metric_text(c.threshold, c.kind)}" if c.threshold is not None else ""
    return ClaimView(student, href, c.name, c.notebook, c.cell, c.line, c.kind, metric_text(c.claimed, c.kind), measured,
                     c.metric, threshold, metric_text(c.handout_target, c.kind), c.log_found, c.log_lines, c.rule, c.message)


@dataclass(frozen=True)
class StudentView:
    student: str
    file_stem: str
    assignment: str
    title: str
    seed: str
    release: ReportView
    score: float
    max_score: float
    withheld_tests: int
    withheld_points: float
    parts: tuple[PartRow, ...]
    tests: tuple[TestRow, ...]
    diagnoses: tuple[str, ...]
    execution_time: float
    notes: tuple[str, ...]
    failed_to_grade: bool
    warnings: tuple[str, ...]
    grader_errors: tuple[str, ...]
    stdout: str
    status: str = "graded"
    reason: str = ""                 # why it was not graded
    answers: tuple[Answer, ...] = ()  # instructors only: the written answers, for grading by hand
    claims: tuple[ClaimView, ...] = ()  # what the notebooks' outputs claim, next to the grader's values

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.max_score if self.max_score else 0.0

    @property
    def pending(self) -> bool:
        """Points exist that this report does not count yet (hidden tests before publication)."""
        return bool(self.withheld_tests) and not self.release.totals_shown

    @property
    def assignment_max(self) -> float:
        """What the whole assignment is worth: the points counted here and those still pending."""
        return round(self.max_score + (self.withheld_points if self.pending else 0.0), 4)


def _status(t: Test) -> str:
    if t.passed:
        return "passed"
    return "partial" if t.score > 0 else "failed"


def _test_row(t: Test, shown: bool) -> TestRow:
    if not shown:
        return TestRow(t.number, t.name, t.part, False, "hidden", 0.0, 0.0, "", None, 0.0, t.visibility, None, ())
    curve = plots.training_curve(t.extra)
    maps = t.extra.get("heatmaps")
    heatmaps = tuple(Markup(s) for s in (plots.heatmap(m) for m in (maps if isinstance(maps, list) else [])[:8]) if s)
    return TestRow(t.number, t.name, t.part, True, _status(t), t.score, t.max_score, t.output, t.diagnosis, t.seconds,
                   t.visibility, Markup(curve) if curve else None, heatmaps)


def part_order(students: list[Student], known: dict[str, str]) -> dict[str, str]:
    """The assignment's parts (id -> title): the configured ones first, then any other tag seen in the results."""
    parts = dict(known)
    for s in students:
        for t in s.tests:
            if t.part and t.part not in parts:
                parts[t.part] = t.part
    return parts


def student_view(s: Student, release: ReportView, parts: dict[str, str], title: str, file_stem: str) -> StudentView:
    rows = tuple(_test_row(t, release.shows(t.visibility)) for t in s.tests)
    counted = [t for t, r in zip(s.tests, rows, strict=True) if r.shown or release.totals_shown]
    withheld = [t for t, r in zip(s.tests, rows, strict=True) if not r.shown]
    score = s.score if release.totals_shown else round(sum(t.score for t in counted), 4)
    max_score = s.max_score if release.totals_shown else round(sum(t.max_score for t in counted), 4)
    part_rows = []
    for pid, ptitle in parts.items():
        mine = [t for t in counted if t.part == pid]
        if mine:
            part_rows.append(PartRow(pid, ptitle, round(sum(t.score for t in mine), 4), round(sum(t.max_score for t in mine), 4)))
    notes = tuple(line for line in s.output.splitlines()
                  if line.strip() and (release.totals_shown or not _SCORE_LINE.match(line)))
    diagnoses = tuple(sorted({r.diagnosis for r in rows if r.shown and r.diagnosis}))
    return StudentView(student=s.student, file_stem=file_stem, assignment=s.assignment, title=title, seed=s.seed, release=release,
                       score=score, max_score=max_score, withheld_tests=len(withheld),
                       withheld_points=round(sum(t.max_score for t in withheld), 4), parts=tuple(part_rows), tests=rows,
                       diagnoses=diagnoses, execution_time=s.execution_time, notes=notes, failed_to_grade=s.failed_to_grade,
                       warnings=s.warnings if release.instructor else (),
                       grader_errors=s.grader_errors if release.instructor else (),
                       stdout=s.stdout if release.instructor else "", status=s.status, reason=s.reason,
                       answers=s.answers if release.instructor else (),
                       claims=tuple(claim_view(c, release=release) for c in s.claims))


@dataclass(frozen=True)
class TestRate:
    number: str
    name: str
    part: str
    visibility: str
    passed: int
    graded: int

    @property
    def rate(self) -> float:
        return self.passed / self.graded if self.graded else 0.0


@dataclass(frozen=True)
class DiagnosisCount:
    diagnosis: str
    students: tuple[str, ...]


@dataclass(frozen=True)
class ClassRow:
    student: str
    href: str
    score: float
    max_score: float
    seconds: float
    status: str
    diagnoses: int

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.max_score if self.max_score else 0.0


@dataclass(frozen=True)
class Failed:
    student: str
    href: str | None
    reason: str


@dataclass(frozen=True)
class Attention:
    """A student the course staff must look at: nothing gradable, a grading failure, or code that broke its tests."""

    student: str
    href: str | None
    problem: str         # "not graded", "results unreadable", "grader error", "in progress", "code"
    reason: str


@dataclass(frozen=True)
class SummaryView:
    assignment: str
    title: str
    seeds: tuple[str, ...]
    rows: tuple[ClassRow, ...]
    histogram: Markup | None
    mean: float
    median: float
    rates: tuple[TestRate, ...]
    diagnoses: tuple[DiagnosisCount, ...]
    slowest: tuple[ClassRow, ...]
    failed: tuple[Failed, ...]
    parts: dict[str, str]
    csv_links: tuple[tuple[str, str], ...]
    attention: tuple[Attention, ...] = ()
    claims: tuple[ClaimView, ...] = ()    # every student's notebook claims: "Claimed vs measured"

    @property
    def not_graded(self) -> tuple[Attention, ...]:
        return tuple(a for a in self.attention if a.problem == "not graded")

    @property
    def code_problems(self) -> tuple[Attention, ...]:
        return tuple(a for a in self.attention if a.problem == "code")


def summary_view(students: list[Student], unreadable: list[Unreadable], parts: dict[str, str], title: str,
                 hrefs: dict[str, str], csv_links: tuple[tuple[str, str], ...]) -> SummaryView:
    graded = [s for s in students if not s.failed_to_grade]
    rows = tuple(ClassRow(s.student, hrefs[s.folder], s.score, s.max_score, s.execution_time,
                          _class_status(s), len({t.diagnosis for t in s.tests if t.diagnosis}))
                 for s in sorted(students, key=lambda s: (not s.not_graded, not s.failed_to_grade)))  # stable: by name within
    percents = [r.percent for r in rows if r.status == "graded"]
    per_test: dict[str, list[Test]] = defaultdict(list)
    first: dict[str, Test] = {}
    for s in graded:
        for t in s.tests:
            key = f"{t.number}\x00{t.name}"
            per_test[key].append(t)
            first.setdefault(key, t)
    rates = sorted((TestRate(first[k].number, first[k].name, first[k].part, first[k].visibility, sum(t.passed for t in ts), len(ts))
                    for k, ts in per_test.items()), key=lambda r: (r.rate, _num_key(r.number)))
    diag: dict[str, set[str]] = defaultdict(set)
    for s in graded:
        for t in s.tests:
            if t.diagnosis:
                diag[t.diagnosis].add(s.student)
    diagnoses = sorted((DiagnosisCount(d, tuple(sorted(who))) for d, who in diag.items()), key=lambda d: (-len(d.students), d.diagnosis))
    failed = [Failed(s.student, hrefs[s.folder], _failure(s)) for s in students if s.failed_to_grade]
    failed += [Failed(u.folder, None, u.reason) for u in unreadable]
    # not graded first (listed before anything else), then what broke grading, then code that broke its tests
    order = {"not graded": 0, "results unreadable": 1, "grader error": 2, "in progress": 3}
    by_name = {s.student: s for s in students}
    attention = sorted((Attention(f.student, f.href, _problem(by_name.get(f.student) if f.href else None), f.reason)
                        for f in failed), key=lambda a: (order.get(a.problem, 4), a.student))
    attention += [Attention(s.student, hrefs[s.folder], "code", "; ".join(s.faults)) for s in students
                  if s.faults and not s.failed_to_grade]
    return SummaryView(assignment=next((s.assignment for s in students if s.assignment), ""), title=title,
                       seeds=tuple(sorted({s.seed for s in students})), rows=rows,
                       histogram=Markup(h) if (h := plots.histogram(percents)) else None,
                       mean=statistics.fmean(percents) if percents else 0.0, median=statistics.median(percents) if percents else 0.0,
                       rates=tuple(rates), diagnoses=tuple(diagnoses),
                       slowest=tuple(sorted(rows, key=lambda r: -r.seconds)[:5]), failed=tuple(failed), parts=parts,
                       csv_links=csv_links, attention=tuple(attention),
                       claims=tuple(claim_view(c, s.student, hrefs[s.folder]) for s in students for c in s.claims))


def _class_status(s: Student) -> str:
    if s.not_graded or s.status == "in progress":
        return s.label
    return "failed to grade" if s.failed_to_grade else "graded"


def _failure(s: Student) -> str:
    if s.reason:
        return s.reason
    if s.grader_errors:
        return (s.grader_errors[0].strip().splitlines() or ["grading failed"])[-1][:300]
    if s.status == "in progress":
        return "grading was cut off; run dlgrade grade again to finish it"
    return "the results hold no tests"


def _problem(s: Student | None) -> str:
    if s is None:
        return "results unreadable"
    if s.not_graded:
        return "not graded"
    return "in progress" if s.status == "in progress" else "grader error"


def _num_key(number: str) -> tuple[int, ...]:
    return tuple(int(x) if x.isdigit() else 0 for x in number.split("."))


# ----------------------------------------------------------------------------- environments


def templates_dir() -> Path:
    """reports/ at the project root: next to this package in a checkout, else the root found by dlgrade.config."""
    env = os.environ.get("DLGRADE_ROOT")
    candidates = [Path(env) / "reports"] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "reports")
    for c in candidates:
        if (c / "student.html.j2").is_file():
            return c
    from dlgrade.config import find_root
    return find_root() / "reports"


def _fmt(x: Any) -> str:
    """Points as people write them: 2, 1.5, 0.25."""
    try:
        return f"{float(x):.4g}"
    except (TypeError, ValueError):
        return str(x)


def _common(env: jinja2.Environment) -> jinja2.Environment:
    env.filters["pts"] = _fmt
    env.filters["urlpath"] = lambda s: quote(str(s))
    env.filters["md_code"] = md_code
    return env


def html_env(folder: Path | None = None) -> jinja2.Environment:
    return _common(jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder or templates_dir())),
                                      autoescape=lambda name: (name or "").endswith((".html.j2", ".html")),
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True))


def md_env(folder: Path | None = None) -> jinja2.Environment:
    return _common(jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder or templates_dir())), autoescape=False,
                                      finalize=md_escape, undefined=jinja2.StrictUndefined, trim_blocks=True,
                                      lstrip_blocks=True, keep_trailing_newline=True))
