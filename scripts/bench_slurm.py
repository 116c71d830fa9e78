"""Measure grading a class on Slurm against grading it locally (the numbers in docs/cluster.md).

usage: python scripts/bench_slurm.py [ASSIGNMENT] [--out DIR] [--seed N]

Needs a running Slurm (a single-node one: make slurm-cluster). The class is the demo class
(scripts/demo_submissions.py: reference, blank skeleton, catalogued bugs, hostile submissions).
It measures, each as a user runs it (the `dlgrade` command, wall time):

1. local grading with -j 2;
2. Slurm with two array tasks at once: 2 tasks of half the class each, and one task per student
   (--max-concurrent 2);
3. the scheduler's overhead per task: a task's elapsed time (sacct) minus the grading time of its
   students (execution_time in their results), and the wait from submission to the first task;
4. resuming: one student's task is cancelled once it has finished a few tests; the time the same
   command then takes to finish it, against grading that student from scratch.

It also checks that every student's results equal local grading's (test by test, timings aside).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def dlgrade(*args: str) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dlgrade", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"dlgrade {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.monotonic() - started, proc.stdout


def results(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("*/results.json"))}


def comparable(data: dict[str, Any]) -> Any:
    return (data["score"], data["tests"], [{k: v for k, v in t.items() if k != "seconds"} for t in data["extra_data"]["tests"]])


def outcomes(data: dict[str, Any]) -> Any:
    """Score, and each test's points and status (time-out messages print the time budget left, which varies)."""
    return (data["score"], [(t["name"], t["score"], t["status"]) for t in data["tests"]])


def sacct_times(job: str) -> dict[str, tuple[float, float]]:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,Start,End"], capture_output=True, text=True,
                         check=True).stdout
    times = {}
    for line in out.splitlines():
        task, start, end = line.split("|")
        if start[:1].isdigit() and end[:1].isdigit():
            times[task] = (datetime.fromisoformat(start).timestamp(), datetime.fromisoformat(end).timestamp())
    return times


def slurm(assignment: str, subs: Path, out: Path, seed: int, *extra: str) -> float:
    seconds, _ = dlgrade("grade", assignment, str(subs), "--out", str(out), "--executor", "slurm", "--seed", str(seed),
                         "--cpus-per-task", "1", "--wait", *extra)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("assignment", nargs="?", default="lstm_lm_vit")
    ap.add_argument("--out", default=str(ROOT / "dist" / "bench-slurm"))
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    from dlgrade.executors.manifest import runs
    from dlgrade.executors.scheduler import available, scancel

    problem = available()
    if problem:
        raise SystemExit(f"{problem}; a single-node cluster: make slurm-cluster")
    base = Path(args.out).resolve()
    shutil.rmtree(base, ignore_errors=True)
    subs = base / "submissions"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "demo_submissions.py"), args.assignment, str(subs)], cwd=ROOT, check=True,
                   capture_output=True)
    n = len(list(subs.iterdir()))
    rows: list[tuple[str, str]] = []

    local_s, _ = dlgrade("grade", args.assignment, str(subs), "--out", str(base / "local"), "-j", "2", "--seed", str(args.seed),
                         "--no-report")
    rows.append((f"local, -j 2 ({n} students)", f"{local_s:.1f} s"))
    local = results(base / "local")

    halves = slurm(args.assignment, subs, base / "slurm-2", args.seed, "--students-per-task", str((n + 1) // 2))
    rows.append((f"Slurm, 2 tasks of {(n + 1) // 2} students", f"{halves:.1f} s"))
    single = slurm(args.assignment, subs, base / "slurm-1", args.seed, "--students-per-task", "1", "--max-concurrent", "2")
    rows.append((f"Slurm, {n} tasks of 1 student, 2 at once", f"{single:.1f} s"))
    for name in ("slurm-2", "slurm-1"):
        got = results(base / name)
        same = sum(comparable(got[s]) == comparable(local[s]) for s in local if s in got)
        scores = sum(outcomes(got[s]) == outcomes(local[s]) for s in local if s in got)
        rows.append((f"{name}: students whose scores and test outcomes equal local grading's", f"{scores}/{len(local)}"))
        rows.append((f"{name}: ... whose whole results (every message) are equal", f"{same}/{len(local)}"))

    m = runs(base / "slurm-1")[-1]
    times = sacct_times(m.array_job)
    got = results(base / "slurm-1")
    overheads = []
    for i, shard in enumerate(m.shards):
        start, end = times[f"{m.array_job}_{i}"]
        overheads.append(end - start - sum(got[s]["execution_time"] for s in shard))
    first_start = min(s for s, _ in times.values())
    rows.append(("per task: elapsed minus grading time (mean, min-max)",
                 f"{sum(overheads) / len(overheads):.1f} s ({min(overheads):.1f}-{max(overheads):.1f} s)"))
    rows.append(("submission to first task start", f"{first_start - m.created:.1f} s"))
    collect = sacct_times(m.collect_job)[m.collect_job]
    rows.append(("last task end to grades.csv written (final job)", f"{collect[1] - max(e for _, e in times.values()):.1f} s"))

    # resume: cancel the reference's task after a few tests, then run the same command again
    out = base / "slurm-resume"
    student = sorted(p.name for p in subs.iterdir())[0]
    dlgrade("grade", args.assignment, str(subs / student), "--out", str(out),
            "--executor", "slurm", "--seed", str(args.seed), "--cpus-per-task", "1")
    m = runs(out)[-1]
    sid = m.shards[0][0]
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            tests = json.loads((out / sid / "results.json").read_text())["extra_data"]["tests"]
        except (OSError, ValueError, KeyError):
            tests = []
        if len(tests) >= 5:
            scancel(f"{m.array_job}_0")
            break
        time.sleep(0.2)
    while subprocess.run(["squeue", "-h", "-j", f"{m.array_job},{m.collect_job}"], capture_output=True, text=True).stdout.strip():
        time.sleep(0.5)
    kept = len(json.loads((out / sid / "results.json").read_text())["extra_data"]["tests"])
    resume_s, _ = dlgrade("grade", args.assignment, str(subs / student), "--out", str(out),
                          "--executor", "slurm", "--seed", str(args.seed), "--cpus-per-task", "1", "--wait")
    full = got[sid]["execution_time"] if sid in got else float("nan")
    rows.append((f"resume {sid} after its task was cancelled ({kept} tests kept)",
                 f"{resume_s:.1f} s (grading it whole: {full:.1f} s of grading)"))

    width = max(len(r[0]) for r in rows)
    print(f"| {'measured'.ljust(width)} | value |\n| {'-' * width} | --- |")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value} |")


if __name__ == "__main__":
    main()
