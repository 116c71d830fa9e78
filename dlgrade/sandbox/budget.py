"""The time limit of a call into a worker: the worker's CPU time, with a wall-clock backstop.

A limit says how much computing a student's code may do. Counted in the worker's CPU time (read from outside
the worker, by the grader), it means the same on a quiet machine and on a busy one: a class graded at ``-j 2``
beside other work, a shared server, a CI machine. Counted in wall-clock time, a correct submission times out
whenever the machine is loaded, which is what a grader must never do.

Wall-clock time still bounds every call, at ``WALL_FACTOR`` times its limit: code that waits without computing
(``time.sleep``, a blocking read, a deadlock) uses no CPU, and so ends there. Where a backend cannot read the
worker's CPU time, the limit is wall-clock time, as before.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from dlgrade.protocol import RecvTimeout

WALL_FACTOR = 4.0      # a call may take this many times its limit in wall-clock time (a busy machine)
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system, with its reaped children) of a process, from /proc; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(v) for v in fields[11:15]) / _TICK   # utime, stime, cutime, cstime
    except (OSError, IndexError, ValueError):
        return None


def cgroup_cpu_reader(container_id: str) -> Callable[[], float | None] | None:
    """CPU seconds a container has used, from its cgroup (v1 cpuacct or v2 cpu.stat; cgroupfs or systemd driver);
    None when this host does not expose them."""
    v1 = [f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
          f"/sys/fs/cgroup/cpu,cpuacct/docker/{container_id}/cpuacct.usage",
          f"/sys/fs/cgroup/cpuacct/system.slice/docker-{container_id}.scope/cpuacct.usage",
          f"/sys/fs/cgroup/cpu,cpuacct/system.slice/docker-{container_id}.scope/cpuacct.usage"]
    v2 = [f"/sys/fs/cgroup/docker/{container_id}/cpu.stat",
          f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"]
    for path in v1:
        if Path(path).is_file():
            def v1_read(path: str = path) -> float | None:
                try:
                    return int(Path(path).read_text()) / 1e9
                except (OSError, ValueError):
                    return None
            return v1_read
    for path in v2:
        if Path(path).is_file():
            def v2_read(path: str = path) -> float | None:
                try:
                    for line in Path(path).read_text().splitlines():
                        if line.startswith("usage_usec "):
                            return int(line.split()[1]) / 1e6
                except (OSError, ValueError):
                    pass
                return None
            return v2_read
    return None


class CallClock:
    """One call's limit: ``limit`` seconds of the worker's CPU time (``cpu`` reads it; None: not known, then the
    limit is wall-clock time), never more than ``WALL_FACTOR * limit`` of wall-clock time, nor past ``hard_end``."""

    def __init__(self, limit: float, cpu: Callable[[], float | None] | None, hard_end: float | None = None) -> None:
        self.limit = limit
        self.cpu = cpu
        self.started = time.monotonic()
        self.cpu_start = cpu() if cpu is not None else None
        self.cpu_used: float | None = None
        span = limit * WALL_FACTOR if self.cpu_start is not None else limit
        self.wall_end = self.started + span if hard_end is None else min(self.started + span, hard_end)
        self.hit = ""   # "cpu" | "wall": which limit ended the call

    def _used(self) -> float | None:
        if self.cpu is None or self.cpu_start is None:
            return None
        now = self.cpu()
        if now is not None:
            self.cpu_used = max(0.0, now - self.cpu_start)
        return self.cpu_used

    def check(self) -> None:
        """Raise RecvTimeout once the worker has used its CPU time (Channel.recv calls this while it waits)."""
        used = self._used()
        if used is not None and used > self.limit:
            self.hit = "cpu"
            raise RecvTimeout("CPU time limit")

    def spent(self) -> float:
        """What the call counts against the test's and the submission's limits: its CPU time, or its wall-clock time
        divided by WALL_FACTOR when that is more (so code that only waits uses its limits up too); without CPU
        time, its wall-clock time."""
        wall = time.monotonic() - self.started
        used = self._used()
        return wall if used is None else max(used, wall / WALL_FACTOR)

    def message(self) -> str:
        """Why the call was stopped, for the student."""
        if self.hit == "cpu" or self.cpu_start is None:
            what = "of CPU time" if self.cpu_start is not None else ""
            return f"no answer within the time limit of {self.limit:g} s {what} (an infinite loop, or far too slow)".replace("  ", " ")
        used = self.cpu_used if self.cpu_used is not None else 0.0
        return (f"no answer within the wall-clock time limit ({time.monotonic() - self.started:.0f} s), having used {used:.1f} "
                f"of its {self.limit:g} s of CPU time (code that waits instead of computing: sleep, input, a blocking read; "
                "or a machine too busy to run it)")
