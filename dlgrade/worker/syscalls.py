"""The system calls the confinement needs (through libc) and the seccomp filter loaded last.

The filter is built with libseccomp (the ``pyseccomp`` binding, a thin ctypes layer over the
library that Docker, systemd and Chromium use); libseccomp writes the BPF program, including the
architecture checks (a 32-bit or x32 system call from this 64-bit process kills it). It is built
once in the zygote and loaded by each worker after the worker has built its own file system and
dropped its privileges, so it binds everything the student's code runs and every process it
starts. It allows everything except:

- sockets other than ``AF_UNIX`` (no network even where no network namespace could be made),
- ``ptrace``, reading or writing another process's memory, taking another process's descriptors,
- creating or entering namespaces (``unshare``, ``setns``, ``clone`` with a namespace flag;
  ``clone3`` answers ENOSYS so that glibc falls back to ``clone``), ``mount`` and the new mount API,
  ``pivot_root``, ``chroot``,
- kernel interfaces a homework never needs and sandboxes are escaped through: ``bpf``,
  ``perf_event_open``, ``userfaultfd``, ``io_uring`` (its requests bypass seccomp), keyrings,
  module loading, ``kexec``, ``open_by_handle_at``, ``reboot``, swap, clocks, accounting.

A denied call fails with EPERM (EAFNOSUPPORT for a socket, ENOSYS for ``clone3``): the student's
code sees an ordinary error rather than being killed, and the test fails with its message.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET)

DENIED = ("ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
          "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
          "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
          "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
          "keyctl", "add_key", "request_key", "init_module", "finit_module", "delete_module",
          "kexec_load", "kexec_file_load", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie",
          "reboot", "swapon", "swapoff", "acct", "quotactl", "settimeofday", "clock_settime", "clock_adjtime",
          "adjtimex", "syslog", "vhangup")

libc = ctypes.CDLL(None, use_errno=True)


def check(rc: int, what: str) -> None:
    """Raise OSError for a failed libc call (rc != 0), naming what failed."""
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    check(libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                     ctypes.c_ulong(flags), data.encode() if data else None), f"mount {fstype or source} on {target}")


def unshare(flags: int) -> None:
    check(libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, flags: int) -> None:
    check(libc.setns(fd, flags), "setns")


def prctl(option: int, arg: int = 0) -> int:
    return int(libc.prctl(option, ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_bounding_set() -> None:
    """Empty the capability bounding set (needs CAP_SETPCAP): no capability can ever be gained back."""
    PR_CAPBSET_DROP = 24
    for cap in range(64):
        if prctl(PR_CAPBSET_DROP, cap) != 0:
            err = ctypes.get_errno()
            if err == errno.EINVAL:
                break  # past the last capability this kernel knows
            raise OSError(err, f"drop capability {cap} from the bounding set: {os.strerror(err)}")


def drop_capabilities() -> None:
    """Give up every capability for good (the rootless worker keeps its uid, so nothing else drops them)."""
    drop_bounding_set()
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
    check(libc.capset(ctypes.byref(header), (_CapData * 2)()), "capset")


def build_filter() -> tuple[Any, str | None]:
    """(the filter, ready to ``load()``; or None and why there is none)."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: the binding found no libseccomp
        return None, f"no seccomp filter (libseccomp or its binding pyseccomp is missing: {exc})"
    try:
        f = sc.SyscallFilter(sc.ALLOW)
        f.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread of the worker, not only the calling one
        for name in ("socket", "socketpair"):
            f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), name, sc.Arg(0, sc.NE, socket.AF_UNIX))
        for flag in NAMESPACE_FLAGS:
            f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags sit behind a pointer the filter cannot read
        for name in DENIED:
            try:
                f.add_rule(sc.ERRNO(errno.EPERM), name)
            except (OSError, ValueError, RuntimeError):
                pass  # a call this architecture does not have
    except Exception as exc:  # an unexpected libseccomp version: fail visibly, not silently open
        return None, f"no seccomp filter (libseccomp refused the rules: {exc})"
    return f, None
