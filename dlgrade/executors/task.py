"""What runs inside the cluster's jobs: ``python -m dlgrade.executors.task grade|collect MANIFEST``.

``grade`` (one array task, ``SLURM_ARRAY_TASK_ID``): grades its shard with the normal engine
(:func:`dlgrade.grade.grade_one`: the same sandbox, seed and limits as local grading) into the shared
results folder, one student after the other, skipping students already complete (a requeued task
resumes). SIGTERM (preemption, scancel, the time limit) stops it the way Ctrl-C stops local grading:
the test being run is dropped, every finished test is kept, nothing half-written is left.

``collect`` (the job that runs after the whole array, ``afterany``): works out why students were
left unfinished, writes ``grades.csv`` and the reports.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dlgrade.errors import SandboxUnavailable
from dlgrade.executors.manifest import Manifest, load_manifest, result_state
from dlgrade.executors.scheduler import STUDENT_CAUSED, SchedulerError, TaskState, task_states
from dlgrade.grade import grade_one
from dlgrade.results import GradeRow, SubmissionResult, TestResult, write_grades_csv, write_json_atomic, write_results


def _progress(m: Manifest, index: int, student: str | None) -> None:
    write_json_atomic(m.folder / "progress" / f"{index}.json",
                      {"student": student, "since": time.time(), "job": os.environ.get("SLURM_JOB_ID", ""),
                       "restarts": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0)})


def grade_shard(m: Manifest, index: int) -> int:
    cfg, opts = m.config(), m.grade_options()
    results = Path(m.results)
    # SIGTERM becomes KeyboardInterrupt: the engine then stops as on Ctrl-C (no half-graded test recorded)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        backend = opts.backend(cfg)
    except SandboxUnavailable as exc:  # e.g. a node that refuses user namespaces: no student is graded there
        print(f"dlgrade: the sandbox cannot start on this node ({os.uname().nodename}): {exc}", flush=True)
        return 3
    print(f"task {index} of run {m.run}: {len(m.shards[index])} student(s), sandbox {opts.sandbox} "
          f"(isolation: {getattr(backend, 'isolation', 'container')}), uid {os.geteuid()}", flush=True)
    graded = 0
    try:
        for student in m.shards[index]:
            # with --force, results written before this run are graded again; a requeued task keeps its own
            if m.counts_as_done(student, result_state(results, student)):
                continue
            _progress(m, index, student)
            r = grade_one(cfg, backend, Path(m.students[student]), m.seed, results, opts.device)
            graded += 1
            print(f"{student}: {r.score:g}/{r.max_score:g} ({r.status}) in {r.execution_time:.1f} s", flush=True)
    except KeyboardInterrupt:
        print(f"stopped by a signal after {graded} student(s): finished tests are kept; the task is requeued, or the "
              "rest is graded when the same command runs again", flush=True)
        return 143
    finally:
        backend.shutdown()
    _progress(m, index, None)
    return 0


# ----------------------------------------------------------------------------- the final job


def _in_progress(m: Manifest, index: int) -> str | None:
    try:
        data = load_json(m.folder / "progress" / f"{index}.json")
    except (OSError, ValueError):
        return None
    student = data.get("student")
    return student if isinstance(student, str) and student in m.shards[index] else None


def load_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def _all_tests(results: Path, students: list[str], assignment: str) -> list[TestResult]:
    """The suite's tests (names, points, visibility), taken from a complete results file of the same class."""
    for student in students:
        st = result_state(results, student)
        extra = st.data.get("extra_data", {})
        if st.state == "done" and st.status == "graded" and extra.get("assignment") == assignment:
            try:
                return [TestResult(**t) for t in extra.get("tests", [])]
            except TypeError:
                continue
    return []


def stop_student(m: Manifest, student: str, state: TaskState, why: str) -> None:
    """Final results for a student whose own code got its task killed while it was graded alone.

    The tests finished before are kept; every other test scores 0 with the reason. ``complete`` is true,
    so re-running the command does not grade the student again (``--force`` does).
    """
    results = Path(m.results)
    st = result_state(results, student)
    done = {t["nodeid"]: TestResult(**t) for t in st.data.get("extra_data", {}).get("tests", [])} if st.state == "partial" else {}
    message = f"Not graded: {why}. Tests finished before that are kept."
    tests = [done.get(t.nodeid) or TestResult(t.name, t.number, 0.0, t.max_score, "failed", message, t.visibility, t.part,
                                               t.nodeid, spec=t.spec, advice=t.advice)
             for t in _all_tests(results, [s for s in m.students if s != student], m.assignment)]
    if not tests:
        tests = [*done.values(), TestResult("Grading", "0", 0.0, 0.0, "failed", message, "visible", "", "grading")]
    score = sum(t.score for t in tests)
    write_results(SubmissionResult(
        student=student, assignment=m.assignment, seed=m.seed, tests=tuple(tests), execution_time=0.0,
        output=f"{student}: {score:g} / {sum(t.max_score for t in tests):g} points (input seed {m.seed}).\n- {message}",
        status="stopped", reason=why), results / student)


