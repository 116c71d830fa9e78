"""Reports: one HTML and one Markdown report per student, and an instructor's class summary.

Entry point: ``write_reports(results_dir)``. It reads only the results folder that
``dlgrade grade`` wrote (``<dir>/<student>/results.json``) and, when the assignment is known
to this checkout, its part titles; it never grades or imports grader code. Output::

    <dir>/reports/index.html             class summary (instructor only)
    <dir>/reports/students/<id>.html     one self-contained page per student
    <dir>/reports/students/<id>.md       the same report as Markdown (LMS comments, e-mail)
    <dir>/reports/grades_canvas.csv      the totals in Canvas's gradebook-import layout
    <dir>/reports/answers.csv            notebooks: the written answers, for grading by hand
    <dir>/reports/claims.csv             notebooks: the results claimed in their outputs next to the grader's values
    <dir>/grades.csv                     written when missing (`dlgrade grade` writes it)
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

from dlgrade.report.load import AUDIENCES, ReportView, Student, Unreadable, read_class, read_student
from dlgrade.report.render import html_env, md_env, part_order, student_view, summary_view
from dlgrade.report.similarity_section import read_similarity
from dlgrade.results import write_grades_csv

__all__ = ["AUDIENCES", "ReportView", "ReportSet", "Student", "Unreadable", "read_class", "read_student", "write_canvas_csv",
           "write_answers_csv", "write_claims_csv", "write_grades", "write_reports"]


@dataclass(frozen=True)
class ReportSet:
    folder: Path
    summary: Path
    students: tuple[Path, ...]          # the HTML reports
    unreadable: tuple[str, ...]
    failed: tuple[str, ...]             # graded with grader errors or no tests
    seconds: float


def _assignment_info(assignment: str) -> tuple[dict[str, str], str]:
    """Part ids and titles, and the title, from assignment.toml when this checkout has the assignment."""
    if not assignment:
        return {}, ""
    try:
        from dlgrade.config import load_assignment
        cfg = load_assignment(assignment)
    except Exception:  # a results folder alone must be enough: no checkout, unknown id, broken toml
        return {}, assignment
    return dict(cfg.parts), cfg.title


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_grades(students: list[Student], parts: dict[str, str], results_dir: Path) -> Path:
    """grades.csv through dlgrade.results (the same columns `dlgrade grade` writes)."""
    return write_grades_csv([s.row() for s in students], {p: p for p in parts}, results_dir / "grades.csv")


def write_canvas_csv(students: list[Student], title: str, path: Path) -> Path:
    """Canvas's gradebook import layout: Student, ID, SIS User ID, SIS Login ID, Section, one assignment column.

    The student id goes into "SIS Login ID" (Canvas matches rows on it); "ID" (Canvas's internal
    number) is left empty. A "Points Possible" row carries the maximum. Students who failed to
    grade get an empty cell, which Canvas leaves unchanged, instead of a zero.
    """
    max_score = max((s.max_score for s in students if not s.failed_to_grade), default=0.0)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title])
        w.writerow(["Points Possible", "", "", "", "", f"{max_score:g}"])
        for s in sorted(students, key=lambda s: s.student):
            w.writerow([s.student, "", "", s.student, "", "" if s.failed_to_grade else f"{s.score:g}"])
    return path


def write_answers_csv(students: list[Student], path: Path) -> Path:
    """Every student's written answers (notebook submissions), one row per question, for grading by hand."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student_id", "notebook", "question", "cells", "answer"])
        for s in sorted(students, key=lambda s: s.student):
            for a in s.answers:
                w.writerow([s.student, a.notebook, a.question, " ".join(map(str, a.cells)), a.text])
    return path


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def write_claims_csv(students: list[Student], path: Path) -> Path:
    """Every student's notebook claims (``[[claims]]``): the value the output shows next to the grader's re-measured one
    (on generated data, so the two are not expected to be equal); accuracies as fractions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student_id", "claim", "notebook", "cell", "claimed", "measured", "threshold", "handout_target",
                    "log_found", "rule"])
        for s in sorted(students, key=lambda s: s.student):
            for c in s.claims:
                w.writerow([s.student, c.name, c.notebook, "" if c.cell is None else c.cell, _number(c.claimed),
                            _number(c.measured), _number(c.threshold), _number(c.handout_target),
                            "yes" if c.log_found else "no", c.rule])
    return path


def _file_stem(folder: str) -> str:
    """A file name for a student's report: the results folder's name (already a safe id), never a path."""
    stem = folder.replace("/", "_").replace("\\", "_").lstrip(".")
    return stem or "_"


def write_reports(results_dir: Path, release: ReportView | None = None, out: Path | None = None) -> ReportSet:
    """Render every student's report (for ``release``'s audience) and the class summary; see the module docstring."""
    started = time.perf_counter()
    release = release or ReportView()
    results_dir = Path(results_dir)
    out = out or results_dir / "reports"
    students, unreadable = read_class(results_dir)
    assignment = next((s.assignment for s in students if s.assignment), "")
    known_parts, title = _assignment_info(assignment)
    title = title or assignment or results_dir.name
    parts = part_order(students, known_parts)
    html, md = html_env(), md_env()
    student_html, student_md = html.get_template("student.html.j2"), md.get_template("student.md.j2")
    written: list[Path] = []
    hrefs: dict[str, str] = {}
    for s in students:
        stem = _file_stem(s.folder)
        view = student_view(s, release, parts, title, stem)
        page = out / "students" / f"{stem}.html"
        _write_text(page, student_html.render(r=view))
        _write_text(page.with_suffix(".md"), student_md.render(r=view))
        written.append(page)
        hrefs[s.folder] = f"students/{stem}.html"
    if not (results_dir / "grades.csv").is_file() and students:
        write_grades(students, parts, results_dir)
    csv_links: list[tuple[str, str]] = []
    if students:
        write_canvas_csv(students, title, out / "grades_canvas.csv")
    if any(s.answers for s in students):
        write_answers_csv(students, out / "answers.csv")
    else:
        (out / "answers.csv").unlink(missing_ok=True)  # left by an earlier run of other submissions
    if any(s.claims for s in students):
        write_claims_csv(students, out / "claims.csv")
    else:
        (out / "claims.csv").unlink(missing_ok=True)
    for path in (results_dir / "grades.csv", out / "grades_canvas.csv", out / "answers.csv", out / "claims.csv"):
        if path.is_file():
            csv_links.append((path.name, _relative(path, out)))
    summary = summary_view(students, unreadable, parts, title, hrefs, tuple(csv_links))
    summary_path = out / "index.html"
    _write_text(summary_path, html.get_template("summary.html.j2").render(c=summary, similarity=read_similarity(results_dir, out)))
    return ReportSet(folder=out, summary=summary_path, students=tuple(written), unreadable=tuple(u.folder for u in unreadable),
                     failed=tuple(s.student for s in students if s.failed_to_grade), seconds=time.perf_counter() - started)


def _relative(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()

