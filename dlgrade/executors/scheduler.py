"""Slurm's own command-line tools (sbatch, squeue, sacct, scancel), called as subprocesses.

Only their plain-text output is read (``--parsable`` lines, ``|``-separated fields); nothing is
unpickled or evaluated. Array tasks are named ``<job>_<index>``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# states in which a task may still grade (Slurm's long names, as sacct and squeue -o %T print them)
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                    "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "PREEMPTED", "RESV_DEL_HOLD"})
# ended states that the student being graded at that moment may have caused (its code used the memory or time)
STUDENT_CAUSED = frozenset({"OUT_OF_MEMORY", "TIMEOUT"})


class SchedulerError(RuntimeError):
    """A Slurm command failed or is not installed."""


@dataclass(frozen=True)
class TaskState:
    task: str          # "<job>_<index>"
    state: str         # PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, OUT_OF_MEMORY, TIMEOUT, NODE_FAIL ...
    reason: str = ""   # why pending, or the exit code of an ended task
    node: str = ""

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def available() -> str | None:
    """Why Slurm's tools cannot be used here (None: they can)."""
    missing = [t for t in ("sbatch", "squeue") if shutil.which(t) is None]
    if missing:
        return f"Slurm's {' and '.join(missing)} not found on PATH (run on the cluster's login node, or load its module)"
    return None


def _run(cmd: list[str], timeout: float = 60) -> str:
    if shutil.which(cmd[0]) is None:
        raise SchedulerError(f"{cmd[0]} not found on PATH (run on the cluster's login node, or load its Slurm module)")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SchedulerError(f"{' '.join(cmd)} did not answer within {timeout:g} s") from None
    if proc.returncode != 0:
        raise SchedulerError(f"{' '.join(cmd)} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-2000:]}")
    return proc.stdout


def sbatch(script: Path, *options: str) -> str:
    """Submit a batch script; returns the job id (``sbatch --parsable`` prints ``id`` or ``id;cluster``)."""
    out = _run(["sbatch", "--parsable", *options, str(script)]).strip()
    job = out.splitlines()[-1].split(";")[0] if out else ""
    if not job.isdigit():
        raise SchedulerError(f"sbatch printed {out!r} instead of a job id")
    return job


def scancel(*ids: str) -> None:
    if ids:
        _run(["scancel", *ids])


def _squeue(jobs: list[str]) -> dict[str, TaskState]:
    try:
        out = _run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(jobs), "-o", "%i|%T|%r|%N"])
    except SchedulerError as exc:
        if "Invalid job id" in str(exc):  # every job has left the controller's memory
            return {}
        raise
    states: dict[str, TaskState] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) == 4:
            states[parts[0]] = TaskState(parts[0], parts[1], "" if parts[2] == "None" else parts[2], parts[3])
    return states


def _mb(text: str) -> float:
    """Slurm's memory sizes ("876668K", "4G", "500Mn") in MB; 0 when empty."""
    m = re.match(r"^([0-9.]+)([KMGT]?)", text.strip())
    if not m:
        return 0.0
    return float(m.group(1)) * {"K": 1 / 1024, "": 1 / 1024 / 1024, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2)]


def _sacct(jobs: list[str]) -> dict[str, TaskState]:
    out = _run(["sacct", "-n", "-P", "-j", ",".join(jobs), "-o", "JobID,State,ExitCode,NodeList,Reason,ReqMem,MaxRSS"])
    states: dict[str, TaskState] = {}
    requested: dict[str, float] = {}
    peak: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) != 7 or "[" in parts[0]:  # "123_[4-9%2]": array tasks not started yet (squeue lists them)
            continue
        task, step = parts[0].split(".")[0], "." in parts[0]
        if step:  # "123_4.batch": the step's peak memory
            peak[task] = max(peak.get(task, 0.0), _mb(parts[6]))
            continue
        state = parts[1].split()[0]              # "CANCELLED by 0" -> CANCELLED
        reason = parts[4] if state == "PENDING" else f"exit code {parts[2]}"
        states[task] = TaskState(task, state, "" if reason == "None" else reason, parts[3])
        requested[task] = _mb(parts[5])
    for task, st in states.items():
        # memory enforced by polling (jobacct_gather's OverMemoryKill) ends a task FAILED or CANCELLED, not OUT_OF_MEMORY
        if st.state in ("FAILED", "CANCELLED") and 0 < requested[task] <= peak.get(task, 0.0):
            states[task] = TaskState(task, "OUT_OF_MEMORY", f"used {peak[task]:.0f} MB of its {requested[task]:.0f} MB", st.node)
    return states


def task_states(jobs: list[str]) -> tuple[dict[str, TaskState], str]:
    """The state of every task of the given jobs, and where it came from ("sacct", "squeue" or "squeue only").

    sacct (accounting) knows tasks that ended long ago; squeue knows tasks that are queued or running,
    and those that ended within the controller's MinJobAge (5 minutes by default). Both are asked; squeue
    wins where either still sees the task active. Without accounting, ended tasks are known only for those minutes.
    """
    jobs = [j for j in jobs if j]
    if not jobs:
        return {}, "none"
    states: dict[str, TaskState] = {}
    source = "sacct"
    try:
        states.update(_sacct(jobs))
    except SchedulerError:
        source = "squeue only"
    try:
        queued = _squeue(jobs)
    except SchedulerError:
        if source == "squeue only":
            raise
        queued = {}
    for task, st in queued.items():  # the controller's view is the more current (accounting lags a few seconds)
        if task not in states or st.active or states[task].active:
            states[task] = st
    return states, source
