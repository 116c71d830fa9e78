"""End-to-end: hostile and broken submissions graded by the CLI, in the `process` and `docker` sandboxes.

For each sandbox, every fixture of ``fixtures/lstm_lm_vit/hostile.toml`` is graded as part of one class (one
folder per fixture, two at a time, short time limits so that infinite loops are cheap), the class that also
holds the red-team corpus (``tests/classbatch.py``, shared with test_redteam.py; the fork bomb is graded beside
the others: each worker has its own PID namespace or container and process limit). Whatever a submission does,
the batch must finish, each student must get a valid Gradescope results.json with the expected score and a
specific message, and nothing from the hidden tests or the reference solution may reach a student.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
from classbatch import CALL_TIMEOUT, COMPARED, FIXTURES, SEED, SUBMISSION_TIMEOUT, ZIPPED, Batch, containers, leftovers
from conftest import Hostile, check_gradescope, grade_cli, materialise, require_docker, secret_lines, visible_text

# Without root the `process` sandbox cannot isolate (no separate uid, network or hidden paths, no
# process limit): hostile code would really reach the network and the hidden tests, and a fork
# bomb would hit the machine. The batch only makes sense where the sandbox is complete.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the process sandbox isolates only when run as root")]

STUDENT_FILES = {"results.json", "student_output.txt", "grader.log"}
NOT_GRADED = {"no_files"}   # fixtures with nothing gradable


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def batch(request: pytest.FixtureRequest, class_batches: Any) -> Batch:
    """The mode's class (graded once per session, with the red-team corpus)."""
    if request.param == "docker":
        require_docker()
    graded: Batch = class_batches.get(request.param)
    assert graded.hostile
    return graded


@pytest.fixture(scope="module")
def leaks(cfg) -> tuple[set[str], set[str]]:  # type: ignore[no-untyped-def]
    """(source lines of the hidden tests, lines that only the reference with markers has)."""
    reference = {line.strip() for p in cfg.reference_dir.rglob("*.py") for line in p.read_text().splitlines()
                 if "BEGIN SOLUTION" in line or "END SOLUTION" in line}
    return secret_lines(cfg.grader_dir), reference


def _expanded(fixture: Hostile, text: str | None, batch: Batch) -> str | None:
    return fixture.expanded(text, batch.placeholders)


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.name for f in FIXTURES])
def test_hostile_submission(batch: Batch, fixture: Hostile, leaks: tuple[set[str], set[str]]) -> None:
    if batch.mode not in fixture.sandboxes:
        pytest.skip(f"broken code, judged on the trusted side: graded in the {' and '.join(fixture.sandboxes)} class only")
    data = batch.results(fixture.name)
    check_gradescope(data)
    score, max_score = data["score"], data["extra_data"]["max_score"]
    assert max_score > 0
    assert data["extra_data"]["seed"] == SEED
    # (a note that processes the submission left running were killed is no failure of the sandbox)
    assert [w for w in data["extra_data"]["warnings"] if w not in data["extra_data"]["leftovers"]] == [], \
        "the sandbox was not fully applied"
    assert data["execution_time"] < SUBMISSION_TIMEOUT + 30, "the submission time limit did not hold"
    outputs = visible_text(data).replace(fixture.name, "<student>")  # `memory_bomb` must not match "memory"

    expected = {"zero": score == 0, "partial": 0 < score < max_score, "full": score == max_score}[fixture.score]
    failed = [f"{t['name']}: {t['output'][:200]}" for t in data["tests"] if t["status"] != "passed"]
    assert expected, f"{fixture.name}: expected {fixture.score}, got {score}/{max_score}; failed:\n" + "\n".join(failed[:8])
    message = _expanded(fixture, fixture.message, batch)
    assert message and message in outputs, f"{fixture.name}: {message!r} not in the results:\n{outputs[:3000]}"

    printed = batch.student_output(fixture.name)
    expected_stdout = fixture.stdout_docker if batch.mode == "docker" and fixture.stdout_docker else fixture.stdout
    if expected_stdout is not None:
        wanted = _expanded(fixture, expected_stdout, batch)
        assert wanted and wanted in printed, f"{fixture.name}: {wanted!r} not printed:\n{printed[:3000]}"

    # no hostile action worked, and nothing secret reached the student
    text = (batch.out / fixture.name / "results.json").read_text()
    for where, content in (("results.json", text), ("student_output.txt", printed)):
        assert "HOSTILE-SUCCESS" not in content, f"{fixture.name}: an attack worked ({where}):\n{content[:3000]}"
    hidden_lines, reference_markers = leaks
    shown = outputs + "\n" + printed
    leaked = sorted(line for line in hidden_lines | reference_markers if line in shown)
    assert not leaked, f"{fixture.name}: hidden test or reference source reached the student: {leaked[:5]}"
    assert len(text) < 500_000, "results.json must stay small whatever the submission prints or raises"
    assert len(printed) < 25_000, "the kept student output must stay bounded"
    if fixture.score == "full":
        assert not data["extra_data"]["grader_errors"], data["extra_data"]["grader_errors"]


