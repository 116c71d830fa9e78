"""Reports: render a class's results folder and check what each audience sees.

The class is two real results files (tests/fixtures/reports/graded, written by `dlgrade grade`)
plus results written here through dlgrade.results for the awkward cases: hidden outputs, HTML
and Markdown in student-controlled strings, attention heatmaps, a crashed grader, a malformed
file and a non-ASCII student id.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from dlgrade.cli import main
from dlgrade.report import ReportView, write_reports
from dlgrade.results import SubmissionResult, write_results
from dlgrade.results import TestResult as _TestResult

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "reports" / "graded"
SECRET = "EXPECTED-VALUE-31337"           # output of a hidden test: must never reach a student
LATER = "SHOWN-AFTER-PUBLICATION"         # output of an after_published test
DUE = "SHOWN-AFTER-DUE-DATE"
INJECT = "<script>alert(1)</script></table> | col | **bold** [x](http://evil)"


def _t(n: int, name: str, score: float, max_score: float, output: str, visibility: str = "visible", part: str = "attention",
       diagnosis: str | None = None, extra: dict | None = None) -> _TestResult:  # type: ignore[type-arg]
    return _TestResult(name, str(n), score, max_score, "passed" if score >= max_score else "failed", output, visibility, part,
                      f"graders/x.py::test_{n}", diagnosis, 0.01 * n, extra or {})


def _heatmap(title: str, n: int) -> dict:  # type: ignore[type-arg]
    return {"title": title, "xlabel": "source position", "ylabel": "target position",
            "matrix": [[(1.0 / (i + 1) if j <= i else 0.0) for j in range(n)] for i in range(n)]}


def _write(root: Path, student: str, tests: tuple[_TestResult, ...], errors: tuple[str, ...] = (), seconds: float = 3.0,
           stdout: str = "") -> None:
    score = sum(t.score for t in tests)
    write_results(SubmissionResult(student, "lstm_lm_vit", 2026, tests, seconds,
                                   f"{student}: {score:g} / {sum(t.max_score for t in tests):g} points (input seed 2026).",
                                   grader_errors=errors, stdout=stdout), root / student)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    for folder in FIXTURES.iterdir():
        shutil.copytree(folder, root / folder.name)
    _write(root, "mallory", (
        _t(1, "shapes are right", 1, 1, "Passed."),
        _t(2, "values match", 0, 2, f"the values are wrong: want {SECRET}", "hidden", diagnosis=f"diag-{SECRET}"),
        _t(3, "later test", 0, 1, f"{LATER}: wrong", "after_published", diagnosis="later-diagnosis"),
        _t(4, "due-date test", 0, 1, f"{DUE}: wrong", "after_due_date"),
        _t(5, f"name with {INJECT}", 0, 1, f"output {INJECT}\nline two", diagnosis=f"diagnosis {INJECT}"),
    ), seconds=42.0, stdout=f"student printed {INJECT}")
    _write(root, "seq_student", (
        _t(1, "causal mask: no attention to later positions", 0, 2, "token 0 attends to token 3", part="transformer",
           extra={"heatmaps": [_heatmap("your attention weights", 6), _heatmap("a correct mask", 6)]}),
        _t(2, "greedy decoding", 1, 1, "Passed.", part="transformer"),
    ), seconds=7.0)
    _write(root, "zoë_ünïcode", (_t(1, "shapes are right", 1, 1, "Passed."),), seconds=1.0)
    _write(root, "crashed", (), errors=("Traceback (most recent call last):\nRuntimeError: the grader broke",))
    (root / "broken").mkdir()
    (root / "broken" / "results.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def student_reports(results: Path) -> Path:
    write_reports(results)
    return results / "reports"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.starts: list[str] = []
        self.ends: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.starts.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self.ends.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _tags(html: str) -> _Tags:
    p = _Tags()
    p.feed(html)
    return p


# ----------------------------------------------------------------------------- student reports


def test_student_report_shows_total_parts_tests_curve_and_seed(student_reports: Path) -> None:
    html = _read(student_reports / "students" / "bug_unbiased_variance.html")
    text = " ".join(_tags(html).text)
    # student audience, before publication: the report leads with what counts and what is pending, never "100 %"
    header = " ".join(text[text.index("Report for"):text.index("Score by part")].split())
    assert "11 of 41 points counted so far" in header and "30 points" in header and "not your final grade" in header
    assert "%" not in header, header
    assert "Problem 2.1: LayerNorm" in text                 # part titles from assignment.toml
    assert "input seed 2026" in text
    assert text.count("hidden") >= 29                        # 29 after_published tests show only their name
    assert "biased variance" not in html.split("What went wrong")[-1].split("Tests")[0] if "What went wrong" in html else True
    # the two threshold tests are visible: each draws its training curve with the final metric against the threshold
    assert html.count('aria-label="training loss curve"') == 2
    assert "validation perplexity: 3.743 meets the threshold 3.98" in html
    assert "ln(threshold 3.98)" in html

    published = write_reports(student_reports.parent, ReportView(published=True), out=student_reports.parent / "pub")
    text = " ".join(_tags(_read(published.folder / "students" / "bug_unbiased_variance.html")).text)
    assert "39 / 41" in text and "3 / 5" in text             # full total and the LayerNorm part after publication
    assert "uses the unbiased variance (divides by n - 1)" in text   # the diagnosis of an after_published test


def test_hidden_outputs_never_reach_students(results: Path, tmp_path: Path) -> None:
    stages = {"due": ReportView(after_due_date=True), "published": ReportView(published=True), "default": ReportView()}
    for stage, release in stages.items():
        rep = write_reports(results, release, out=tmp_path / stage)
        for suffix in (".html", ".md"):
            body = _read(rep.folder / "students" / f"mallory{suffix}")
            assert SECRET not in body, (stage, suffix)       # neither the output nor the diagnosis of a hidden test
            assert "values match" in body                    # ... but its name is listed as hidden
            assert (LATER in body) == (stage == "published"), (stage, suffix)
            assert ("later-diagnosis" in body) == (stage == "published")
            assert (DUE in body) == (stage != "default"), (stage, suffix)
            assert "student printed" not in body             # the submission's stdout is for the staff
            assert "the grader broke" not in _read(rep.folder / "students" / f"crashed{suffix}")
    default = _read(tmp_path / "default" / "students" / "mallory.md")
    assert default.index("**1 of 6 points counted so far**") < default.index("## Tests")
    assert "Pending: 3 hidden test(s) worth 4 point(s), released with the grades. This is not your final grade." in default
    published = _read(tmp_path / "published" / "students" / "mallory.md")
    assert "1 / 6 points" in published and "includes 1 hidden test" in published

    staff = write_reports(results, ReportView("instructor"), out=tmp_path / "staff")
    body = _read(staff.folder / "students" / "mallory.html")
    assert SECRET in body and LATER in body and "student printed" in body
    assert "the grader broke" in _read(staff.folder / "students" / "crashed.html")


def test_student_strings_cannot_inject_html_or_break_markdown(results: Path, tmp_path: Path) -> None:
    rep = write_reports(results, ReportView("instructor"), out=tmp_path / "x")
    for page in (rep.folder / "students" / "mallory.html", rep.summary):
        html = _read(page)
        tags = _tags(html)
        assert "script" not in tags.starts, page             # no script element anywhere
        assert tags.starts.count("table") == tags.ends.count("table"), page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;/table&gt;" in html
        assert INJECT in " ".join(tags.text) or page == rep.summary   # the text itself survives, as text
    md = _read(rep.folder / "students" / "mallory.md")
    prose = "".join(md.split("```")[::2])                   # everything outside the fenced code blocks
    assert "<script>" not in prose and "</table>" not in prose and "[x](" not in prose
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    test_rows = [r for r in rows if r.split(" | ")[0] in {"| #"} or r[2:3].isdigit()]
    cells = {len([c for c in _md_cells(r)]) for r in test_rows}
    assert cells == {4}, test_rows                           # the pipes in the test name are escaped
    assert "\\<script\\>" in md and "\\*\\*bold\\*\\*" in md
    fenced = md.split("```text\noutput ")[1]
    assert fenced.startswith(INJECT)                         # outputs are quoted verbatim inside a fence


def _md_cells(row: str) -> list[str]:
    """Split a Markdown table row on pipes that are not backslash-escaped."""
    cells, cur, esc = [], "", False
    for ch in row.strip()[1:-1]:
        if ch == "|" and not esc:
            cells.append(cur)
            cur = ""
        else:
            cur += ch
        esc = ch == "\\" and not esc
    return [*cells, cur]


def test_heatmaps_are_inline_svg(student_reports: Path) -> None:
    html = _read(student_reports / "students" / "seq_student.html")
    start = html.index("<svg", html.index("your attention weights") - 400)
    svg = ET.fromstring(html[start:html.index("</svg>", start) + 6])
    ns = "{http://www.w3.org/2000/svg}"
    cells = [r for r in svg.iter(f"{ns}rect") if r.find(f"{ns}title") is not None]
    assert len(cells) == 36
    assert {c.get("fill") for c in cells} >= {"#440154", "#fde725"}      # zeros and the maximum get the ramp's ends
    assert "source position" in "".join(svg.itertext())
    assert html.count(">a correct mask<") == 1


def test_unicode_ids_crashes_and_malformed_files(results: Path, student_reports: Path) -> None:
    assert (student_reports / "students" / "zoë_ünïcode.html").is_file()
    assert "zoë\\_ünïcode" in _read(student_reports / "students" / "zoë_ünïcode.md")
    crashed = _read(student_reports / "students" / "crashed.html")
    assert "could not grade this submission" in crashed
    assert not (student_reports / "students" / "broken.html").exists()


# ----------------------------------------------------------------------------- class summary and gradebooks


def test_class_summary(results: Path, student_reports: Path) -> None:
    page = student_reports / "index.html"
    html = _read(page)
    tags = _tags(html)
    text = " ".join(tags.text)
    assert 'aria-label="histogram of total scores"' in html
    # one histogram bar per bin; the counts cover the graded students (the crashed one has no score to plot)
    counts = [int(n) for n in re.findall(r"<title>(\d+) student\(s\) with", html)]
    assert len(counts) == 10 and sum(counts) == 5 and counts[9] == 3
    # failed to grade: the crashed grader and the unreadable file, each with its reason
    failed = html[html.index('id="failed"'):html.index("</table>", html.index('id="failed"'))]
    assert "crashed" in failed and "RuntimeError: the grader broke" in failed
    assert "broken" in failed and "cannot be read" in failed
    # per-test pass rates, lowest first
    rates = html[html.index('id="rates"'):html.index("</table>", html.index('id="rates"'))]
    percents = [int(p) for p in re.findall(r"\((\d+) %\)", rates)]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    # the most frequent diagnosis with its count and students
    diag = html[html.index('id="diagnoses"'):]
    assert "uses the unbiased variance" in diag and "bug_unbiased_variance" in diag
    # slowest first
    slow = html[html.index('id="slowest"'):html.index("</table>", html.index('id="slowest"'))]
    seconds = [float(x) for x in re.findall(r">([\d.]+) s<", slow)]
    assert len(seconds) == 5 and seconds == sorted(seconds, reverse=True) and seconds[0] == 42.0
    assert slow.index("mallory") < slow.index("seq_student") and "zoë_ünïcode" not in slow   # 1 s: not among the 5 slowest
    assert ">6<" in html.split('id="n-students"')[1][:10] and "0.0 %" not in text
    # every link resolves to a file that exists, relative to the summary
    hrefs = [h for h in _hrefs(html)]
    for name in ("alice_reference", "mallory", "zoë_ünïcode", "crashed"):
        assert any(unquote(h) == f"students/{name}.html" for h in hrefs), name
    assert "../grades.csv" in hrefs and "grades_canvas.csv" in hrefs
    for h in hrefs:
        assert (page.parent / unquote(h)).resolve().is_file(), h


def _hrefs(html: str) -> list[str]:
    out = []
    for chunk in html.split('href="')[1:]:
        out.append(chunk.split('"')[0])
    return out


def test_gradebook_csvs(results: Path, student_reports: Path) -> None:
    with (results / "grades.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["student_id", "total", "max_score"]
    assert {r["student_id"]: r["total"] for r in rows}["bug_unbiased_variance"] == "39.0"
    with (student_reports / "grades_canvas.csv").open(encoding="utf-8") as f:
        table = list(csv.reader(f))
    assert table[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "LSTM language model and Vision Transformer"]
    assert table[1][0] == "Points Possible" and table[1][5] == "41"
    by_login = {r[3]: r[5] for r in table[2:]}
    assert by_login["alice_reference"] == "41" and by_login["zoë_ünïcode"] == "1"
    assert by_login["crashed"] == ""                       # no score rather than a zero for a grader failure


# ----------------------------------------------------------------------------- command line and speed


def test_report_command_and_class_of_30_speed(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(results), "--audience", "instructor"]) == 0
    out = capsys.readouterr().out
    assert "instructor report(s)" in out and str(results / "reports" / "index.html") in out and "1 unreadable" in out
    big = tmp_path / "class"
    real = FIXTURES / "alice_reference"
    for i in range(30):
        shutil.copytree(real, big / f"student_{i:02d}")
    started = time.perf_counter()
    rep = write_reports(big)
    seconds = time.perf_counter() - started
    assert len(rep.students) == 30 and seconds < 2.0, seconds
    assert main(["report", str(tmp_path / "nowhere")]) == 2


# ----------------------------------------------------------------------------- a real browser


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and os.environ.get("CI"):
        pytest.fail("chromium is not installed; CI must install it (Debian package `chromium`)")
    if not found:
        pytest.skip("chromium is not installed")
    return found


def _browse(exe: str, page: Path, shot: Path, profile: Path) -> tuple[str, list[str]]:
    """Load page headless; return the DOM after load and every console message Chromium logged."""
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--hide-scrollbars", "--window-size=1000,1400", f"--screenshot={shot}", "--dump-dom", page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def test_report_renders_in_headless_chromium(results: Path, tmp_path: Path) -> None:
    exe = _chromium()
    assert exe is not None
    # the detector works: a page that logs an error is caught
    noisy = tmp_path / "noisy.html"
    noisy.write_text('<html><body><script>console.error("detector check")</script></body></html>')
    _, console = _browse(exe, noisy, tmp_path / "noisy.png", tmp_path / "profile0")
    assert any("detector check" in line for line in console)

    rep = write_reports(results, ReportView(published=True), out=tmp_path / "reports")
    shots = Path(os.environ.get("DLGRADE_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    for page, want in ((rep.folder / "students" / "bug_unbiased_variance.html", "39 / 41"), (rep.summary, "class summary")):
        shot = shots / f"{page.stem}.png"
        dom, console = _browse(exe, page, shot, tmp_path / f"profile-{page.stem}")
        assert console == [], console
        assert want in dom
        assert shot.is_file() and shot.stat().st_size > 20_000   # a real picture, not a blank page
        assert "<svg" in dom


def test_summary_lists_not_graded_first_and_flags_code_that_broke_its_tests(tmp_path: Path) -> None:
    """An unreadable zip is 'not graded' (first, with its reason); a crash, a time-out and an import failure are flagged
    with the first message, while a plain wrong answer is not; written answers go to answers.csv and the staff's report."""
    root = tmp_path / "results"
    fine = (_t(1, "shapes", 2, 2, "Passed."), _t(2, "values", 0, 2, "A check in this test failed."))
    _write(root, "amy", fine)
    write_results(SubmissionResult("zed", "lstm_lm_vit", 2026, (_t(1, "shapes", 0, 2, "Not graded"),), 0.1, "zed: 0 / 2",
                                   status="not graded", reason="the zip file could not be read (not a zip file)"), root / "zed")
    broke = {"cal": ("crash", "Your code crashed the worker: the worker process ended (exit status 3)"),
             "dee": ("limit", "Limit exceeded: the call took longer than 20 s"),
             "eve": ("import", "Import error: lstm_solution.py could not be imported: SyntaxError at line 3")}
    for student, (fault, message) in broke.items():
        tests = (_t(1, "shapes", 0, 2, message), _t(2, "values", 0, 2, message))
        write_results(SubmissionResult(student, "lstm_lm_vit", 2026, tuple(replace(t, fault=fault) for t in tests), 1.0,
                                       f"{student}: 0 / 4"), root / student)
    (root / "amy" / "graded").mkdir()
    (root / "amy" / "graded" / "notebooks.json").write_text(json.dumps([{
        "notebook": "hw.ipynb", "answers": {"P1(a)": "Attention sees every position at once.", "P1(b)": ""},
        "answer_cells": {"P1(a)": [4, 5], "P1(b)": []}}]))
    rep = write_reports(root, ReportView("instructor"))
    html = _read(rep.summary)
    failed = html[html.index('id="failed"'):html.index("</table>", html.index('id="failed"'))]
    assert "zed" in failed and "not graded" in failed and "the zip file could not be read" in failed
    assert html.index('id="failed"') < html.index("Score distribution")      # listed before anything else
    code = html[html.index('id="code-problems"'):html.index("</table>", html.index('id="code-problems"'))]
    assert "crashed the worker (Your code crashed the worker: the worker process ended (exit status 3))" in code
    assert "timed out or ran out of memory (Limit exceeded" in code and "did not import (Import error" in code
    assert "amy" not in code and "zed" not in code
    students = html[html.index('id="students"'):]
    assert students.index("zed") < students.index("amy")                  # the not graded first in the class table too
    assert "not graded: the zip file could not be read" in students
    with (rep.folder / "answers.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"student_id": "amy", "notebook": "hw.ipynb", "question": "P1(a)", "cells": "4 5",
                     "answer": "Attention sees every position at once."},
                    {"student_id": "amy", "notebook": "hw.ipynb", "question": "P1(b)", "cells": "", "answer": ""}]
    assert "Attention sees every position at once." in _read(rep.folder / "students" / "amy.html")
    assert "P1(b) (hw.ipynb: no answer found)" in _read(rep.folder / "students" / "amy.md")
    student_view = write_reports(root, ReportView(), out=tmp_path / "student")
    assert "Attention sees every" not in _read(student_view.folder / "students" / "amy.html")
    assert "Not graded: the zip file could not be read" in _read(student_view.folder / "students" / "zed.html")
