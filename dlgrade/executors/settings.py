"""Slurm settings of a class run, resolved once: defaults < ``[slurm]`` of assignment.toml < command line.

``[slurm]`` keys (all optional)::

    partition = "gpu"          # sbatch --partition (default: the cluster's default partition)
    account = "cs1234"         # sbatch --account
    qos = "normal"             # sbatch --qos
    time = "00:30:00"          # per array task: [D-]HH:MM:SS or minutes
    mem_per_task_mb = 6144     # per array task, trusted side + worker
    cpus_per_task = 2
    gpus_per_task = 0
    students_per_task = 4      # the shard each array task grades, one after the other
    max_concurrent = 50        # array tasks running at once (the %N of --array)
    extra = ["--constraint=a100"]   # more sbatch options, passed as they are

A bad value is reported with where it came from (the file and table, or the command-line option).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from dlgrade.config import AssignmentConfig
from dlgrade.errors import ConfigError

_TIME = re.compile(r"^(?:(\d+)-)?(\d{1,2}):(\d{2}):(\d{2})$|^(\d+)$")
# the trusted side (torch, pytest, the reference) of one task, besides the worker's own limit
GRADER_MB = 1024


@dataclass(frozen=True)
class SlurmSettings:
    partition: str = ""
    account: str = ""
    qos: str = ""
    time: str = "01:00:00"
    mem_per_task_mb: int = 0         # 0: the worker's memory limit plus GRADER_MB
    cpus_per_task: int = 0           # 0: the worker's CPUs ([limits] cpus)
    gpus_per_task: int = 0
    students_per_task: int = 4
    max_concurrent: int = 0          # 0: no limit of our own
    extra: tuple[str, ...] = ()

    @property
    def seconds(self) -> int:
        """The task time limit in seconds."""
        return time_seconds(self.time)

    def sbatch_options(self) -> list[str]:
        """The resource lines of an array task's script (without the array itself)."""
        opts = [f"--time={self.time}", f"--mem={self.mem_per_task_mb}M", "--ntasks=1", f"--cpus-per-task={self.cpus_per_task}"]
        if self.gpus_per_task:
            opts.append(f"--gpus-per-task={self.gpus_per_task}")
        for key in ("partition", "account", "qos"):
            if getattr(self, key):
                opts.append(f"--{key}={getattr(self, key)}")
        return opts + list(self.extra)


def time_seconds(text: str) -> int:
    m = _TIME.match(text.strip())
    if not m:
        raise ValueError(text)
    if m.group(5) is not None:
        return int(m.group(5)) * 60
    days, h, mi, s = (int(g or 0) for g in m.groups()[:4])
    return ((days * 24 + h) * 60 + mi) * 60 + s


def _check(key: str, value: Any, origin: str) -> Any:
    where = f"{origin}: {key} = {value!r}"
    if key in ("partition", "account", "qos"):
        if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_.,-]*", value):
            raise ConfigError(f"{where}: must be a plain Slurm name (letters, digits, _ . , -)")
        return value
    if key == "time":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: must be a string such as \"01:30:00\" or \"2-00:00:00\"")
        try:
            if time_seconds(value) <= 0:
                raise ValueError(value)
        except ValueError:
            raise ConfigError(f"{where}: not a Slurm time limit ([D-]HH:MM:SS, or minutes)") from None
        return value.strip()
    if key == "extra":
        if isinstance(value, str) or not all(isinstance(v, str) and v.startswith("--") for v in value):
            raise ConfigError(f"{where}: must be a list of sbatch options, each starting with --")
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: must be a whole number")
    least = 1 if key == "students_per_task" else 0
    if value < least:
        raise ConfigError(f"{where}: must be at least {least}")
    return value


def slurm_settings(cfg: AssignmentConfig, **overrides: Any) -> SlurmSettings:
    """The run's settings: built-in defaults < ``[slurm]`` of assignment.toml < ``overrides`` (None: not given).

    ``overrides`` use the field names; the command line's option names are reported (``--mem-per-task``).
    """
    known = {f.name for f in fields(SlurmSettings)}
    table = cfg.raw.get("slurm", {})
    origin = f"{cfg.assignment_dir / 'assignment.toml'} [slurm]"
    if not isinstance(table, dict):
        raise ConfigError(f"{origin}: must be a table")
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{origin}: unknown keys {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    values: dict[str, Any] = {k: _check(k, v, origin) for k, v in table.items()}
    for key, value in overrides.items():
        if key not in known:
            raise TypeError(f"no Slurm setting {key!r}")
        if value is not None:
            option = "--" + key.replace("_mb", "").replace("_", "-")
            values[key] = _check(key, value, f"the command line ({option})")
    limits = cfg.limits
    values.setdefault("cpus_per_task", 0)
    values.setdefault("mem_per_task_mb", 0)
    if values["cpus_per_task"] == 0:
        values["cpus_per_task"] = limits.cpus
    if values["mem_per_task_mb"] == 0:
        values["mem_per_task_mb"] = limits.memory_mb + GRADER_MB
    return SlurmSettings(**values)


def warnings(settings: SlurmSettings, cfg: AssignmentConfig) -> list[str]:
    """Settings that work but that a class run will regret: said before anything is submitted."""
    out = []
    lim = cfg.limits
    if settings.mem_per_task_mb < lim.memory_mb + GRADER_MB:
        out.append(f"--mem-per-task {settings.mem_per_task_mb} MB is less than the worker's memory limit ({lim.memory_mb} MB) "
                   f"plus about {GRADER_MB} MB for the grader: a submission that uses its allowance gets its task killed "
                   "by Slurm (the student is then graded 0 for the tests it had not finished)")
    budget = settings.students_per_task * (lim.submission_timeout_s + 60)
    if settings.seconds < budget:
        out.append(f"--time {settings.time} is less than {settings.students_per_task} student(s) per task x the suite's time "
                   f"limit ({lim.submission_timeout_s:g} s) plus a minute: slow submissions may get the task stopped at its time "
                   "limit (the students not finished are graded again when you re-run the command)")
    return out
