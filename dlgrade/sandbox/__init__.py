"""Sandbox backends: where the worker runs and how it is reached.

Each backend starts a :class:`Worker` for a :class:`WorkerSpec`. A worker answers requests
(see ``dlgrade.worker.dispatch``) and enforces time limits from outside: a request that
does not come back in time kills the worker and raises ``LimitExceeded``. Limits count the worker's CPU time
where the backend can read it, with a wall-clock backstop (``dlgrade.sandbox.budget``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dlgrade.sandbox.budget import CallClock


@dataclass(frozen=True)
class WorkerSpec:
    files: dict[str, bytes]              # relative path -> content (submission + given support files)
    modules: tuple[str, ...]             # importable submission modules
    forbidden: tuple[dict[str, Any], ...] = ()   # run-time rules: {"id", "module", "scope", "apis", "allow"}
    memory_mb: int = 2048
    processes: int = 64
    file_size_mb: int = 64
    cpu_seconds: int = 3600
    threads: int = 1
    device: str = "cpu"
    hide: tuple[str, ...] = ()           # paths the worker must not see
    extra: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {"modules": list(self.modules), "forbidden": list(self.forbidden), "memory_mb": self.memory_mb,
                "processes": self.processes, "file_size_mb": self.file_size_mb, "cpu_seconds": self.cpu_seconds,
                "threads": self.threads, "device": self.device, "hide": list(self.hide), **self.extra}


class Worker(Protocol):
    info: dict[str, Any]

    def request(self, message: dict[str, Any], timeout: float | CallClock) -> dict[str, Any]: ...

    def cpu_seconds(self) -> float | None: ...   # CPU time the worker has used (None: unknown; limits fall back to wall time)

    def output(self, limit: int = 20_000) -> str: ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str

    def start(self, spec: WorkerSpec, timeout: float = 60.0) -> Worker: ...

    def shutdown(self) -> None: ...


def get_backend(name: str, preload: tuple[str, ...] = (), **options: Any) -> Backend:
    """A backend by name. ``options`` configure the docker backend (see ``DockerOptions``:
    image, gpus, cpus, pids, warm) and, with ``allow_unisolated``, let the process backend grade where it
    cannot isolate (not root and no user namespaces); the other options are ignored where they do not apply.
    ``preload``: installed modules imported before any student code (an assignment's ``[worker] preload``): once
    by the process backend's zygote for all its workers, by each container while it waits warm; in-process they
    stay loaded after the first submission anyway."""
    if name == "process":
        from dlgrade.sandbox.process import ProcessBackend
        backend = ProcessBackend(allow_unisolated=options.get("allow_unisolated"), preload=preload)
        backend.warm()   # the zygote imports torch while the grader gets ready
        return backend
    if name == "inprocess":
        from dlgrade.sandbox.inprocess import InProcessBackend
        return InProcessBackend()
    if name == "docker":
        from dlgrade.sandbox.docker import DockerBackend, DockerOptions
        return DockerBackend(DockerOptions(preload=tuple(preload),
                                           **{k: v for k, v in options.items() if v is not None and k != "allow_unisolated"}))
    raise ValueError(f"unknown sandbox {name!r} (choose process, docker or inprocess)")
