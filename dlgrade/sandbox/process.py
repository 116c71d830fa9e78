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

from dlgrade.errors import BadAnswer, LimitExceeded, WorkerCrashed
from dlgrade.protocol import Channel, PeerClosed, ProtocolError, RecvTimeout
from dlgrade.sandbox import WorkerSpec


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


def _netns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def kill_namespace(netns: str | None) -> None:
    """SIGKILL every process left in a worker's private network namespace.

    Student code can leave the worker's process group (``setsid``, a double-forked daemon), but
    not the network namespace that confinement gave the worker alone. The grader's own
    namespace (a worker that could not be isolated) is never touched.
    """
    if netns is None or netns == _netns("self"):
        return
    for _ in range(50):
        pids = [p for p in os.listdir("/proc") if p.isdigit() and _netns(p) == netns]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.002)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of a dedicated worker user (never root): a worker without a network
    namespace (``DLGRADE_NAMESPACES=0``, or a kernel that refuses unshare) is cleaned up by uid."""
    if uid <= 0:
        return
    for _ in range(50):
        pids: list[int] = []
        for entry in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    pids.append(int(entry))
            except OSError:
                pass
        if not pids:
            return
        for victim in pids:
            try:
                os.kill(victim, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.002)


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
        self.netns: str | None = None  # known once the worker has confined itself

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
        self.kill()
        kill_namespace(self.netns)
        if self.backend.identity is not None and os.geteuid() == 0 and (self.netns is None or self.netns == _netns("self")):
            kill_uid(self.backend.identity[0])  # no namespace to sweep: the worker user's processes instead
        self.out.close()
        self.backend._live.pop(self.pid, None)


class ProcessBackend:
    name = "process"

    def __init__(self, worker_user: str | None = None, namespaces: bool | None = None) -> None:
        # Gradescope's bundle runs every worker as one dedicated user (setup.sh creates it) and, where
        # the container refuses unshare, turns namespaces off up front; both default from the environment
        self.identity = worker_identity(worker_user or os.environ.get("DLGRADE_WORKER_USER"))
        self.namespaces = namespaces if namespaces is not None else os.environ.get("DLGRADE_NAMESPACES", "1") != "0"
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
        self._zygote = subprocess.Popen(
            [sys.executable, "-m", "dlgrade.worker.zygote", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env, cwd="/")
        theirs.close()
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
        worker.netns = _netns(pid)
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
