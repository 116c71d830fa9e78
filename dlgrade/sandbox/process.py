"""The `process` backend: workers forked from a pre-imported zygote, confined before use.

The zygote is started once per backend (per batch process) and never sees grader state.
Each worker gets its own stream socket for the protocol and its own output file for
whatever the student's code prints.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from typing import IO, Any

import torch

from dlgrade.errors import BadAnswer, LimitExceeded, SandboxUnavailable, WorkerCrashed
from dlgrade.protocol import Channel, PeerClosed, ProtocolError, RecvTimeout
from dlgrade.sandbox import WorkerSpec
from dlgrade.sandbox.budget import CallClock, proc_cpu_seconds

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


def _comm(pid: int) -> str:
    """A process's name as a plain token (student code sets it: only letters, digits, '.', '_' and '-' are kept)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            name = f.read(64).strip()
    except OSError:
        return "?"
    return "".join(c for c in name if c.isascii() and (c.isalnum() or c in "._-"))[:15] or "?"


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds of ``root`` and all its live descendants, each with the children it reaped (so a process that
    ends inside the tree still counts); read from /proc/PID/task/TID/children. None when ``root`` is gone."""
    total = proc_cpu_seconds(root)
    if total is None:
        return None
    todo, seen = [root], {root}
    while todo:
        pid = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                continue
            for child in children:
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
                    total += proc_cpu_seconds(child) or 0.0
    return total


def describe_leftovers(found: list[tuple[int, str]], when: str) -> str:
    """The line the results keep about processes a submission left running (pids and names, at most ten)."""
    names = ", ".join(f"{pid} {name}" for pid, name in found[:10]) + (", ..." if len(found) > 10 else "")
    return f"{len(found)} process(es) started by the submission were still running {when} and were killed ({names})"


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
        self.left_running: list[tuple[int, str]] = []   # processes of the submission seen alive as the worker was ended

    def cpu_seconds(self) -> float | None:
        """CPU seconds the worker and every live process it started have used: the whole tree under the pid the
        grader started (its PID namespace's init, so orphans count too), as a container's cgroup counts them. A
        fork bomb's children are the submission's time as much as the worker's own loop."""
        if not self.alive:
            return None
        pid = self.info.get("pid")
        return tree_cpu_seconds(self.pid) if self.pidns is not None else \
            proc_cpu_seconds(pid if isinstance(pid, int) and pid > 0 else self.pid)

    def request(self, message: dict[str, Any], timeout: float | CallClock) -> dict[str, Any]:
        """Send one request and wait for its answer; ``timeout`` is wall-clock seconds or a CallClock (CPU time)."""
        if not self.alive:
            raise WorkerCrashed("the worker is no longer running")
        clock = timeout if isinstance(timeout, CallClock) else CallClock(timeout, None)
        try:
            self.channel.send(message)
            return self.channel.recv(clock.wall_end, clock.check if clock.cpu_start is not None else None)
        except RecvTimeout:
            self.kill()
            raise LimitExceeded(clock.message()) from None
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

    def running_besides_worker(self) -> list[tuple[int, str]]:
        """(pid, name) of the live processes the submission started that its worker would leave behind: the rest of
        the worker's PID namespace (besides its init), or, without one, the rest of its dedicated uid."""
        worker = self.info.get("pid")
        if not isinstance(worker, int) or worker <= 0:
            return []
        keep = {self.pid, worker, _ppid(worker)}
        pidns = None if self.pidns == _ns("self", "pid") else self.pidns   # without a PID namespace of its own: by uid
        uid = self._own_uid()
        if pidns is None and uid is None:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in keep or not _alive(entry):
                continue
            if (pidns is not None and _ns(entry, "pid") == pidns) or (uid is not None and _uid(entry) == uid):
                found.append((int(entry), _comm(int(entry))))
        return sorted(found)

    def _own_uid(self) -> int | None:
        """The worker's uid when it is the worker's alone (root gave it one), never the grader's."""
        if os.geteuid() != 0:
            return None
        if self.backend.identity:
            return self.backend.identity[0]
        return self.uid if (self.uid or 0) >= UID_BASE else None

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            self.left_running += [p for p in self.running_besides_worker() if p not in self.left_running]
            for send in (os.killpg, os.kill):
                try:
                    send(self.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self.backend.wait(self.pid)
        self.channel.close()

    def close(self) -> None:
        """End the worker and everything it started. Processes the submission left running (seen just before the
        worker was ended, or found afterwards by the sweep) are killed and recorded in ``info["leftovers"]``; the
        backend's ``leftovers`` keeps what the sweep alone had to kill (the PID namespace should have)."""
        self.kill()
        left = sweep(self.pidns, self.netns, self._own_uid())
        if left:
            self.backend.leftovers.append(describe_leftovers([(p, "?") for p in left], "after the worker's namespace ended"))
        known = {pid for pid, _ in self.left_running}
        found = self.left_running + [(p, "?") for p in left if p not in known]
        if found:
            self.info["leftovers"] = [describe_leftovers(found, "when its worker ended")]
        self.out.close()
        self.backend._live.pop(self.pid, None)
        if not self.backend._live:   # no other worker of this backend is running: every work dir left is an ended one's
            self.backend.clear_work_dirs()


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
                 allow_unisolated: bool | None = None, preload: tuple[str, ...] = ()) -> None:
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
        self.preload = tuple(preload)   # modules the zygote imports once for all workers (see zygote.preload)
        self.zygote_info: dict[str, Any] = {}
        self.leftovers: list[str] = []   # processes found running after their worker ended (and killed)
        self._zygote: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._pending: socket.socket | None = None   # a started zygote's socket, before its "ready" was read
        self._live: dict[int, ProcessWorker] = {}
        # where workers without a file-system view of their own (no namespaces) make their work dirs: a folder of
        # this backend's (root-owned, not listable by the workers' uids), emptied after each worker and removed at
        # shutdown, so that no student's files stay in the machine's /tmp
        self.work_root = tempfile.mkdtemp(prefix="dlgrade-workers-")
        os.chmod(self.work_root, 0o711)
        weakref.finalize(self, shutil.rmtree, self.work_root, True)   # also at exit, for a backend never shut down

    def warm(self) -> None:
        """Start the zygote now, without waiting for it: its ``import torch`` (seconds) overlaps with what the grader
        does before its first worker (reading the submission, collecting the hidden suite)."""
        if self._zygote is None or self._zygote.poll() is not None:
            self._spawn_zygote()

    def _spawn_zygote(self) -> None:
        for sock in (self._control, self._pending):   # a zygote that died: its sockets go with it
            if sock is not None:
                sock.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DLGRADE_")}
        env.update({"MALLOC_ARENA_MAX": "2", "PYTHONDONTWRITEBYTECODE": "1",
                    "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)})
        args = [sys.executable, "-m", "dlgrade.worker.zygote", str(theirs.fileno())] + ([] if self.namespaces else ["--no-namespaces"])
        args += [f"--preload={','.join(self.preload)}"] if self.preload else []
        # a session of its own: Ctrl-C in the terminal is the grader's to handle (it stops the zygote), and never reaches
        # the zygote while it is still importing torch; it dies with the grader all the same (PR_SET_PDEATHSIG)
        self._zygote = subprocess.Popen(args, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env, cwd="/",
                                        start_new_session=True)
        theirs.close()
        self._control, self._pending = None, ours

    def _control_socket(self) -> socket.socket:
        if self._zygote is not None and self._zygote.poll() is None and self._control is not None:
            return self._control
        if self._pending is None or self._zygote is None or self._zygote.poll() is not None:
            self._spawn_zygote()
        assert self._pending is not None
        ours, self._pending = self._pending, None
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
        config = {**spec.config(), "namespaces": self.namespaces, "work_root": self.work_root}
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

    def clear_work_dirs(self) -> None:
        """Remove the work dirs of ended workers (shutil.rmtree does not follow the links a submission made)."""
        try:
            entries = os.listdir(self.work_root)
        except OSError:
            return
        for name in entries:
            shutil.rmtree(os.path.join(self.work_root, name), ignore_errors=True)

    def shutdown(self) -> None:
        for worker in list(self._live.values()):
            worker.close()
        shutil.rmtree(self.work_root, ignore_errors=True)
        for sock in (self._control, self._pending):
            if sock is not None:
                sock.close()
        self._control = self._pending = None
        if self._zygote is not None:
            self._zygote.kill()
            self._zygote.wait()
            self._zygote = None
