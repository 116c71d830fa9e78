"""End-to-end: hostile and broken submissions graded by the CLI, in the `process` and `docker` sandboxes.

For each sandbox, every fixture of ``fixtures/lstm_lm_vit/hostile.toml`` is graded in one batch (one folder per
fixture, two at a time, short time limits so that infinite loops are cheap; fixtures marked
`serial` in a second batch of their own). Whatever a submission does, the batch must finish,
each student must get a valid Gradescope results.json with the expected score and a specific
message, and nothing from the hidden tests or the reference solution may reach a student.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    ROOT,
    CliRun,
    Hostile,
    check_gradescope,
    docker_containers,
    grade_cli,
    load_hostile,
    materialise,
    require_docker,
    secret_lines,
    visible_text,
)

from dlgrade.release import reference_submission

# Without root the `process` sandbox cannot isolate (no separate uid, network or hidden paths, no
# process limit): hostile code would really reach the network and the hidden tests, and a fork
# bomb would hit the machine. The batch only makes sense where the sandbox is complete.
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="the process sandbox isolates only when run as root")]

SEED = 1234
CALL_TIMEOUT = 5
SUBMISSION_TIMEOUT = 60
FIXTURES = load_hostile()
STUDENT_FILES = {"results.json", "student_output.txt", "grader.log"}


class Listener:
    """TCP and UDP sockets on the grader's loopback that record anything a worker sends them."""

    def __init__(self) -> None:
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", self.port))
        self.received: list[str] = []
        self._stop = False
        self.tcp.settimeout(0.2)
        self.udp.settimeout(0.2)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop:
            for sock in (self.tcp, self.udp):
                try:
                    if sock is self.tcp:
                        conn, addr = sock.accept()
                        self.received.append(f"tcp connection from {addr}")
                        conn.close()
                    else:
                        data, addr = sock.recvfrom(4096)
                        self.received.append(f"udp {data!r} from {addr}")
                except OSError:  # includes timeouts
                    pass

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.tcp.close()
        self.udp.close()


ZIPPED = "zipped_project"  # the reference as a student zips it: nested, with junk and an escaping entry


def zipped_project(cfg, path: Path) -> None:  # type: ignore[no-untyped-def]
    ref = reference_submission(cfg)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in {"hw3/src/lstm_solution.py": ref["lstm_solution.py"], "hw3/vit_solution.py": ref["vit_solution.py"],
                           "__MACOSX/hw3/src/._lstm_solution.py": b"\x00\x05\x16\x07", "__MACOSX/hw3/vit_solution.py": b"junk",
                           "../../escaped/lstm_solution.py": b"raise SystemExit('climbed out')"}.items():
            zf.writestr(zipfile.ZipInfo(name), data)


NOT_GRADED = {"no_files"}   # fixtures with nothing gradable


