"""The ``slurm`` executor: grade a class as a Slurm job array on a cluster.

:func:`submit` finds the submissions with the normal intake, leaves out students whose results are
complete (unless ``--force``), cuts the rest into shards, writes the run's manifest and two batch
scripts (see :mod:`dlgrade.executors.manifest`) and submits them with ``sbatch --parsable``: the array
(one task per shard, ``--requeue``) and a final job (``--dependency=afterany:<array>``) that writes
grades.csv and the reports. Each task runs :mod:`dlgrade.executors.task` on the cluster: the normal
engine on its shard, into the shared results folder. Running the same command again submits only the
students still without complete results, with the same seed.
"""

from __future__ import annotations

import csv
import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from dlgrade import intake
from dlgrade.config import AssignmentConfig
from dlgrade.executors import scheduler
from dlgrade.executors.manifest import Manifest, new_run_name, result_state, runs
from dlgrade.executors.settings import SlurmSettings, warnings
from dlgrade.grade import GradeOptions, new_seed
from dlgrade.intake import student_id

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class Submitted:
    manifest: Manifest | None     # None: nothing was left to grade
    students: tuple[str, ...]     # submitted in this run
    skipped: tuple[str, ...]      # already complete
    seed: int
    warnings: tuple[str, ...]


def _plan(todo: list[str], alone: set[str], per_task: int) -> tuple[tuple[str, ...], ...]:
    """Shards of at most ``per_task`` students; students that got a shared task killed go alone."""
    rest = [s for s in todo if s not in alone]
    return tuple((s,) for s in todo if s in alone) + tuple(tuple(rest[i:i + per_task]) for i in range(0, len(rest), per_task))


def _alone(previous: Manifest | None) -> set[str]:
    if previous is None:
        return set()
    try:
        data = json.loads((previous.folder / "outcome.json").read_text())
    except (OSError, ValueError):
        return set()
    return {s for s, o in data.get("students", {}).items() if isinstance(o, dict) and o.get("action") == "alone"}


def _script(m: Manifest, kind: str, options: list[str]) -> Path:
    path = m.folder / f"{kind}.sbatch"
    logs = m.folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    name = f"dlgrade-{m.assignment}" + ("-collect" if kind == "collect" else "")
    log = logs / ("task-%A_%a.out" if kind == "grade" else "collect-%j.out")
    lines = ["#!/bin/bash", f"# {'Grades one shard' if kind == 'grade' else 'Writes grades.csv and the reports'} of the dlgrade "
             f"run {m.run} ({m.assignment}, seed {m.seed}); written by `dlgrade grade --executor slurm`.",
             f"#SBATCH --job-name={name}", f"#SBATCH --chdir={shlex.quote(m.root)}", f"#SBATCH --output={log}",
             "#SBATCH --open-mode=append", *(f"#SBATCH {o}" for o in options), "",
             f"exec {shlex.quote(m.python)} -m dlgrade.executors.task {kind} {shlex.quote(str(m.path))}", ""]
    path.write_text("\n".join(lines))
    return path


def submit(cfg: AssignmentConfig, path: Path, out: Path, opts: GradeOptions, settings: SlurmSettings) -> Submitted:
    problem = scheduler.available()
    if problem:
        raise scheduler.SchedulerError(problem)
    results = out.resolve()
    submissions = intake.find_submissions(path, cfg)
    ids = [student_id(p) for p in submissions]
    if len(set(ids)) != len(ids):
        raise ValueError(f"two submissions map to the same student id: {', '.join(sorted({i for i in ids if ids.count(i) > 1}))}")
    recorded = runs(results)
    previous = recorded[-1] if recorded else None
    if previous is not None and previous.array_job:
        active = [t for t, st in scheduler.task_states([previous.array_job, previous.collect_job])[0].items() if st.active]
        if active:
            raise ValueError(f"the run {previous.run} on {results} is still going (tasks {', '.join(sorted(active)[:5])}): wait for it "
                             f"(dlgrade status {out} --watch) or cancel it (dlgrade status {out} --cancel)")
    seed = opts.seed if opts.seed is not None else (previous.seed if previous is not None else new_seed())
    todo = [s for s in ids if opts.force or result_state(results, s).state != "done"]
    skipped = tuple(s for s in ids if s not in todo)
    said = tuple(warnings(settings, cfg))
    m = Manifest(run=new_run_name(), assignment=cfg.id, root=str(cfg.root.resolve()), results=str(results), seed=seed,
                 sandbox=opts.sandbox, device=opts.device, limits=asdict(cfg.limits),
                 students={s: str(p.resolve()) for s, p in zip(ids, submissions, strict=True)},
                 shards=_plan(todo, _alone(previous), settings.students_per_task), python=sys.executable,
                 settings=asdict(settings), backend_options=opts.backend_options, force=opts.force, created=time.time())
    if not todo:
        m.save()
        return Submitted(None, (), skipped, seed, said)
    m.save()
    grade = _script(m, "grade", settings.sbatch_options() + ["--requeue"])
    limit = f"%{settings.max_concurrent}" if settings.max_concurrent else ""
    array = scheduler.sbatch(grade, f"--array=0-{len(m.shards) - 1}{limit}")
    m = m.with_jobs(array)
    m.save()
    collect_opts = [o for o in settings.sbatch_options() if o.split("=")[0] in ("--partition", "--account", "--qos")]
    collect = _script(m, "collect", [*collect_opts, "--time=00:30:00", f"--mem={2048}M", "--ntasks=1", "--cpus-per-task=1"])
    try:
        collect_job = scheduler.sbatch(collect, f"--dependency=afterany:{array}")
    except scheduler.SchedulerError:
        scheduler.scancel(array)
        raise
    m = m.with_jobs(array, collect_job)
    m.save()
    return Submitted(m, tuple(todo), skipped, seed, said)


