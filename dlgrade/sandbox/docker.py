"""The `docker` backend: one fresh container per submission, reached over its stdin/stdout.

Each container runs only the worker (``python -m dlgrade.worker.main``), under Docker's init and
``timeout`` (a hard lifetime); those two stay root, and the worker drops to an unprivileged user
(``WORKER_USER``) and loads its seccomp filter before any student code runs, so that it cannot signal
or ptrace them. No network, a read-only root filesystem, a tmpfs for /tmp, no capability (but
SETUID, SETGID and SETPCAP, all gone with the drop, bounding set included), ``no-new-privileges``
and memory, process and CPU limits.
Two read-only bind mounts are all
it sees of the host: the worker code (``dlgrade/__init__.py``, ``protocol.py``, ``worker/``,
copied once per backend) and the directory holding this one submission. Hidden tests,
reference solutions and results never enter it.

Containers are started one ahead (a warm pool of one per backend): the next container is
created, started and has imported torch while the current submission is graded, with an
empty submission directory mounted; its files are written there just before it is used.
Every container carries the labels ``dlgrade.worker`` and ``dlgrade.batch`` and is removed on
every path: normal end, time-out, crash, and (through :func:`remove_batch_containers`) an
interrupted batch.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlgrade.errors import BadAnswer, LimitExceeded, SandboxUnavailable, WorkerCrashed
from dlgrade.protocol import Channel, PeerClosed, ProtocolError, RecvTimeout
from dlgrade.sandbox import WorkerSpec
from dlgrade.sandbox.budget import CallClock, cgroup_cpu_reader

CPU_IMAGE = "dlgrade-sandbox:cpu"
GPU_IMAGE = "dlgrade-sandbox:gpu"
WORKER_USER = "10001:10001"   # the worker's uid:gid; the container starts as root (no capability but these two) to drop to it
CONTAINER_CAPS = ["SETUID", "SETGID", "SETPCAP"]   # the worker's drop to WORKER_USER, and emptying its bounding set
SUBMISSION_MOUNT = "/submission"
WORKER_CODE_MOUNT = "/opt/dlgrade"
# Memory of the container = the assignment's memory limit + what Python and torch take at rest.
RUNTIME_ALLOWANCE_MB = 512
OWNER_LABEL = "dlgrade.owner"    # host:pid of the grading process that made the container
BATCH_ENV = "DLGRADE_BATCH_ID"  # set by grade_batch for all of a batch's processes
TAG_ENV = "DLGRADE_CONTAINER_TAG"  # optional: label dlgrade.tag on every container (a test session, a CI job) to count its own
MAX_OUTPUT = 1 << 20


class DockerUnavailable(SandboxUnavailable):
    """The Docker engine (or the sandbox image) cannot be used; the message says how to fix it."""


def _explain_engine_error(exc: Exception) -> DockerUnavailable:
    return DockerUnavailable(
        "the docker sandbox needs a running Docker engine, and none answered "
        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}).\n"
        "  fix: install and start it (Debian/Ubuntu as root: apt-get install -y docker.io && dockerd &, "
        "or systemctl start docker), make sure your user may use it (the docker group) or set DOCKER_HOST,\n"
        "  then build the image with `make sandbox-image`.\n"
        "  or grade without containers: --sandbox process")


def client_from_env() -> Any:
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a declared dependency
        raise DockerUnavailable("the Python package `docker` is missing: pip install docker (or use --sandbox process)") from exc
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        raise _explain_engine_error(exc) from None
    return client


@dataclass(frozen=True)
class DockerOptions:
    image: str | None = None           # default: CPU_IMAGE, or GPU_IMAGE when gpus is set
    gpus: str | None = None            # None, "all", or a count such as "1"
    cpus: float | None = None          # CPU quota of each container (default: the spec's threads)
    pids: int | None = None            # process limit (default: the spec's processes)
    tmp_mb: int = 256
    warm: bool = True                  # keep one container started ahead
    preload: tuple[str, ...] = ()      # the assignment's [worker] preload, imported while the container waits warm

    @property
    def image_name(self) -> str:
        return self.image or (GPU_IMAGE if self.gpus else CPU_IMAGE)


def device_requests(gpus: str | None) -> list[dict[str, Any]]:
    """``--gpus all`` / ``--gpus N`` as the engine's DeviceRequests."""
    if not gpus:
        return []
    text = str(gpus).strip().lower()
    if text == "all":
        count = -1
    else:
        try:
            count = int(text)
        except ValueError:
            raise ValueError(f"--gpus takes 'all' or a number of GPUs, not {gpus!r}") from None
        if count < 1:
            raise ValueError("--gpus needs at least 1 GPU")
    return [{"Driver": "", "Count": count, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}]


