"""The zygote: a clean process with torch imported that forks one worker per request.

It holds no grader state (it never imports the trusted side), so a fork of it gives the
student a fresh interpreter with `import torch` already paid. Control messages are small
JSON datagrams on a SOCK_SEQPACKET socket; the worker's channel and output file arrive as
file descriptors (SCM_RIGHTS).

Each worker gets a PID namespace of its own: the zygote's child is PID 1 there, a tiny init that
forks the worker, reaps what the worker orphans, and exits with the worker, which makes the kernel
kill every process left in the namespace. Not run as root, the zygote first moves into an
unprivileged user namespace of its own (where it may make the workers' namespaces) and sets
``user.max_user_namespaces`` to 0 there, so no worker can make another.

Started as ``python -m dlgrade.worker.zygote FD [--no-namespaces]``; its first datagram says what it could set up:
{"mode": "root" | "rootless" | "none", "pid_namespace": bool, "problems": [...]}.
Requests: {"op": "spawn"} + fds [channel, output] -> {"pid": n} (the init's pid, or the worker's without a PID namespace);
          {"op": "wait", "pid": n, "timeout": s} -> {"status": the worker's wait status, or null}.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

from dlgrade.worker import confine, syscalls
from dlgrade.worker.syscalls import CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUSER, prctl

PR_SET_PDEATHSIG = 1
_statuses: dict[int, int] = {}
_worker_status: dict[int, int] = {}   # init pid -> read end of the pipe on which it reports its worker's status
_pid_ns_fd: int | None = None         # the zygote's own PID namespace, to return to after each spawn


def _enter_user_namespace() -> str | None:
    """Rootless: become root of a user namespace of our own (uid and gid mapped to themselves). None: done."""
    uid, gid = os.getuid(), os.getgid()
    try:
        syscalls.unshare(CLONE_NEWUSER)
    except OSError as exc:
        return f"the kernel refuses unprivileged user namespaces ({exc.strerror or exc})"
    try:
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    except OSError as exc:
        return f"could not map the user into its user namespace ({exc})"
    try:  # nobody below this point (the workers) may make a user namespace again
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
    except OSError:
        pass  # seccomp refuses unshare(CLONE_NEWUSER) too
    return None


def _check_namespaces() -> str | None:
    """Can a child make the mount and network namespaces a worker needs? (A container may refuse them.)"""
    pid = os.fork()
    if pid == 0:
        try:
            syscalls.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)
            syscalls.mount(None, "/", None, 0x4000 | (1 << 18))  # MS_REC | MS_PRIVATE: nothing reaches the host
            syscalls.mount("tmpfs", "/tmp", "tmpfs", 0, "size=4k")
        except OSError as exc:
            os._exit(min(255, exc.errno or 1))
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0
    return f"the kernel refuses the worker's mount/network namespaces ({os.strerror(code) if code else status})"


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _statuses[pid] = status


def _status_of(pid: int, status: int) -> int:
    """The worker's own wait status when its init reported one (the init only exits with it)."""
    fd = _worker_status.pop(pid, None)
    if fd is None:
        return status
    try:
        data = os.read(fd, 4)
    except OSError:
        data = b""
    os.close(fd)
    return int.from_bytes(data, "little") if len(data) == 4 else status


def _wait(pid: int, timeout: float) -> int | None:
    end = time.monotonic() + timeout
    while True:
        _reap()
        if pid in _statuses:
            return _status_of(pid, _statuses.pop(pid))
        if time.monotonic() >= end:
            return None
        time.sleep(0.005)


def warm_up() -> None:
    """Run the common kernels once, single-threaded, so that every forked worker starts warm.

    First calls pay for lazy initialisation (dispatcher tables, autograd, optimiser code); done
    here, forks inherit it. One thread: no OpenMP pool exists to be broken by fork().
    """
    import torch

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, generator=gen, requires_grad=True)
    lstm, lin, emb = torch.nn.LSTM(8, 8, batch_first=True), torch.nn.Linear(8, 8), torch.nn.Embedding(5, 8, padding_idx=0)
    out, _ = lstm(x + emb(torch.tensor([[1, 2, 0]])))
    y = torch.softmax(lin(out) @ out.transpose(-2, -1) / 2.0, dim=-1) @ out
    loss = torch.nn.functional.cross_entropy(y.reshape(-1, 8), torch.zeros(6, dtype=torch.long))
    loss = loss + torch.log_softmax(y, -1).mean() + ((y - y.mean(-1, keepdim=True)) ** 2).mean().sqrt()
    opt = torch.optim.Adam([*lstm.parameters(), *lin.parameters(), *emb.parameters()])
    loss.backward()
    opt.step()


def _close_zygote_fds(control: socket.socket) -> None:
    """A child must not keep the zygote's control socket or another worker's status pipe."""
    control.close()
    for fd in list(_worker_status.values()) + ([_pid_ns_fd] if _pid_ns_fd is not None else []):
        try:
            os.close(fd)
        except OSError:
            pass