def test_batch_wrote_exactly_the_expected_files(batch: Batch) -> None:
    """One folder per student holding only what the grader writes; grades.csv matches them."""
    out = batch.out
    assert {p.name for p in out.iterdir()} == batch.students | {"grades.csv"}
    for name in batch.students:
        files = {p.name for p in (out / name).iterdir()}
        assert files <= STUDENT_FILES, f"{name}: unexpected files {files - STUDENT_FILES}"
    with (out / "grades.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["student_id"] for r in rows) == sorted(batch.students)
    hostile = {f.name for f in FIXTURES} | {ZIPPED}
    for row in rows:
        data = json.loads((out / row["student_id"] / "results.json").read_text())
        assert float(row["total"]) == pytest.approx(data["score"])
        assert float(row["max_score"]) == pytest.approx(data["extra_data"]["max_score"])
        assert row["seed"] == str(SEED)
        # a folder without the files asked for is "not graded", with the reason, in the CSV and on the console
        if row["student_id"] in NOT_GRADED:
            assert row["status"].startswith("not graded: none of the files this assignment asks for"), row
            assert f"dlgrade: {row['student_id']}: not graded: none of the files" in batch.run.stderr, batch.run.stderr[-2000:]
        elif row["student_id"] in hostile:
            assert row["status"] == "graded", row


def test_zipped_project_grades_like_the_reference(batch: Batch) -> None:
    data = batch.results(ZIPPED)
    check_gradescope(data)
    assert data["score"] == data["extra_data"]["max_score"]
    assert "missing" not in data["output"] and "appears" not in data["output"]
    base = batch.out.parent
    assert not (base / "escaped").exists() and not (base.parent / "escaped").exists()


def test_results_cannot_be_forged_from_the_worker(batch: Batch) -> None:
    """The results writer (and its daemon) reached no results file; the daemon died with its worker."""
    for path in batch.out.glob("*/results.json"):
        data = json.loads(path.read_text())
        assert data["extra_data"]["student"] == path.parent.name, f"{path} was not written by the grader"
        assert data["score"] <= data["extra_data"]["max_score"]
    assert "9999" not in (batch.out / "grades.csv").read_text()
    printed = batch.student_output("writes_results_json")
    assert any(line.startswith("HOSTILE-DAEMON ") for line in printed.splitlines()), "the fixture's daemon did not start"
    # it names itself rt-<token>-daemon: none of this batch's is left (the class's other leftovers are test_redteam's)
    assert not [p for p in leftovers(batch.token) if p.endswith("-daemon")], "the daemon a submission left behind still runs"
    assert not [p for p in batch.leftovers if p.endswith("-daemon")]
    if batch.mode == "docker":  # the daemon lived in the worker's container, which is gone
        assert containers(batch.token) == [], "containers of the batch are left behind"


def test_network_stayed_closed(batch: Batch) -> None:
    assert batch.listener_got == []


def test_import_failure_is_remembered(batch: Batch) -> None:
    """A module whose import hangs costs one time-out for the whole submission, not one per test."""
    data = batch.results("infinite_loop_at_import")
    # one time-out per test would take len(tests) * CALL_TIMEOUT; the count below is what proves it, the time is a loose bound
    assert data["execution_time"] < len(data["tests"]) * CALL_TIMEOUT / 3
    slow = [t for t in data["extra_data"]["tests"] if t["seconds"] >= CALL_TIMEOUT - 1 and "time limit" in t["output"]]
    assert len(slow) <= 1, [t["nodeid"] for t in slow]


def test_same_seed_same_results_across_sandboxes(batch: Batch, class_batches: Any, tmp_path: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    """Same seed, same submission, same results: `inprocess` and a second `process` run agree with the
    process batch; a `process` run agrees with the docker batch.

    `wrong_values` fails some tests with messages that carry numbers computed from the seeded
    inputs, so equal outputs mean equal inputs; its other tests pass like the reference's. The `process`
    runs are the session's run of these fixtures alone (classbatch.ClassBatches.alone).
    """
    fixtures = {f.name: f for f in FIXTURES}
    runs = [("process", class_batches.alone(), ("wrong_values",) if batch.mode == "process" else COMPARED)]
    if batch.mode == "process":
        for name in COMPARED:
            materialise(cfg, fixtures[name], tmp_path / "inprocess", batch.placeholders)
        runs.append(("inprocess", grade_cli(tmp_path / "inprocess", tmp_path / "inprocess-results", "--seed", str(SEED),
                                            "--sandbox", "inprocess", "--call-timeout", str(CALL_TIMEOUT * 4),
                                            "--no-report", "--jobs", "2"), COMPARED))
    for sandbox, run, names in runs:
        for name in names:
            first, again = batch.results(name), run.results(name)
            assert again["score"] == first["score"], f"{name} under {sandbox}"
            assert [(t["name"], t["status"], t["output"]) for t in again["tests"]] == \
                [(t["name"], t["status"], t["output"]) for t in first["tests"]], f"{name} under {sandbox}"
    assert batch.results("passes_all")["score"] == batch.results("passes_all")["extra_data"]["max_score"]