def container_config(spec: WorkerSpec, opts: DockerOptions, submission_dir: str, code_dir: str,
                     labels: dict[str, str]) -> dict[str, Any]:
    """Keyword arguments for ``client.containers.create`` (pure: unit-tested without Docker)."""
    from docker.types import DeviceRequest, Ulimit

    mem_mb = spec.memory_mb + RUNTIME_ALLOWANCE_MB
    cpus = opts.cpus if opts.cpus is not None else float(max(1, spec.threads))
    file_bytes = spec.file_size_mb * 1024 * 1024
    # a hard wall-clock life: a container whose grader was killed (SIGKILL, power loss) still ends
    lifetime = max(600, spec.cpu_seconds + 300)
    env = {"OMP_NUM_THREADS": str(spec.threads), "MKL_NUM_THREADS": str(spec.threads), "HOME": "/tmp",
           "PYTHONPATH": WORKER_CODE_MOUNT, "PYTHONDONTWRITEBYTECODE": "1", "MALLOC_ARENA_MAX": "2"}
    if opts.preload:
        env["DLGRADE_PRELOAD"] = ",".join(opts.preload)
    return {
        "image": opts.image_name,
        "entrypoint": ["timeout", "-s", "KILL", f"{lifetime}s", "python", "-m", "dlgrade.worker.main"],
        "stdin_open": True, "tty": False, "detach": True,
        # the container's init and `timeout` run as root and the worker drops to WORKER_USER before any student code
        # runs, so that the submission cannot signal, ptrace or read the memory of the processes that watch it
        "user": "0:0",
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={opts.tmp_mb}m,mode=1777", "/dev/shm": "rw,nosuid,nodev,size=64m"},
        "working_dir": "/tmp",
        "volumes": {submission_dir: {"bind": SUBMISSION_MOUNT, "mode": "ro"},
                    code_dir: {"bind": WORKER_CODE_MOUNT, "mode": "ro"}},
        "mem_limit": f"{mem_mb}m", "memswap_limit": f"{mem_mb}m",
        "pids_limit": opts.pids if opts.pids is not None else spec.processes,
        "nano_cpus": int(cpus * 1e9),
        "cap_drop": ["ALL"], "cap_add": CONTAINER_CAPS,
        "security_opt": ["no-new-privileges"],
        "ulimits": [Ulimit(name="fsize", soft=file_bytes, hard=file_bytes), Ulimit(name="core", soft=0, hard=0),
                    Ulimit(name="nofile", soft=256, hard=256)],
        "environment": env,
        "labels": labels,
        "init": True,
        "device_requests": [DeviceRequest(**{k.lower(): v for k, v in r.items() if k != "DeviceIDs"})
                            for r in device_requests(opts.gpus)],
        "log_config": {"type": "none", "config": {}},
    }