def _why(state: TaskState, m: Manifest) -> str:
    if state.state == "OUT_OF_MEMORY":
        return (f"grading this submission used more memory than the grading task's {m.settings.get('mem_per_task_mb')} MB, "
                f"so the cluster stopped it (task {state.task})")
    if state.state == "TIMEOUT":
        return f"grading this submission ran past the grading task's time limit of {m.settings.get('time')} (task {state.task})"
    return f"its grading task {state.task} ended {state.state}" + (f" ({state.reason})" if state.reason else "")


def _memory_kill(m: Manifest, state: TaskState) -> TaskState:
    """Without accounting, a task killed for its memory by polling ends FAILED; slurmstepd says why in the task's log."""
    if state.state not in ("FAILED", "CANCELLED", "UNKNOWN"):
        return state
    try:
        log = (m.folder / "logs" / f"task-{state.task}.out").read_text(errors="replace")
    except OSError:
        return state
    if "exceeded memory limit" in log or "oom-kill event" in log:
        return TaskState(state.task, "OUT_OF_MEMORY", "slurmstepd: exceeded the memory limit", state.node)
    return state


def settle(m: Manifest, states: dict[str, TaskState]) -> dict[str, dict[str, Any]]:
    """For every unfinished student of the run: its task's end and what follows. Students whose own code got a
    task killed while graded alone are given final results (:func:`stop_student`); a student killed in a shared
    task is graded alone next time; every other unfinished student is simply graded again."""
    results = Path(m.results)
    outcome: dict[str, dict[str, Any]] = {}
    for index, shard in enumerate(m.shards):
        task = f"{m.array_job}_{index}"
        state = _memory_kill(m, states.get(task, TaskState(task, "UNKNOWN")))
        current = _in_progress(m, index)
        for student in shard:
            if m.counts_as_done(student, result_state(results, student)):
                continue
            blamed = student == current and state.state in STUDENT_CAUSED
            why = _why(state, m)
            if blamed and len(shard) == 1:
                stop_student(m, student, state, why)
                action = "stopped"
            else:
                action = "alone" if blamed else "again"
            outcome[student] = {**asdict(state), "in_progress": student == current, "action": action, "why": why}
    write_json_atomic(m.folder / "outcome.json", {"students": outcome})
    return outcome


def class_rows(m: Manifest, outcome: dict[str, dict[str, Any]]) -> list[GradeRow]:
    """grades.csv rows of every student of the class, unfinished ones with why (they score 0 until re-run)."""
    rows = []
    results = Path(m.results)
    for student in sorted(m.students):
        st = result_state(results, student)
        why = outcome.get(student, {}).get("why", "its grading task has not run")
        if st.state in ("done", "failed"):
            rows.append(GradeRow.from_results(st.data))
        else:
            status = "not finished" if st.state == "partial" else "not graded"
            rows.append(GradeRow(student, st.score, st.max_score, {}, m.seed, status, f"{why}; run the same command again"))
    return rows


def collect(m: Manifest) -> int:
    from dlgrade.report import ReportView, write_reports

    cfg = m.config()
    try:
        states, source = task_states([m.array_job])
    except SchedulerError as exc:
        print(f"the scheduler did not answer ({exc}); unfinished students are graded again next time", flush=True)
        states, source = {}, "none"
    outcome = settle(m, states)
    rows = class_rows(m, outcome)
    csv = write_grades_csv(rows, cfg.parts, Path(m.results) / "grades.csv")
    rep = write_reports(Path(m.results), ReportView("student", after_due_date=False, published=False))
    unfinished = [s for s, o in outcome.items() if o["action"] != "stopped"]
    print(f"{len(rows) - len(unfinished)}/{len(rows)} student(s) have final results (task states from {source}); "
          f"{len(unfinished)} unfinished{': ' + ', '.join(unfinished) if unfinished else ''}; grades in {csv}, "
          f"reports in {rep.folder}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("grade", "collect"):
        print("usage: python -m dlgrade.executors.task grade|collect MANIFEST", file=sys.stderr)
        return 2
    m = load_manifest(Path(argv[1]))
    if argv[0] == "collect":
        return collect(m)
    index = int(os.environ.get("SLURM_ARRAY_TASK_ID", "-1"))
    if not 0 <= index < len(m.shards):
        print(f"SLURM_ARRAY_TASK_ID={index} is not a task of {m.path} (0 to {len(m.shards) - 1})", file=sys.stderr)
        return 2
    return grade_shard(m, index)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
