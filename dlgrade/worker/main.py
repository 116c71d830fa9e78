"""Worker entry points: serve requests on a socket after confining this process.

``python -m dlgrade.worker.main`` serves on stdin/stdout (one-shot worker, e.g. inside a
container); the zygote calls :func:`run` in a forked child instead.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import torch

from dlgrade.protocol import Channel, PeerClosed, ProtocolError
from dlgrade.worker import confine
from dlgrade.worker.dispatch import Dispatcher


def serve(channel: Channel, dispatcher: Dispatcher) -> None:
    while True:
        try:
            request = channel.recv()
        except PeerClosed:
            return
        except ProtocolError as exc:
            channel.send({"ok": False, "error": {"kind": "request", "type": "", "message": str(exc), "trace": "", "api": None}})
            continue
        if request.get("op") == "bye":
            return
        channel.send(dispatcher.serve(request))


def run(sock: socket.socket) -> None:
    """Handshake, confinement, then serve. The first message carries the configuration."""
    channel = Channel(sock)
    hello = channel.recv()
    cfg: dict[str, Any] = hello.get("config", {})
    files = {str(k): bytes(v.numpy().tobytes()) for k, v in hello.get("files", {}).items()}
    sub, warnings = confine.confine(cfg, files)
    torch.set_num_threads(max(1, int(cfg.get("threads", 1))))
    sys.path.insert(0, sub)
    _unshadow(sub)
    device = str(cfg.get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        warnings.append("CUDA requested but not available in the worker; using the CPU")
        device = "cpu"
    os.environ["DLGRADE_DEVICE"] = device  # a notebook's graded module may take its `device` from it (dlgrade.notebook)
    dispatcher = Dispatcher(sub, [str(m) for m in cfg.get("modules", [])], device=device,
                            blocked=[str(m) for m in cfg.get("blocked", [])],
                            rules=[r for r in cfg.get("forbidden", []) if isinstance(r, dict)])
    warnings += dispatcher.rule_warnings
    channel.send({"ok": True, "value": {"pid": confine.HOST_PID or os.getpid(), "uid": os.getuid(), "warnings": warnings,
                                        "device": device}})
    serve(channel, dispatcher)


def _unshadow(sub: str) -> None:
    """Modules the zygote preloaded give way to the submission's own files of the same name (a ``utils.py``, a
    ``data/`` folder), as they would in a fresh interpreter: the student's ``import utils`` finds theirs."""
    preloaded = set(confine.SETUP.preloaded) if confine.SETUP is not None else set()
    if not preloaded:
        return
    own = {name[:-3] if name.endswith(".py") else name for name in os.listdir(sub)
           if name.endswith(".py") or os.path.isdir(os.path.join(sub, name))}
    for top in preloaded & own:
        for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[name]


def main() -> None:
    # A container's one worker: the container isolates it, and the seccomp filter is added all the same (no ptrace of
    # the container's init, no namespaces, no socket but AF_UNIX); built now, while the container waits warm. So is
    # what a zygote does once for its forks: the assignment's preload (DLGRADE_PRELOAD) and torch's lazy
    # initialisation (seconds of a submission's first calls otherwise), before any student code has arrived.
    from dlgrade.worker import syscalls, zygote

    seccomp, problem = syscalls.build_filter()
    names = [n for n in os.environ.pop("DLGRADE_PRELOAD", "").split(",") if n]
    preloaded, _ = zygote.preload(names)
    zygote.warm_up()
    confine.SETUP = confine.Setup(seccomp=seccomp, problems=[problem] if problem else [], preloaded=preloaded)
    # stdin/stdout become the channel; student prints go to stderr.
    sock = socket.socket(fileno=os.dup(0)) if _is_socket(0) else _stdio_socket()
    run(sock)


def _is_socket(fd: int) -> bool:
    import stat
    return stat.S_ISSOCK(os.fstat(fd).st_mode)


def _stdio_socket() -> socket.socket:
    """Bridge plain stdin/stdout pipes to a socket pair (for `docker run -i`)."""
    import threading

    ours, theirs = socket.socketpair()
    rfd, wfd = os.dup(0), os.dup(1)
    os.dup2(2, 1)  # student prints must never reach the protocol stream
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)

    def pump_in() -> None:
        while chunk := os.read(rfd, 1 << 16):
            theirs.sendall(chunk)
        theirs.shutdown(socket.SHUT_WR)

    def pump_out() -> None:
        while chunk := theirs.recv(1 << 16):
            os.write(wfd, chunk)

    threading.Thread(target=pump_in, daemon=True).start()
    threading.Thread(target=pump_out, daemon=True).start()
    return ours


if __name__ == "__main__":
    main()