def collect_now(m: Manifest) -> int:
    """Write grades.csv and the reports here, without the scheduler (nothing was left to grade)."""
    from dlgrade.executors.task import collect

    return collect(m)


def wait(m: Manifest, poll_s: float = 2.0, show: bool = True) -> scheduler.TaskState:
    """Block until the run's final job has ended, with a progress bar of students done; returns its state."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    students = [s for shard in m.shards for s in shard]
    results = Path(m.results)
    with Progress(TextColumn("slurm"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                  transient=True, disable=not show or not sys.stdout.isatty()) as bar:
        task = bar.add_task("", total=len(students))
        while True:
            states, _ = scheduler.task_states([m.array_job, m.collect_job])
            done = sum(m.counts_as_done(s, result_state(results, s)) for s in students)
            running = sum(st.state == "RUNNING" for t, st in states.items() if t != m.collect_job)
            bar.update(task, completed=done, description=f"{running} task(s) running")
            final = states.get(m.collect_job)
            if final is not None and not final.active:
                return final
            if final is None and not any(st.active for st in states.values()):
                return scheduler.TaskState(m.collect_job, "UNKNOWN", "the final job is no longer known to the scheduler")
            time.sleep(poll_s)


def with_device(opts: GradeOptions, settings: SlurmSettings, device_given: bool) -> GradeOptions:
    """Tasks that get GPUs train on cuda unless --device said otherwise."""
    return replace(opts, device="cuda") if settings.gpus_per_task and not device_given else opts


def grade_command(cfg: AssignmentConfig, path: Path, out: Path, opts: GradeOptions, settings: SlurmSettings,
                  block: bool, device_given: bool, console: Console) -> int:
    """``dlgrade grade --executor slurm``: submit, say what was submitted and how to watch; with ``--wait`` block
    until the final job has written grades.csv, then show it."""
    try:
        return _grade_command(cfg, path, out, with_device(opts, settings, device_given), settings, block, console)
    except scheduler.SchedulerError as exc:
        print(f"dlgrade: error: {exc}", file=sys.stderr)
        return 2


def _grade_command(cfg: AssignmentConfig, path: Path, out: Path, opts: GradeOptions, settings: SlurmSettings,
                   block: bool, console: Console) -> int:
    sub = submit(cfg, path, out, opts, settings)
    for w in sub.warnings:
        print(f"dlgrade: warning: {w}", file=sys.stderr)
    skipped = f"; {len(sub.skipped)} already complete (use --force to regrade)" if sub.skipped else ""
    if sub.manifest is None:
        last = runs(out.resolve())[-1]
        collect_now(last)
        print(f"Nothing to submit: all {len(sub.skipped)} student(s) have complete results; grades in {out}/grades.csv")
        return 0
    m = sub.manifest
    print(f"Submitted {len(sub.students)} student(s) in {len(m.shards)} array task(s) (seed {sub.seed}){skipped}: "
          f"job array {m.array_job}, final job {m.collect_job} (grades.csv and reports, after the array)")
    print(f"Run folder {m.folder} (manifest.json, scripts, logs/). Watch with: dlgrade status {out} --watch "
          f"(or squeue -j {m.array_job},{m.collect_job}); cancel with: dlgrade status {out} --cancel")
    if not block:
        return 0
    final = wait(m)
    grades = Path(m.results) / "grades.csv"
    if grades.is_file():
        _print_grades(grades, f"{cfg.id} (seed {sub.seed})", console)
    states = {s: result_state(Path(m.results), s).state for s in m.students}
    left = sorted(s for s, st in states.items() if st != "done")
    print(f"Run {m.run} ended (final job {final.state}): {len(states) - len(left)}/{len(states)} student(s) complete"
          + (f"; not complete: {', '.join(left)} (dlgrade status {out}; run the same command again to retry)" if left else "")
          + f"; grades in {grades}")
    return 0 if final.state == "COMPLETED" else 1


def _print_grades(path: Path, title: str, console: Console) -> None:
    from rich.table import Table

    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    table = Table(title=title)
    for col in rows[0]:
        table.add_column(col)
    for row in rows[1:]:
        table.add_row(*row)
    console.print(table)