def _child(channel_fd: int, output_fd: int) -> None:
    """The worker itself."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    for fd in {devnull, output_fd} - {0, 1, 2}:  # only the channel stays open beyond 0, 1 and 2
        os.close(fd)
    code = 0
    try:
        from dlgrade.worker import main as worker_main

        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        worker_main.run(socket.socket(fileno=channel_fd))
    except BaseException:  # the worker's own failure: reported through the exit code
        code = 70
    finally:
        os._exit(code)


def _init(channel_fd: int, output_fd: int, report_fd: int) -> None:
    """PID 1 of the worker's namespace: fork the worker, reap orphans, exit with the worker (killing the rest)."""
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # with the zygote
        worker = os.fork()
        if worker == 0:
            os.close(report_fd)
            _child(channel_fd, output_fd)
        os.close(channel_fd)
        os.close(output_fd)
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == worker:
                os.write(report_fd, status.to_bytes(4, "little"))
                break
    finally:
        os._exit(0)


def _spawn(control: socket.socket, fds: list[int]) -> int:
    """Fork a worker; returns the pid the grader kills to end it (its init's, or a shim's when rootless)."""
    setup = confine.SETUP
    assert setup is not None
    if not setup.pid_namespace:
        pid = os.fork()
        if pid == 0:
            _close_zygote_fds(control)
            _child(fds[0], fds[1])
        return pid
    report_r, report_w = os.pipe()
    direct = setup.mode == "root"  # root may return to its own PID namespace after the fork (setns)
    if direct:
        try:
            syscalls.unshare(CLONE_NEWPID)  # for the next child only: it becomes PID 1 there
        except OSError as exc:
            os.close(report_r)
            os.close(report_w)
            setup.pid_namespace = False
            setup.problems.append(f"no PID namespace for the workers ({exc.strerror or exc})")
            return _spawn(control, fds)
    pid = os.fork()
    if pid == 0:
        _close_zygote_fds(control)
        os.close(report_r)
        if not direct:  # rootless: a shim outside the namespace makes it, and the init dies with the shim
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            syscalls.unshare(CLONE_NEWPID)
            init = os.fork()
            if init != 0:
                os.close(fds[0])
                os.close(fds[1])
                os.close(report_w)
                try:
                    os.waitpid(init, 0)
                finally:
                    os._exit(0)
        _init(fds[0], fds[1], report_w)
    if direct:
        assert _pid_ns_fd is not None
        syscalls.setns(_pid_ns_fd, CLONE_NEWPID)  # later children are the zygote's own again
    os.close(report_w)
    _worker_status[pid] = report_r
    return pid


def serve(control: socket.socket) -> None:
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(control, 65536, 4)
        except OSError:
            return
        if not data:
            return
        request = json.loads(data)
        if request.get("op") == "spawn":
            pid = _spawn(control, fds)
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"pid": pid}).encode())
        elif request.get("op") == "wait":
            status = _wait(int(request["pid"]), float(request.get("timeout", 5.0)))
            control.send(json.dumps({"status": status}).encode())
        else:
            control.send(json.dumps({"error": "unknown op"}).encode())
        _reap()


def prepare(namespaces: bool) -> confine.Setup:
    """Set up what every worker inherits; in a fresh, single-threaded process (before torch)."""
    global _pid_ns_fd
    setup = confine.Setup()
    confine.SETUP = setup
    if not namespaces:
        setup.problems.append("no PID namespace: namespaces are turned off (DLGRADE_NAMESPACES=0)")
        return setup
    root = os.geteuid() == 0
    problem = None if root else _enter_user_namespace()
    if problem is None:
        problem = _check_namespaces()
    if problem is not None:
        setup.problems.append(problem)
        return setup
    setup.mode = "root" if root else "rootless"
    _pid_ns_fd = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    setup.pid_namespace = True
    return setup


def preload(names: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """Import an assignment's ``[worker] preload`` modules once, here, so that no worker pays for them again.

    Returns the top-level modules this added to ``sys.modules`` (a worker drops those its submission has a file of,
    so that the student's own ``utils.py`` still wins, as in a fresh interpreter) and what failed to import (the
    student's own import then fails, and is reported, as it would have anyway). Their output is not shown: the
    zygote's stdout is the grader's console.
    """
    import contextlib
    import importlib
    import io
    import warnings

    before = {m.split(".")[0] for m in sys.modules}
    failed = []
    for name in names:
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")
                importlib.import_module(name)
        except BaseException as exc:  # SystemExit included: a module's import is not ours to trust
            failed.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
    return tuple(sorted({m.split(".")[0] for m in sys.modules} - before)), failed


def main(argv: list[str]) -> None:
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # die with the grader
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the grader's to handle; it stops the zygote itself
    control = socket.socket(fileno=int(argv[0]))
    setup = prepare("--no-namespaces" not in argv)
    import numpy  # noqa: F401  (pre-imported for the workers)
    import torch  # noqa: F401

    from dlgrade.worker import main as worker_main  # noqa: F401

    names = [n for a in argv if a.startswith("--preload=") for n in a.split("=", 1)[1].split(",") if n]
    setup.preloaded, failed = preload(names)
    warm_up()
    from dlgrade.worker import view

    setup.plan = view.plan()  # the view where namespaces work, Landlock's allow-list where they do not
    setup.seccomp, problem = syscalls.build_filter()
    if problem:
        setup.problems.append(problem)
    control.send(json.dumps({"mode": setup.mode, "pid_namespace": setup.pid_namespace, "problems": setup.problems,
                             "preloaded": names, "preload_failed": failed}).encode())
    serve(control)


if __name__ == "__main__":
    main(sys.argv[1:])
