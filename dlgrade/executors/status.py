"""``dlgrade status RESULTS``: how a class run is going, per student and in total.

Read from the results folder (``<student>/results.json``, and the runs under ``.dlgrade/slurm/``) and,
for a Slurm run, from the scheduler (sacct, then squeue). A student is

- ``done``: complete results (what grading skips next time);
- ``running`` / ``queued``: its array task is running / waiting;
- ``failed``: its task ended without finishing it (it is graded again when the command is re-run), its
  results carry a grader error, or its own code got its task killed (final: ``stopped``);
- ``missing``: no results and no task (not submitted yet).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlgrade.executors import scheduler
from dlgrade.executors.manifest import Manifest, result_state, runs

if TYPE_CHECKING:
    from rich.console import Console

STATES = ("done", "running", "queued", "failed", "missing")


@dataclass(frozen=True)
class StudentStatus:
    student: str
    state: str            # one of STATES
    score: float
    max_score: float
    task: str             # "<job>_<index>" of the latest run, '' if none
    detail: str


@dataclass(frozen=True)
class ClassStatus:
    results: Path
    run: Manifest | None
    students: tuple[StudentStatus, ...]
    source: str           # where task states came from: "sacct", "squeue only", "none"
    active: bool          # a task or the final job of the latest run is queued or running

    def counts(self) -> dict[str, int]:
        c = Counter(s.state for s in self.students)
        return {k: c.get(k, 0) for k in STATES}

    def summary(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.counts().items())
        run = (f"; run {self.run.run}, jobs {self.run.array_job or '-'} (array) and {self.run.collect_job or '-'} (final), "
               f"task states from {self.source}") if self.run else "; no Slurm run recorded (graded locally?)"
        return f"{len(self.students)} student(s): {counts}{run}"


def _outcome(m: Manifest) -> dict[str, Any]:
    try:
        data = json.loads((m.folder / "outcome.json").read_text())
        students = data.get("students", {})
        return students if isinstance(students, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def _one(results: Path, student: str, m: Manifest | None, states: dict[str, scheduler.TaskState],
         outcome: dict[str, Any]) -> StudentStatus:
    rs = result_state(results, student)
    task = m.task_of(student) if m is not None and m.array_job else ""
    ts = states.get(task)

    def out(state: str, detail: str) -> StudentStatus:
        return StudentStatus(student, state, rs.score, rs.max_score, task, detail)

    if rs.state == "done" and (m is None or m.counts_as_done(student, rs)):
        if rs.status == "stopped":
            return out("failed", f"stopped: {rs.reason} (final; --force grades it again)")
        return out("done", rs.status)
    if ts is not None and ts.active:
        so_far = f", {rs.tests} test(s) so far" if rs.state == "partial" else ""
        if ts.state in ("RUNNING", "COMPLETING"):
            return out("running", f"on {ts.node or '?'}{so_far}")
        return out("queued", f"{ts.state.lower()}" + (f" ({ts.reason})" if ts.reason else "") + so_far)
    if rs.state == "failed":
        return out("failed", (rs.status or "grader error") + (f": {rs.reason}" if rs.reason else ""))
    why = outcome.get(student, {}).get("why") if isinstance(outcome.get(student), dict) else None
    if ts is not None or why:
        left = f"; {rs.tests} test(s) kept" if rs.state == "partial" else ""
        ended = why or f"task {task} ended {ts.state if ts is not None else 'UNKNOWN'}"
        return out("failed", f"{ended}{left}; re-run the command to finish it")
    return out("missing", "partial results, no task" if rs.state == "partial" else "not submitted")


def class_status(results: Path) -> ClassStatus:
    results = Path(results)
    if not results.is_dir():
        raise FileNotFoundError(f"no results folder {results}")
    recorded = runs(results)
    m = recorded[-1] if recorded else None
    students = set(m.students) if m is not None else set()
    students |= {p.parent.name for p in results.glob("*/results.json")}
    states: dict[str, scheduler.TaskState] = {}
    source = "none"
    if m is not None and m.array_job:
        states, source = scheduler.task_states([m.array_job, m.collect_job])
    outcome = _outcome(m) if m is not None else {}
    rows = tuple(_one(results, s, m, states, outcome) for s in sorted(students))
    active = any(st.active for st in states.values())
    return ClassStatus(results, m, rows, source, active)


def _table(status: ClassStatus):  # type: ignore[no-untyped-def]
    from rich.table import Table

    table = Table(title=f"{status.results}" + (f" ({status.run.assignment}, seed {status.run.seed})" if status.run else ""))
    for col in ("student", "state", "score", "task", "detail"):
        table.add_column(col)
    for s in status.students:
        score = f"{s.score:g}/{s.max_score:g}" if s.max_score else "-"
        table.add_row(s.student, s.state, score, s.task or "-", s.detail)
    return table


def show(results: Path, console: Console, watch: bool = False, interval_s: float = 2.0) -> int:
    """Print the class's status; with ``watch``, a live progress bar until no task is queued or running."""
    try:
        return _show(results, console, watch, interval_s)
    except scheduler.SchedulerError as exc:
        print(f"dlgrade: error: {exc}", file=sys.stderr)
        return 2


def _show(results: Path, console: Console, watch: bool, interval_s: float) -> int:
    status = class_status(results)
    if watch and status.active:
        from rich.live import Live
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        bar = Progress(TextColumn("done"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"))
        task = bar.add_task("", total=len(status.students))
        with Live(bar, console=console, transient=True, refresh_per_second=4):
            while status.active:
                counts = status.counts()
                bar.update(task, total=len(status.students), completed=counts["done"],
                           description=", ".join(f"{n} {k}" for k, n in counts.items() if k != "done"))
                time.sleep(interval_s)
                status = class_status(results)
    console.print(_table(status))
    print(status.summary())
    return 0


def cancel(results: Path) -> int:
    """scancel the latest run's array; its final job still runs and writes grades.csv, with why students are
    unfinished. Finished tests stay; running the same grade command again goes on from there."""
    recorded = runs(Path(results))
    if not recorded or not recorded[-1].array_job:
        print(f"no Slurm run recorded in {results}")
        return 1
    m = recorded[-1]
    try:
        scheduler.scancel(m.array_job)
    except scheduler.SchedulerError as exc:
        print(f"dlgrade: error: {exc}", file=sys.stderr)
        return 2
    print(f"Cancelled the job array {m.array_job} of run {m.run}; its final job {m.collect_job} still writes grades.csv. Finished "
          "tests are kept, and running the same grade command again goes on from there")
    return 0
