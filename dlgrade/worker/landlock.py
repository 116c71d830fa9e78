"""Landlock: the worker's file-system allow-list where no mount namespace can be made.

Without namespaces (``DLGRADE_NAMESPACES=0``, Gradescope's containers, a kernel that refuses them)
the worker shares the machine's file system. Landlock, a Linux security module that any process
may apply to itself (kernel 5.13 and later, no privilege needed), then gives it the same
allow-list as the view of :mod:`dlgrade.worker.view`: it may read and execute the interpreter,
its libraries and the worker's own code, read ``/proc`` and the CPU topology, use ``/dev/null``,
``zero``, ``full``, ``random`` and ``urandom``, and do anything in its own work dir. Nothing else
can be read, listed or written, whatever the file permissions say: not the batch folder, not the
grader's files, not ``/tmp`` or ``/dev/shm`` (which other workers share). From ABI 4 on it makes no
TCP connection and binds no TCP port; from ABI 6 on it can neither reach an abstract unix socket
nor signal a process made outside its domain (another worker, the grader). The domain binds the
worker and everything it starts, for good.

:func:`restrict` returns what was applied, or raises :class:`Unavailable` with the reason (an old
kernel, Landlock not enabled, or a seccomp profile that refuses its system calls).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from dlgrade.worker.syscalls import libc
from dlgrade.worker.view import DEVICES, Plan

# the same numbers on every architecture (the unified system call table)
SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR, MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15      # ABI 2, 3 and 5
FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV   # the rights a rule on a file (not a folder) may grant
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1               # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1    # ABI 6

READ_ONLY = EXECUTE | READ_FILE | READ_DIR


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class Unavailable(OSError):
    """Landlock cannot be applied here; the message says why."""


@dataclass(frozen=True)
class Applied:
    abi: int
    network: bool       # TCP connect and bind refused by Landlock too
    scoped: bool        # abstract unix sockets and signals outside the domain refused


def abi() -> int:
    """The Landlock ABI version of this kernel; raises Unavailable."""
    version = int(libc.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION)))
    if version < 0:
        err = ctypes.get_errno()
        why = {38: "the kernel has no Landlock (older than 5.13, or a seccomp profile refuses it)",
               95: "Landlock is not enabled in this kernel (boot option lsm=)"}.get(err, os.strerror(err))
        raise Unavailable(err, f"no Landlock: {why}")
    return version


def allowed_paths(plan: Plan, work: str, gpu: bool) -> list[tuple[str, int]]:
    """(path, rights) of everything the worker may use; the caller's plan is the namespace view's."""
    rules: list[tuple[str, int]] = [(source, READ_ONLY) for _target, source in plan.binds]
    rules += [("/proc", READ_FILE | READ_DIR), ("/sys/devices/system/cpu", READ_FILE | READ_DIR)]
    rules += [(f"/dev/{d}", READ_FILE | WRITE_FILE) for d in DEVICES]
    if gpu:
        rules += [(d, READ_FILE | WRITE_FILE | IOCTL_DEV) for d in plan.gpu_devices]
        rules += [("/sys", READ_FILE | READ_DIR), ("/proc/driver/nvidia", READ_FILE | READ_DIR)]
    rules.append((work, ~0))
    return rules


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ctypes.get_errno()
        raise Unavailable(err, f"Landlock: {what}: {os.strerror(err)}")
    return rc


def restrict(plan: Plan, work: str, gpu: bool = False) -> Applied:
    """Confine this process (and all it starts) to ``allowed_paths``; needs no_new_privs set first."""
    version = abi()
    fs = FS_BY_ABI.get(version, FS_BY_ABI[5])
    attr = _RulesetAttr(handled_access_fs=fs,
                        handled_access_net=(NET_BIND_TCP | NET_CONNECT_TCP) if version >= 4 else 0,
                        scoped=(SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if version >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if version >= 6 else (16 if version >= 4 else 8)
    ruleset = _check(int(libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))),
                     "create the ruleset")
    try:
        for path, rights in allowed_paths(plan, work, gpu):
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # not on this machine (a GPU device, a library folder): nothing to allow
            try:
                grant = rights & fs
                if not os.path.isdir(f"/proc/self/fd/{fd}"):
                    grant &= FILE_RIGHTS
                rule = _PathBeneathAttr(allowed_access=grant, parent_fd=fd)
                _check(int(libc.syscall(SYS_ADD_RULE, ruleset, RULE_PATH_BENEATH, ctypes.byref(rule), ctypes.c_uint32(0))),
                       f"allow {path}")
            finally:
                os.close(fd)
        _check(int(libc.syscall(SYS_RESTRICT_SELF, ruleset, ctypes.c_uint32(0))), "restrict this process")
    finally:
        os.close(ruleset)
    return Applied(version, network=version >= 4, scoped=version >= 6)
