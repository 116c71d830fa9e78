"""The `process` backend: workers forked from a pre-imported zygote, confined before use.

The zygote is started once per backend (per batch process) and never sees grader state.
Each worker gets its own stream socket for the protocol and its own output file for
whatever the student's code prints.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import IO, Any

import torch

from dlgrade.errors import BadAnswer, LimitExceeded, SandboxUnavailable, WorkerCrashed
from dlgrade.protocol import Channel, PeerClosed, ProtocolError, RecvTimeout
from dlgrade.sandbox import WorkerSpec

UID_BASE = 100_000  # as in dlgrade.worker.confine: a worker confined by root runs as UID_BASE + its pid


def describe_status(status: int | None) -> str:
    if status is None:
        return "the worker stopped answering"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        hint = {"SIGKILL": " (killed: often the memory limit)", "SIGXCPU": " (CPU time limit)",
                "SIGXFSZ": " (file size limit)", "SIGSEGV": " (segmentation fault)"}.get(name, "")
        return f"the worker was killed by {name}{hint}"
    code = os.WEXITSTATUS(status)
    return f"the worker process exited with code {code} (does your code call sys.exit or os._exit?)"


def _ns(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


def _uid(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _alive(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return False


def sweep(pidns: str | None = None, netns: str | None = None, uid: int | None = None) -> list[int]:
    """SIGKILL every live process in a worker's PID or network namespace, or of its dedicated uid; returns their pids.

    Student code cannot leave its PID namespace (its init's exit kills everything in it), so this
    normally finds nothing; it is the check that this held. A worker without namespaces
    (``DLGRADE_NAMESPACES=0``, or a kernel that refuses them) is cleaned up by its uid, which is
    never root and never the grader's own. The grader's own namespaces are never swept.
    """
    pidns = None if pidns == _ns("self", "pid") else pidns
    netns = None if netns == _ns("self", "net") else netns
    uid = None if uid is not None and (uid <= 0 or uid == os.getuid()) else uid
    if pidns is None and netns is None and uid is None:
        return []
    def members() -> list[int]:
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and _alive(p) and (
            (pidns is not None and _ns(p, "pid") == pidns) or (netns is not None and _ns(p, "net") == netns)
            or (uid is not None and _uid(p) == uid))]

    found = members()
    if found and uid is None:  # a namespace empties by itself once its init is gone (rootless: a moment later)
        end = time.monotonic() + 2.0
        while found and time.monotonic() < end:
            time.sleep(0.01)
            found = members()
    killed: list[int] = []
    for _ in range(50):
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        killed += [p for p in found if p not in killed]
        time.sleep(0.002)
        found = members()
    return killed


def kill_uid(uid: int) -> None:
    """SIGKILL every process of a dedicated worker user (never root nor the grader's own uid)."""
    sweep(uid=uid)


def worker_identity(user: str | None) -> tuple[int, int] | None:
    """(uid, gid) of the named worker user; None for the default (a uid of its own per worker)."""
    if not user:
        return None
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"DLGRADE_WORKER_USER={user!r}: no such user (the bundle's setup.sh creates it)") from None
    if pw.pw_uid == 0:
        raise ValueError(f"DLGRADE_WORKER_USER={user!r} is root; the worker must run unprivileged")
    return pw.pw_uid, pw.pw_gid


class ProcessWorker:
    def __init__(self, backend: ProcessBackend, pid: int, channel: Channel, out: IO[bytes]) -> None:
        self.backend = backend
        self.pid = pid
        self.channel = channel
        self.out = out
        self.info: dict[str, Any] = {}
        self.alive = True
        # the worker's namespaces and uid, known once it has confined itself: what close() sweeps
        self.pidns: str | None = None
        self.netns: str | None = None
        self.uid: int | None = None

    def request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        if not self.alive:
            raise WorkerCrashed("the worker is no longer running")
        try:
            self.channel.send(message)
            return self.channel.recv(time.monotonic() + timeout)
        except RecvTimeout:
            self.kill()
            raise LimitExceeded(f"no answer within the time limit of {timeout:g} s (an infinite loop, or far too slow)") from None
        except PeerClosed:
            status = self.backend.wait(self.pid)
            self.alive = False
            self.channel.close()
            raise WorkerCrashed(describe_status(status)) from None
        except ProtocolError as exc:
            self.kill()
            raise BadAnswer(f"the worker sent a malformed answer ({exc})") from None

    def output(self, limit: int = 20_000) -> str:
        try:
            data = os.pread(self.out.fileno(), limit + 1, 0)
        except OSError:
            return ""
        text = data[:limit].decode("utf-8", "replace")
        return text + ("\n[... output truncated ...]" if len(data) > limit else "")

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            for send in (os.killpg, os.kill):
                try:
                    send(self.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.backend.wait(self.pid)
        self.channel.close()

    def close(self) -> None:
        """End the worker and everything it started; a process found still running afterwards is killed and
        recorded in ``info["warnings"]`` (and the backend's ``leftovers``)."""
        self.kill()
        uid = None  # a uid is swept only when it is the worker's alone (root gave it one); never the grader's
        if os.geteuid() == 0:
            uid = self.backend.identity[0] if self.backend.identity else (self.uid if (self.uid or 0) >= UID_BASE else None)
        left = sweep(self.pidns, self.netns, uid)
        if left:
            note = (f"{len(left)} process(es) started by the submission were still running after its worker ended "
                    f"and were killed (pids {', '.join(map(str, left[:10]))})")
            self.info.setdefault("warnings", []).append(note)
            self.backend.leftovers.append(note)
        self.out.close()
        self.backend._live.pop(self.pid, None)


UNISOLATED_ENV = "DLGRADE_ALLOW_UNISOLATED"


def isolation_problem(namespaces: bool) -> str | None:
    """Why workers started by this (non-root) process would run unisolated; None when they would not.

    Root always isolates (a uid of its own at least). Without root, isolation needs an unprivileged
    user namespace with mount, network and PID namespaces inside; a child tries to make them.
    """
    if os.geteuid() == 0:
        return None
    if not namespaces:
        return "namespaces are turned off (DLGRADE_NAMESPACES=0) and this is not root"
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pid = os.fork()
    if pid == 0:  # CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID
        os._exit(0 if libc.unshare(0x10000000 | 0x00020000 | 0x40000000 | 0x20000000) == 0 else min(255, ctypes.get_errno()))
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0
    return f"this machine refuses unprivileged user namespaces ({os.strerror(code) if code else 'unknown reason'})"


class ProcessBackend:
    name = "process"

    def __init__(self, worker_user: str | None = None, namespaces: bool | None = None,
                 allow_unisolated: bool | None = None) -> None:
        # Gradescope's bundle runs every worker as one dedicated user (setup.sh creates it) and, where
        # the container refuses unshare, turns namespaces off up front; both default from the environment
        self.identity = worker_identity(worker_user or os.environ.get("DLGRADE_WORKER_USER"))
        self.namespaces = namespaces if namespaces is not None else os.environ.get("DLGRADE_NAMESPACES", "1") != "0"
        allow = allow_unisolated if allow_unisolated is not None else os.environ.get(UNISOLATED_ENV, "0") == "1"
        problem = isolation_problem(self.namespaces)
        if problem is not None and not allow:
            raise SandboxUnavailable(
                f"the process sandbox cannot isolate students' code here: {problem}.\n"
                "  Left would be only rlimits and a private temp dir: the worker would run as your own user and could read "
                "everything you can (the hidden tests, the reference, other students' files) and reach the network.\n"
                "  fix: run as root, or where unprivileged user namespaces are allowed (sysctl user.max_user_namespaces > 0, "
                "kernel.unprivileged_userns_clone=1, or AppArmor's kernel.apparmor_restrict_unprivileged_userns=0), "
                "or use --sandbox docker;\n"
                f"  or, knowingly, grade unisolated: --allow-unisolated (or {UNISOLATED_ENV}=1)")
        self.isolation = "rootless (user namespaces)" if os.geteuid() != 0 and problem is None else \
            ("root" if os.geteuid() == 0 else "none (allowed by --allow-unisolated)")
        self.zygote_info: dict[str, Any] = {}
        self.leftovers: list[str] = []   # processes found running after their worker ended (and killed)
        self._zygote: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._live: dict[int, ProcessWorker] = {}

    def _control_socket(self) -> socket.socket:
        if self._zygote is not None and self._zygote.poll() is None and self._control is not None:
            return self._control
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLGRADE_")}
        env.update({"MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        args = [sys.executable, "-m", "dlgrade.worker.zygote", str(theirs.fileno())] + ([] if self.namespaces else ["--no-namespaces"])
        # a session of its own: Ctrl-C in the terminal is the grader's to handle (it stops the zygote), and never reaches
        # the zygote while it is still importing torch; it dies with the grader all the same (PR_SET_PDEATHSIG)
        self._zygote = subprocess.Popen(args, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env, cwd="/",
                                        start_new_session=True)
        theirs.close()
        ready = ours.recv(65536)  # what the zygote could set up for its workers
        if not ready:
            raise WorkerCrashed("the sandbox's zygote process died while starting")
        self.zygote_info = json.loads(ready)
        self._control = ours
        return ours

    def _ask(self, request: dict[str, Any], fds: list[int] | None = None) -> dict[str, Any]:
        control = self._control_socket()
        data = json.dumps(request).encode()
        if fds:
            socket.send_fds(control, [data], fds)
        else:
            control.send(data)
        reply = control.recv(65536)
        if not reply:
            raise WorkerCrashed("the sandbox's zygote process died")
        result: dict[str, Any] = json.loads(reply)
        return result

    def wait(self, pid: int) -> int | None:
        try:
            return self._ask({"op": "wait", "pid": pid, "timeout": 5.0}).get("status")
        except (OSError, WorkerCrashed):
            return None

    def start(self, spec: WorkerSpec, timeout: float = 60.0) -> ProcessWorker:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out = tempfile.TemporaryFile()
        try:
            pid = int(self._ask({"op": "spawn"}, [theirs.fileno(), out.fileno()])["pid"])
        finally:
            theirs.close()
        worker = ProcessWorker(self, pid, Channel(ours), out)
        self._live[pid] = worker
        files = {k: torch.frombuffer(bytearray(v), dtype=torch.uint8) if v else torch.empty(0, dtype=torch.uint8)
                 for k, v in spec.files.items()}
        config = {**spec.config(), "namespaces": self.namespaces}
        if self.identity is not None:
            config.update(worker_uid=self.identity[0], worker_gid=self.identity[1])
        reply = worker.request({"op": "hello", "config": config, "files": files}, timeout)
        if not reply.get("ok"):
            worker.close()
            raise WorkerCrashed(f"the worker failed to start: {reply.get('error')}")
        worker.info = reply.get("value", {})
        worker_pid = worker.info.get("pid")
        if isinstance(worker_pid, int) and worker_pid > 0:
            worker.pidns, worker.netns = _ns(worker_pid, "pid"), _ns(worker_pid, "net")
        if isinstance(worker.info.get("uid"), int):
            worker.uid = worker.info["uid"]
        worker.info["isolation"] = self.isolation
        return worker

    def shutdown(self) -> None:
        for worker in list(self._live.values()):
            worker.close()
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._zygote is not None:
            self._zygote.kill()
            self._zygote.wait()
            self._zygote = None
