"""Partial results: results.json is written after every test, so a grader killed mid-run keeps what it finished.

The grader is killed with SIGKILL while it grades (no chance to clean up); the results it leaves must be a
valid Gradescope file marked incomplete, which a second run resumes (same seed, finished tests kept) and
completes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, check_gradescope, grade_cli, write_files

from dlgrade.config import load_assignment
from dlgrade.release import reference_submission


@pytest.mark.slow
def test_a_killed_grader_keeps_finished_tests_and_a_rerun_resumes(tmp_path: Path) -> None:
    cfg = load_assignment("lstm_lm_vit", ROOT)
    sub = write_files(reference_submission(cfg), tmp_path / "subs" / "alice")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "dlgrade", "grade", "lstm_lm_vit", str(sub), "--out", str(out), "--seed", "9",
                             "--no-report"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    results = out / "alice" / "results.json"
    partial = None
    end = time.monotonic() + 240
    try:
        while time.monotonic() < end and proc.poll() is None:
            try:
                data = json.loads(results.read_text())
            except (OSError, ValueError):
                data = None
            if data and len(data["tests"]) >= 8 and not data["extra_data"]["complete"]:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)
                partial = json.loads(results.read_text())
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    assert partial is not None, "grading finished (or never started) before it could be killed"
    check_gradescope(partial)
    assert partial["extra_data"]["status"] == "in progress" and partial["extra_data"]["seed"] == 9
    finished = {t["nodeid"]: t for t in partial["extra_data"]["tests"]}
    assert 8 <= len(finished) < 44
    assert "cut off" in partial["output"]

    run = grade_cli(sub, out, "--seed", "123", "--no-report")   # complete results are skipped, partial ones resumed
    final = run.results("alice")
    check_gradescope(final)
    assert final["extra_data"]["complete"] and final["extra_data"]["status"] == "graded"
    assert final["extra_data"]["seed"] == 9, "a resumed student keeps the seed of the run that was cut off"
    assert final["score"] == final["extra_data"]["max_score"] == 41
    kept = {t["nodeid"]: t for t in final["extra_data"]["tests"]}
    assert all(kept[n]["seconds"] == t["seconds"] for n, t in finished.items()), "finished tests are kept, not rerun"
    assert [t["number"] for t in final["tests"]] == [str(i) for i in range(1, len(final["tests"]) + 1)]