def worker_code_dir(into: Path) -> str:
    """Copy exactly the code the worker needs (never the trusted side) for a read-only mount."""
    import dlgrade

    src = Path(dlgrade.__file__).parent
    pkg = into / "dlgrade"
    (pkg / "worker").mkdir(parents=True)
    for name in ("__init__.py", "protocol.py"):
        shutil.copy2(src / name, pkg / name)
    for file in (src / "worker").glob("*.py"):
        shutil.copy2(file, pkg / "worker" / file.name)
    for path in [into, *into.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return str(into)


class _AttachStream:
    """The container's attach socket as the socket a :class:`Channel` expects.

    ``sendall`` writes to the worker's stdin. ``recv`` returns the worker's stdout, taking
    Docker's multiplexed frames (an 8-byte header: stream, 0, 0, 0, big-endian length) apart in
    the caller's own thread, so a request costs no hop through helper threads; stderr frames
    (the student's prints) go to ``output``, bounded.
    """

    _HEADER = struct.Struct(">BxxxI")

    def __init__(self, raw: socket.socket, output: bytearray) -> None:
        self.raw = raw
        self.output = output
        self._header = bytearray()
        self._stream = 1
        self._left = 0

    def settimeout(self, timeout: float | None) -> None:
        self.raw.settimeout(timeout)

    def sendall(self, data: bytes) -> None:
        self.raw.sendall(data)

    def recv(self, n: int) -> bytes:
        while True:
            if self._left == 0:
                chunk = self.raw.recv(self._HEADER.size - len(self._header))
                if not chunk:
                    return b""
                self._header += chunk
                if len(self._header) == self._HEADER.size:
                    self._stream, self._left = self._HEADER.unpack(self._header)
                    self._header.clear()
                continue
            chunk = self.raw.recv(min(self._left, n if self._stream == 1 else 1 << 16))
            if not chunk:
                return b""
            self._left -= len(chunk)
            if self._stream == 1:
                return chunk
            if len(self.output) < MAX_OUTPUT:
                self.output += chunk[:MAX_OUTPUT - len(self.output)]

    def close(self) -> None:
        try:
            self.raw.close()
        except OSError:
            pass


class _Container:
    """A started container whose worker waits for its configuration."""

    def __init__(self, backend: DockerBackend, spec_template: WorkerSpec) -> None:
        self.backend = backend
        self.slot = Path(tempfile.mkdtemp(prefix="slot-", dir=backend.tmp))
        self._hand_over(self.slot)
        self.output = bytearray()
        self.created = time.monotonic()
        cfg = container_config(spec_template, backend.opts, str(self.slot), backend.code_dir, backend.labels)
        client = backend.client
        self.container = client.containers.create(**cfg)
        try:
            attach = client.api.attach_socket(self.container.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            self._attach = attach  # keeps the HTTP response (and so the socket) alive
            self.stream = _AttachStream(getattr(attach, "_sock", attach), self.output)
            self.channel = Channel(self.stream)  # type: ignore[arg-type]
            self.container.start()
        except Exception:
            self.remove()
            raise

    def fill(self, files: dict[str, bytes]) -> None:
        for rel, data in sorted(files.items()):
            path = self.slot / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        for path in [self.slot, *self.slot.rglob("*")]:
            self._hand_over(path)

    def _hand_over(self, path: Path) -> None:
        """Make a file of the submission readable by the container's user only, where the engine runs as root and
        maps no user namespace (else by everyone, read-only): other users of the host never read a student's files."""
        uid = self.backend.slot_owner
        if uid is None:
            path.chmod(0o755 if path.is_dir() else 0o644)
            return
        os.chown(path, uid, uid)
        path.chmod(0o500 if path.is_dir() else 0o400)

    def state(self) -> dict[str, Any]:
        try:
            self.container.reload()
            return dict(self.container.attrs.get("State", {}))
        except Exception:
            return {}

    def describe_end(self) -> str:
        state: dict[str, Any] = {}
        for _ in range(50):  # the attach stream ends a moment before the engine records the exit
            state = self.state()
            if not state.get("Running", False):
                break
            time.sleep(0.02)
        if state.get("OOMKilled"):
            return f"the worker ran out of memory (container limit {self.backend.last_mem_mb} MB) and was killed"
        code = state.get("ExitCode")
        if code is None:
            return "the worker's container stopped answering"
        if code == 137:
            return "the worker was killed by SIGKILL (killed: often the memory limit)"
        if code > 128:
            return f"the worker was killed by signal {code - 128}"
        return f"the worker process exited with code {code} (does your code call sys.exit or os._exit?)"

    def running(self) -> bool:
        return bool(self.state().get("Running", False))

    def others(self, worker_pid: Any) -> list[tuple[int, str]]:
        """(host pid, name) of the container's processes besides its init, ``timeout`` and the worker (pid
        ``worker_pid`` inside the container): what the submission left running. Read with the engine's ``top`` and
        this host's /proc; empty where the engine's processes are not visible here (a remote engine)."""
        from dlgrade.sandbox.process import _comm, _ppid

        try:
            top = self.container.top()
            column = top["Titles"].index("PID")
            pids = [int(row[column]) for row in top.get("Processes") or []]
        except Exception:
            return []
        inside = {pid: _ns_pid(pid) for pid in pids}
        init: set[int | None] = {pid for pid, ns in inside.items() if ns == 1}
        worker = next((pid for pid, ns in inside.items() if isinstance(worker_pid, int) and ns == worker_pid), None)
        if worker is not None:
            keep = {worker, _ppid(worker)} | init
        else:  # the worker is gone (it crashed, or was killed): the init and `timeout` stay, the rest is the submission's
            keep = init | {pid for pid in pids if _ppid(pid) in init and _comm(pid) == "timeout"}
        return [(pid, _comm(pid)) for pid in pids if pid not in keep and inside[pid] is not None]

    def remove(self) -> None:
        stream = getattr(self, "stream", None)
        if stream is not None:
            stream.close()
        try:
            self.container.remove(force=True)
        except Exception as exc:  # already gone is fine; anything else is logged for the batch
            if "No such container" not in str(exc) and "404" not in str(exc):
                self.backend.errors.append(f"could not remove container {self.container.short_id}: {exc}")
        shutil.rmtree(self.slot, ignore_errors=True)


class DockerWorker:
    def __init__(self, box: _Container) -> None:
        self.box = box
        self.info: dict[str, Any] = {}
        self.alive = True
        self._cpu: Callable[[], float | None] | None = None   # reads the container's cgroup CPU time
        self._cpu_looked_up = False

    def cpu_seconds(self) -> float | None:
        """CPU seconds the container has used (its cgroup); None where the host does not expose it."""
        if not self._cpu_looked_up:
            self._cpu_looked_up = True
            self._cpu = cgroup_cpu_reader(self.box.container.id)
        return self._cpu() if self._cpu is not None and self.alive else None

    def request(self, message: dict[str, Any], timeout: float | CallClock) -> dict[str, Any]:
        """Send one request and wait for its answer; ``timeout`` is wall-clock seconds or a CallClock (CPU time)."""
        if not self.alive:
            raise WorkerCrashed("the worker is no longer running")
        clock = timeout if isinstance(timeout, CallClock) else CallClock(timeout, None)
        try:
            self.box.channel.send(message)
            return self.box.channel.recv(clock.wall_end, clock.check if clock.cpu_start is not None else None)
        except RecvTimeout:
            self.kill()
            raise LimitExceeded(clock.message()) from None
        except PeerClosed:
            # what else runs in the container is the submission's: seen now, before the container ends with its worker
            self._note_others()
            self.alive = False
            raise WorkerCrashed(self.box.describe_end()) from None
        except ProtocolError as exc:
            self.kill()
            raise BadAnswer(f"the worker sent a malformed answer ({exc})") from None

    def output(self, limit: int = 20_000) -> str:
        data = bytes(self.box.output[:limit + 1])
        text = data[:limit].decode("utf-8", "replace")
        return text + ("\n[... output truncated ...]" if len(data) > limit else "")

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            self._note_others()
            try:
                self.box.container.kill()
            except Exception:
                pass

    def _note_others(self) -> None:
        if self.info.get("leftovers"):
            return   # noted once, when the worker ended
        found = self.box.others(self.info.get("pid"))
        if found:
            from dlgrade.sandbox.process import describe_leftovers

            self.info["leftovers"] = [describe_leftovers(found, "when its worker ended (with its container)")]

    def close(self) -> None:
        if self.alive:  # the worker still answers: whatever else runs in its container is the submission's doing
            self._note_others()
        self.alive = False
        self.box.backend._remove_later(self.box)


class DockerBackend:
    name = "docker"

    def __init__(self, opts: DockerOptions | None = None, client: Any = None) -> None:
        self.opts = opts or DockerOptions()
        self.client = client or client_from_env()
        self.batch = os.environ.get(BATCH_ENV) or uuid.uuid4().hex[:12]
        self.labels = {"dlgrade.worker": "1", "dlgrade.batch": self.batch, OWNER_LABEL: f"{socket.gethostname()}:{os.getpid()}"}
        if os.environ.get(TAG_ENV):
            self.labels["dlgrade.tag"] = os.environ[TAG_ENV]
        self.slot_owner = _slot_owner(self.client)
        self.tmp = Path(tempfile.mkdtemp(prefix="dlgrade-docker-"))
        self.tmp.chmod(0o755)
        weakref.finalize(self, shutil.rmtree, self.tmp, True)   # also at exit, for a backend never shut down
        self.code_dir = worker_code_dir(self.tmp / "code")
        self.errors: list[str] = []
        self.last_mem_mb = 0
        self._live: set[_Container] = set()
        self._warm: _Container | None = None
        self._warm_spec: WorkerSpec | None = None
        self._warming: threading.Thread | None = None
        self._warm_error: Exception | None = None
        self._removals: list[threading.Thread] = []
        self._check_image()
        remove_orphans(self.client)

    def _check_image(self) -> None:
        try:
            self.client.images.get(self.opts.image_name)
        except Exception as exc:
            if type(exc).__name__ == "ImageNotFound":
                raise DockerUnavailable(
                    f"the sandbox image {self.opts.image_name} is not built: run `make sandbox-image` "
                    "(offline: debootstrap + local wheels), or pass --image NAME; or use --sandbox process") from None
            raise _explain_engine_error(exc) from None

    # ------------------------------------------------------------------ warm pool

    def _new_container(self, spec: WorkerSpec) -> _Container:
        box = _Container(self, spec)
        self._live.add(box)
        return box

    def _warm_up(self, spec: WorkerSpec) -> None:
        try:
            self._warm = self._new_container(spec)
        except Exception as exc:  # reported when the container would have been used
            self._warm_error = exc

    def _take(self, spec: WorkerSpec) -> _Container:
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        box, self._warm = self._warm, None
        if box is not None and (self._warm_spec != _limits_of(spec) or not box.running()):
            self._discard(box)
            box = None
        self._warm_error = None
        return box if box is not None else self._new_container(spec)

    def _discard(self, box: _Container) -> None:
        box.remove()
        self._live.discard(box)

    def _remove_later(self, box: _Container) -> None:
        """Remove a used container in the background (about 0.3 s of engine work); shutdown waits for it."""
        thread = threading.Thread(target=self._discard, args=(box,), daemon=True)
        thread.start()
        self._removals = [t for t in self._removals if t.is_alive()] + [thread]

    def _refill(self, spec: WorkerSpec) -> None:
        if not self.opts.warm:
            return
        self._warm_spec = _limits_of(spec)
        self._warming = threading.Thread(target=self._warm_up, args=(spec,), daemon=True)
        self._warming.start()

    # ------------------------------------------------------------------ Backend

    def start(self, spec: WorkerSpec, timeout: float = 60.0) -> DockerWorker:
        self.last_mem_mb = spec.memory_mb + RUNTIME_ALLOWANCE_MB
        try:
            box = self._take(spec)
        except DockerUnavailable:
            raise
        except Exception as exc:
            raise WorkerCrashed(f"could not start the sandbox container: {exc}") from None
        box.fill(spec.files)
        worker = DockerWorker(box)
        uid, gid = (int(v) for v in WORKER_USER.split(":"))
        cfg = {**spec.config(), "submission_dir": SUBMISSION_MOUNT, "isolate": False, "hide": [],
               "worker_uid": uid, "worker_gid": gid}
        try:
            reply = worker.request({"op": "hello", "config": cfg, "files": {}}, timeout)
        except Exception:
            worker.close()
            raise
        finally:
            self._refill(spec)
        if not reply.get("ok"):
            worker.close()
            raise WorkerCrashed(f"the worker failed to start: {reply.get('error')}")
        worker.info = reply.get("value", {})
        worker.info["container"] = box.container.short_id
        return worker

    def shutdown(self) -> None:
        if self._warming is not None:
            self._warming.join()
            self._warming = None
        for thread in self._removals:
            thread.join()
        self._removals = []
        for box in list(self._live):
            self._discard(box)
        self._warm = None
        shutil.rmtree(self.tmp, ignore_errors=True)


def _ns_pid(pid: int) -> int | None:
    """A host process's pid inside its own (innermost) PID namespace; None when it is gone or not visible."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _slot_owner(client: Any) -> int | None:
    """The host uid of the container's user (WORKER_USER) when this process may hand files to it: as root, with no
    user-namespace remapping in the engine. None: submission files stay world-readable (read-only) instead."""
    if os.geteuid() != 0:
        return None
    try:
        options = client.info().get("SecurityOptions") or []
    except Exception:
        return None
    if any("userns" in str(o) or "rootless" in str(o) for o in options):
        return None
    return int(WORKER_USER.split(":")[0])


def _limits_of(spec: WorkerSpec) -> WorkerSpec:
    """What a warm container was created for (everything but the files)."""
    return WorkerSpec(files={}, modules=(), memory_mb=spec.memory_mb, processes=spec.processes,
                      file_size_mb=spec.file_size_mb, threads=spec.threads, device=spec.device)


def remove_batch_containers(batch: str, client: Any = None) -> int:
    """Remove every container of a batch (after Ctrl-C or a crashed grading process)."""
    try:
        client = client or client_from_env()
        boxes = client.containers.list(all=True, filters={"label": [f"dlgrade.batch={batch}"]})
    except Exception:
        return 0
    for box in boxes:
        try:
            box.remove(force=True)
        except Exception:
            pass
    return len(boxes)


def remove_orphans(client: Any) -> int:
    """Remove containers left by grading processes of this host that no longer exist (killed hard)."""
    host = socket.gethostname()
    removed = 0
    try:
        boxes = client.containers.list(all=True, filters={"label": ["dlgrade.worker", OWNER_LABEL]})
    except Exception:
        return 0
    for box in boxes:
        owner_host, _, pid = str(box.labels.get(OWNER_LABEL, "")).rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            box.remove(force=True)
            removed += 1
        except Exception:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
