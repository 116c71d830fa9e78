"""The zygote: a clean process with torch imported that forks one worker per request.

It holds no grader state (it never imports the trusted side), so a fork of it gives the
student a fresh interpreter with `import torch` already paid. Control messages are small
JSON datagrams on a SOCK_SEQPACKET socket; the worker's channel and output file arrive as
file descriptors (SCM_RIGHTS).

Requests: {"op": "spawn"} + fds [channel, output] -> {"pid": n};
          {"op": "wait", "pid": n, "timeout": s} -> {"status": wait status or null}.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time

import numpy  # noqa: F401  (pre-import for the workers)
import torch  # noqa: F401

from dlgrade.worker import main as worker_main

_statuses: dict[int, int] = {}


def _reap() -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _statuses[pid] = status


def _wait(pid: int, timeout: float) -> int | None:
    end = time.monotonic() + timeout
    while True:
        _reap()
        if pid in _statuses:
            return _statuses.pop(pid)
        if time.monotonic() >= end:
            return None
        time.sleep(0.005)


def _warm_up() -> None:
    """Run the common kernels once, single-threaded, so that every forked worker starts warm.

    First calls pay for lazy initialisation (dispatcher tables, autograd, optimiser code); done
    here, forks inherit it. One thread: no OpenMP pool exists to be broken by fork().
    """
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


def _child(control: socket.socket, channel_fd: int, output_fd: int) -> None:
    control.close()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    code = 0
    try:
        sys.stdout = open(1, "w", buffering=1, closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)
        worker_main.run(socket.socket(fileno=channel_fd))
    except BaseException:  # the worker's own failure: reported through the exit code
        code = 70
    finally:
        os._exit(code)


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
            pid = os.fork()
            if pid == 0:
                _child(control, fds[0], fds[1])
            for fd in fds:
                os.close(fd)
            control.send(json.dumps({"pid": pid}).encode())
        elif request.get("op") == "wait":
            status = _wait(int(request["pid"]), float(request.get("timeout", 5.0)))
            control.send(json.dumps({"status": status}).encode())
        else:
            control.send(json.dumps({"error": "unknown op"}).encode())
        _reap()


if __name__ == "__main__":
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the grader
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the grader's to handle; it stops the zygote itself
    _warm_up()
    serve(socket.socket(fileno=int(sys.argv[1])))
