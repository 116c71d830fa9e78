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


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time (field 22 of /proc/PID/stat) of every live process below ``root``, itself included."""
    parents: dict[int, int] = {}
    started: dict[int, str] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in ("Z", "X"):
            parents[int(entry)], started[int(entry)] = int(fields[1]), fields[19]
    found, todo = {root}, [root]
    while todo:
        pid = todo.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in found]
        found.update(children)
        todo += children
    return {p: started[p] for p in found if p in started}


def _still_running(processes: dict[int, str]) -> list[int]:
    alive = []
    for pid, start in processes.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[19] == start and fields[0] not in ("Z", "X"):
            alive.append(pid)
    return alive


@pytest.mark.slow
def test_a_batch_killed_mid_way_keeps_finished_students_and_a_rerun_completes_only_the_rest(tmp_path: Path) -> None:
    """``kill -9`` of the whole ``dlgrade grade -j 2`` process group while it grades a class.

    Every student finished before the kill keeps complete, valid results; the ones being graded keep valid,
    incomplete ones; no process of the batch (pool, zygotes, workers) survives; a re-run without --seed skips the
    finished students, resumes the cut-off ones and grades the rest, all with the batch's seed.
    """
    cfg = load_assignment("lstm_lm_vit", ROOT)
    reference = reference_submission(cfg)
    students = ["alice", "bob", "carol", "dave"]
    for name in students:
        write_files(reference, tmp_path / "class" / name)
    out = tmp_path / "out"
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "dlgrade", "grade", "lstm_lm_vit", str(tmp_path / "class"), "--out", str(out),
                             "--seed", "77", "-j", "2", "--no-report"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def states() -> dict[str, dict]:
        found = {}
        for name in students:
            try:
                found[name] = json.loads((out / name / "results.json").read_text())
            except (OSError, ValueError):
                pass
        return found

    tree: dict[int, str] = {}
    try:
        end = time.monotonic() + 300
        while time.monotonic() < end and proc.poll() is None:
            now = states()
            done = [n for n, d in now.items() if d["extra_data"]["complete"]]
            going = [n for n, d in now.items() if not d["extra_data"]["complete"] and len(d["tests"]) >= 3]
            if done and going:
                tree = _descendants(proc.pid)
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    killed_after = time.monotonic() - started
    assert tree, "the batch finished (or never started) before it could be killed mid-way"
    assert len(tree) >= 4, f"expected the grader, its pool and their zygotes and workers: {tree}"
    end = time.monotonic() + 10
    while _still_running(tree) and time.monotonic() < end:  # the zygotes and workers die with their parents
        time.sleep(0.05)
    assert _still_running(tree) == [], "processes of the killed batch are still running"

    before = states()
    complete = {n: (out / n / "results.json").read_bytes() for n, d in before.items() if d["extra_data"]["complete"]}
    partial = {n: d for n, d in before.items() if not d["extra_data"]["complete"]}
    assert complete and partial
    for name, data in before.items():
        check_gradescope(data)
        assert data["extra_data"]["seed"] == 77 and data["extra_data"]["student"] == name
    for name in complete:
        assert before[name]["extra_data"]["status"] == "graded" and before[name]["score"] == 41
    for name, data in partial.items():
        assert data["extra_data"]["status"] == "in progress" and "cut off" in data["output"]
        assert 1 <= len(data["tests"]) < 44 and data["extra_data"]["pending"], name

    rerun_started = time.monotonic()
    run = grade_cli(tmp_path / "class", out, "-j", "2", "--no-report")   # no --seed: the batch's is taken
    rerun_seconds = time.monotonic() - rerun_started
    assert f"{len(complete)} already complete" in run.stdout
    assert f"Graded {len(students) - len(complete)} submission(s)" in run.stdout
    for name, raw in complete.items():
        assert (out / name / "results.json").read_bytes() == raw, f"{name} was graded again"
    for name in students:
        final = run.results(name)
        check_gradescope(final)
        assert final["extra_data"]["complete"] and final["extra_data"]["seed"] == 77, name
        assert final["score"] == 41, name
    for name, data in partial.items():
        kept = {t["nodeid"]: t for t in run.results(name)["extra_data"]["tests"]}
        assert all(kept[t["nodeid"]]["seconds"] == t["seconds"] for t in data["extra_data"]["tests"]), f"{name} was not resumed"
        numbers = [t["number"] for t in run.results(name)["tests"]]
        assert numbers == [str(i) for i in range(1, len(numbers) + 1)], f"{name}: tests renumbered on resume"
    numbers = {"students": len(students), "jobs": 2, "killed_after_s": round(killed_after, 1),
               "finished_before_kill": len(complete), "cut_off": len(partial),
               "tests_kept_of_cut_off": {n: len(d["tests"]) for n, d in partial.items()},
               "not_started": len(students) - len(before), "rerun_graded": len(students) - len(complete),
               "rerun_s": round(rerun_seconds, 1)}
    print("kill -9 mid-batch:", json.dumps(numbers))
    report = os.environ.get("DLGRADE_REDTEAM_TABLE")
    if report:
        (Path(report) / "kill9.json").write_text(json.dumps(numbers, indent=1))
