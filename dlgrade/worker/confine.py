"""Confining a freshly forked worker before any student code runs.

As root (Gradescope, CI, an instructor's server): new mount and network namespaces, a uid of its own, a private
tmpfs for /tmp holding the submission, tmpfs over every hidden path (hidden tests, reference
solutions, results), rlimits, no new privileges, then the unprivileged uid. Without root the
same steps that need no privilege still run (rlimits, private work dir, clean environment) and
the worker reports which protections it could not apply.
"""

from __future__ import annotations

import ctypes
import os
import resource
import sys
import tempfile
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_NOSUID = 2
MS_NODEV = 4
MS_RDONLY = 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
UID_BASE = 100_000  # worker uid = UID_BASE + its pid: unique among live workers, so none can signal another

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount_tmpfs(target: str, options: str, flags: int = MS_NOSUID | MS_NODEV) -> None:
    _check(_libc.mount(b"tmpfs", target.encode(), b"tmpfs", flags, options.encode()), f"mount tmpfs on {target}")


MS_BIND = 4096


def _expose(paths: list[str]) -> None:
    """Let the unprivileged uid reach the interpreter's own files.

    A directory on the way to the Python installation that others cannot enter (for
    example /root when Python lives in /root/.pyenv) is covered, in this mount namespace
    only, by an empty tmpfs into which just the needed child is bind-mounted back.
    """
    needs: dict[str, set[str]] = {}
    for p in paths:
        real = os.path.realpath(p)
        if not os.path.exists(real):
            continue
        parts = real.split("/")[1:]
        for i in range(1, len(parts)):
            d = "/" + "/".join(parts[:i])
            if not os.stat(d).st_mode & 0o001:
                needs.setdefault(d, set()).add(parts[i])
    for d in sorted(needs, key=len):
        fds = {c: os.open(os.path.join(d, c), os.O_PATH) for c in sorted(needs[d])}
        _mount_tmpfs(d, "size=1m,mode=755")
        for c, fd in fds.items():
            target = os.path.join(d, c)
            if os.path.isdir(f"/proc/self/fd/{fd}"):
                os.mkdir(target)
            else:
                open(target, "w").close()
            _check(_libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, MS_BIND | MS_REC, None), f"bind {target}")
            os.close(fd)


def _private_tmp(needed: list[str], size_mb: int) -> None:
    """A fresh tmpfs on /tmp, with the needed paths that lived under /tmp bound back in.

    A checkout or virtual environment under /tmp (CI clones, Gradescope's /tmp builds) must
    stay reachable; everything else of the host's /tmp (other students' files, the grader's
    scratch) disappears.
    """
    tops: list[str] = []
    for p in sorted({os.path.realpath(p) for p in needed}):
        if p.startswith("/tmp/") and os.path.exists(p) and not any(p.startswith(t + "/") for t in tops):
            tops.append(p)
    fds = {p: os.open(p, os.O_PATH) for p in tops}
    _mount_tmpfs("/tmp", f"size={size_mb}m,mode=1777")
    for p, fd in fds.items():
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(p, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "w").close()
        _check(_libc.mount(f"/proc/self/fd/{fd}".encode(), p.encode(), None, MS_BIND | MS_REC, None), f"bind {p}")
        os.close(fd)


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _write_files(root: str, files: dict[str, bytes], uid: int | None, gid: int | None = None) -> None:
    for rel, data in sorted(files.items()):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    if uid is not None:
        for dirpath, _dirs, filenames in os.walk(root):
            os.chown(dirpath, uid, uid if gid is None else gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), uid, uid if gid is None else gid)


def confine(cfg: dict[str, Any], files: dict[str, bytes]) -> tuple[str, list[str]]:
    """Apply the sandbox to this process; returns (submission dir, warnings)."""
    warnings: list[str] = []
    try:
        os.setsid()
    except PermissionError:  # already a process-group leader (under a container's init)
        pass
    privileged = os.geteuid() == 0 and cfg.get("isolate", True)
    isolated = False
    if privileged and not cfg.get("namespaces", True):
        warnings.append("namespaces turned off (DLGRADE_NAMESPACES=0): no mount/network namespace; relying on file permissions")
    elif privileged:
        try:
            _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWNET), "unshare")
            _check(_libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
            isolated = True
        except OSError as exc:
            warnings.append(f"no mount/network namespace ({exc}); relying on file permissions")
    elif cfg.get("isolate", True):
        warnings.append("not running as root: no separate uid, network namespace or hidden paths")

    mb = 1024 * 1024
    if isolated:
        needed = [sys.prefix, sys.base_prefix, os.path.dirname(sys.executable), *[p for p in sys.path if p]]
        try:
            _expose(needed)
        except OSError as exc:
            warnings.append(f"could not expose the Python installation: {exc}")
        _private_tmp(needed, int(cfg.get("tmp_mb", 512)))
        if os.path.isdir("/dev/shm"):
            _mount_tmpfs("/dev/shm", "size=64m,mode=1777")
        for path in cfg.get("hide", []):  # last: also covers hidden paths re-bound into the new /tmp
            if os.path.isdir(path):
                try:
                    _mount_tmpfs(path, "size=1m,mode=000", MS_NOSUID | MS_NODEV | MS_RDONLY)
                except OSError as exc:
                    warnings.append(str(exc))
        work = "/tmp/work"
        os.mkdir(work, 0o700)
    else:
        work = tempfile.mkdtemp(prefix="dlgrade-worker-")
    mounted = cfg.get("submission_dir")
    if mounted:  # in a container the submission is already mounted there, read-only
        sub = str(mounted)
        if not os.path.isdir(sub):
            raise OSError(f"submission directory {sub} is missing")
    else:
        sub = os.path.join(work, "submission")
        os.mkdir(sub)
    # a named worker user (DLGRADE_WORKER_USER, as in the Gradescope bundle) or a uid of its own
    uid = (int(cfg["worker_uid"]) if cfg.get("worker_uid") is not None else UID_BASE + os.getpid()) if privileged else None
    gid = int(cfg.get("worker_gid", uid)) if uid is not None else None
    if not mounted:
        _write_files(sub, files, uid, gid)
    if uid is not None:
        os.chown(work, uid, gid if gid is not None else uid)

    try:  # under a container's memory limit (Gradescope: 768 MB for everything) the kernel kills the worker first
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    base = _vm_size_bytes()
    limits = {
        resource.RLIMIT_AS: base + int(cfg.get("memory_mb", 2048)) * mb,
        resource.RLIMIT_FSIZE: int(cfg.get("file_size_mb", 64)) * mb,
        resource.RLIMIT_NOFILE: 256,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_CPU: int(cfg.get("cpu_seconds", 3600)),
    }
    if privileged:
        limits[resource.RLIMIT_NPROC] = int(cfg.get("processes", 64))
    for which, value in limits.items():
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            warnings.append(f"rlimit {which}: {exc}")

    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if privileged:
        os.setgroups([])
        assert uid is not None
        os.setgid(uid if gid is None else gid)
        os.setuid(uid)
    # die with the zygote (set after the uid change, which clears it)
    _libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    keep = {k: os.environ[k] for k in ("LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES") if k in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    threads = str(int(cfg.get("threads", 1)))
    os.environ.update({"HOME": work, "TMPDIR": work, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    os.chdir(work)
    tempfile.tempdir = work
    return sub, warnings