@dataclass(frozen=True)
class Batch:
    sandbox: str
    runs: dict[str, CliRun]          # student -> the run that graded it
    outs: tuple[Path, ...]
    placeholders: dict[str, str]
    listener: Listener

    def results(self, student: str) -> dict[str, Any]:
        return self.runs[student].results(student)

    def student_output(self, student: str) -> str:
        return self.runs[student].student_output(student)


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def batch(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, cfg) -> Batch:  # type: ignore[no-untyped-def]
    """Two batches per sandbox: most fixtures two at a time (-j 2), then the `serial` ones alone."""
    sandbox = request.param
    if sandbox == "docker":
        require_docker()
    base = tmp_path_factory.mktemp(f"hostile-{sandbox}")
    out, out_serial = base / "results", base / "results-serial"
    listener = Listener()
    placeholders = {"OUT": str(out), "ROOT": str(ROOT), "PORT": str(listener.port)}
    for fixture in FIXTURES:
        materialise(cfg, fixture, base / ("serial" if fixture.serial else "submissions"), placeholders)
    zipped_project(cfg, base / "submissions" / f"{ZIPPED}.zip")
    limits = ("--seed", str(SEED), "--call-timeout", str(CALL_TIMEOUT), "--submission-timeout", str(SUBMISSION_TIMEOUT),
              "--sandbox", sandbox, "--no-report", "--allow-broken")  # no_files cannot be graded
    try:
        parallel = grade_cli(base / "submissions", out, *limits, "--jobs", "2", timeout=1200)
        serial = grade_cli(base / "serial", out_serial, *limits, timeout=600)
        time.sleep(1.0)  # give anything a worker left behind a moment to act
    finally:
        listener.close()
    runs = {f.name: serial if f.serial else parallel for f in FIXTURES}
    runs[ZIPPED] = parallel
    return Batch(sandbox, runs, (out, out_serial), placeholders, listener)


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
    data = batch.results(fixture.name)
    check_gradescope(data)
    score, max_score = data["score"], data["extra_data"]["max_score"]
    assert max_score > 0
    assert data["extra_data"]["seed"] == SEED
    assert data["extra_data"]["warnings"] == [], "the sandbox was not fully applied"
    assert data["execution_time"] < SUBMISSION_TIMEOUT + 30, "the submission time limit did not hold"
    outputs = visible_text(data).replace(fixture.name, "<student>")  # `memory_bomb` must not match "memory"

    expected = {"zero": score == 0, "partial": 0 < score < max_score, "full": score == max_score}[fixture.score]
    failed = [f"{t['name']}: {t['output'][:200]}" for t in data["tests"] if t["status"] != "passed"]
    assert expected, f"{fixture.name}: expected {fixture.score}, got {score}/{max_score}; failed:\n" + "\n".join(failed[:8])
    message = _expanded(fixture, fixture.message, batch)
    assert message and message in outputs, f"{fixture.name}: {message!r} not in the results:\n{outputs[:3000]}"

    printed = batch.student_output(fixture.name)
    expected_stdout = fixture.stdout_docker if batch.sandbox == "docker" and fixture.stdout_docker else fixture.stdout
    if expected_stdout is not None:
        wanted = _expanded(fixture, expected_stdout, batch)
        assert wanted and wanted in printed, f"{fixture.name}: {wanted!r} not printed:\n{printed[:3000]}"

    # no hostile action worked, and nothing secret reached the student
    text = (batch.runs[fixture.name].out / fixture.name / "results.json").read_text()
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
    for out in batch.outs:
        names = {s for s, run in batch.runs.items() if run.out == out}
        assert {p.name for p in out.iterdir()} == names | {"grades.csv"}
        for name in names:
            files = {p.name for p in (out / name).iterdir()}
            assert files <= STUDENT_FILES, f"{name}: unexpected files {files - STUDENT_FILES}"
        with (out / "grades.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert sorted(r["student_id"] for r in rows) == sorted(names)
        for row in rows:
            data = json.loads((out / row["student_id"] / "results.json").read_text())
            assert float(row["total"]) == pytest.approx(data["score"])
            assert float(row["max_score"]) == pytest.approx(data["extra_data"]["max_score"])
            assert row["seed"] == str(SEED)
            # a folder without the files asked for is "not graded", with the reason, in the CSV and on the console
            if row["student_id"] in NOT_GRADED:
                assert row["status"].startswith("not graded: none of the files this assignment asks for"), row
                run = batch.runs[row["student_id"]]
                assert f"dlgrade: {row['student_id']}: not graded: none of the files" in run.stderr, run.stderr[-2000:]
            else:
                assert row["status"] == "graded", row


def test_zipped_project_grades_like_the_reference(batch: Batch) -> None:
    data = batch.results(ZIPPED)
    check_gradescope(data)
    assert data["score"] == data["extra_data"]["max_score"]
    assert "missing" not in data["output"] and "appears" not in data["output"]
    base = batch.outs[0].parent
    assert not (base / "escaped").exists() and not (base.parent / "escaped").exists()


def test_results_cannot_be_forged_from_the_worker(batch: Batch) -> None:
    """The results writer (and its daemon) reached no results file; the daemon died with its worker."""
    for out in batch.outs:
        for path in out.glob("*/results.json"):
            data = json.loads(path.read_text())
            assert data["extra_data"]["student"] == path.parent.name, f"{path} was not written by the grader"
            assert data["score"] <= data["extra_data"]["max_score"]
        assert "9999" not in (out / "grades.csv").read_text()
    if batch.sandbox == "docker":  # the daemon lived in the worker's container, which is gone
        assert docker_containers() == [], "containers of the batch are left behind"
        return
    printed = batch.student_output("writes_results_json")
    daemons = [int(line.split()[1]) for line in printed.splitlines() if line.startswith("HOSTILE-DAEMON ")]
    assert daemons, "the fixture's daemon did not start"
    for pid in daemons:
        assert not _alive_as_worker(pid), f"the daemon {pid} a submission left behind is still running"


def _alive_as_worker(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return fields.get("State", "").strip()[:1] != "Z" and int((fields.get("Uid", "").split() or ["0"])[0]) >= 100_000


def test_network_stayed_closed(batch: Batch) -> None:
    assert batch.listener.received == []


def test_import_failure_is_remembered(batch: Batch) -> None:
    """A module whose import hangs costs one time-out for the whole submission, not one per test."""
    data = batch.results("infinite_loop_at_import")
    # one time-out per test would take len(tests) * CALL_TIMEOUT; the count below is what proves it, the time is a loose bound
    assert data["execution_time"] < len(data["tests"]) * CALL_TIMEOUT / 3
    slow = [t for t in data["extra_data"]["tests"] if t["seconds"] >= CALL_TIMEOUT - 1 and "time limit" in t["output"]]
    assert len(slow) <= 1, [t["nodeid"] for t in slow]


def test_same_seed_same_results_across_sandboxes(batch: Batch, tmp_path: Path, cfg) -> None:  # type: ignore[no-untyped-def]
    """Same seed, same submission, same results: `inprocess` and a second `process` run agree with the
    process batch; a `process` run agrees with the docker batch.

    `wrong_values` fails some tests with messages that carry numbers computed from the seeded
    inputs, so equal outputs mean equal inputs; its other tests pass like the reference's.
    """
    fixtures = {f.name: f for f in FIXTURES}
    others = {"process": (("inprocess", ("passes_all", "wrong_values")), ("process", ("wrong_values",))),
              "docker": (("process", ("passes_all", "wrong_values")),)}[batch.sandbox]
    for sandbox, names in others:
        for name in names:
            materialise(cfg, fixtures[name], tmp_path / sandbox, batch.placeholders)
        run = grade_cli(tmp_path / sandbox, tmp_path / f"{sandbox}-results", "--seed", str(SEED), "--sandbox", sandbox,
                        "--call-timeout", str(CALL_TIMEOUT * 4), "--no-report")
        for name in names:
            first, again = batch.results(name), run.results(name)
            assert again["score"] == first["score"], f"{name} under {sandbox}"
            assert [(t["name"], t["status"], t["output"]) for t in again["tests"]] == \
                [(t["name"], t["status"], t["output"]) for t in first["tests"]], f"{name} under {sandbox}"
    assert batch.results("passes_all")["score"] == batch.results("passes_all")["extra_data"]["max_score"]
