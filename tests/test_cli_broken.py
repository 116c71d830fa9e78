"""An instructor never misses a broken submission: `dlgrade grade` on a class with an unreadable zip, an empty folder
and code that does not import, end to end (status, CSV, console, exit code, class summary); the CLI's own words."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import ROOT, run_dlgrade, write_files

from dlgrade.cli import build_parser
from dlgrade.config import known_assignments, load_assignment
from dlgrade.release import reference_submission


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("broken")
    subs = base / "subs"
    ref = reference_submission(load_assignment("lstm_lm_vit"))
    write_files({**ref, "lstm_solution.py": b"import torch\nclass LSTM(torch.nn.Module:\n"}, subs / "syntax")
    (subs / "empty").mkdir()
    (subs / "text.zip").write_text("my homework is attached to the e-mail\n")
    strict = run_dlgrade("grade", "lstm_lm_vit", str(subs), "--out", str(base / "out"), "--seed", "3", "--call-timeout", "20",
                         timeout=600)
    again = run_dlgrade("grade", "lstm_lm_vit", str(subs), "--out", str(base / "out"), "--allow-broken", "--no-report", timeout=300)
    return strict, again, base / "out"


@pytest.mark.slow
def test_not_graded_students_fail_the_command_with_their_reasons(graded) -> None:  # type: ignore[no-untyped-def]
    strict, again, out = graded
    assert strict.returncode == 1, strict.stdout[-2000:] + strict.stderr[-3000:]
    err = strict.stderr
    assert "dlgrade: empty: not graded: none of the files this assignment asks for was found" in err, err
    assert "dlgrade: text: not graded: the zip file could not be read (File is not a zip file)" in err, err
    assert "dlgrade: syntax: graded, but the code did not import (Import error: could not import the module: SyntaxError" in err
    assert "2 of 3 submission(s) could not be graded" in err and "--allow-broken" in err
    assert again.returncode == 0, again.stderr[-3000:]      # --allow-broken (and nothing regraded: all complete)
    with (out / "grades.csv").open() as f:
        status = {r["student_id"]: r["status"] for r in csv.DictReader(f)}
    assert status["syntax"] == "graded"
    assert status["empty"].startswith("not graded: none of the files") and status["text"].startswith("not graded: the zip file")
    summary = (out / "reports" / "index.html").read_text()
    assert summary.index('id="failed"') < summary.index("Score distribution")
    assert 'id="n-not-graded" class="bad">2<' in summary
    code = summary[summary.index('id="code-problems"'):]
    assert "syntax" in code[:code.index("</table>")] and "did not import" in code[:code.index("</table>")]


def test_every_option_says_what_it_does_and_the_assignment_lists_the_ids() -> None:
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    silent = [f"{name} {a.dest}" for name, sub in commands.items() for a in sub._actions if a.dest != "help" and not a.help]
    assert silent == []
    grade_help = commands["grade"].format_help()
    assert all(i in " ".join(grade_help.split()) for i in known_assignments(ROOT))
    for option, unit in (("--memory-mb", "MB"), ("--call-timeout", "seconds"), ("--submission-timeout", "seconds"),
                         ("-j", "default 1"), ("--out", "default: dist/results")):
        action = next(a for a in commands["grade"]._actions if option in a.option_strings)
        assert unit in action.help, (option, action.help)
    assert "overwritten" in commands["report"].format_help() and "RESULTS/reports" in commands["report"].format_help()


def test_check_outside_a_release_says_so_with_the_usual_prefix(tmp_path: Path) -> None:
    proc = run_dlgrade("check", str(tmp_path), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("dlgrade: error: ") and "public_tests" in proc.stderr
