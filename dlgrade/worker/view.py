"""The worker's file system, built from nothing: an allow-list, not a list of hidden paths.

In the worker's own mount namespace a small tmpfs becomes the new root. Into it go, read-only:
the system's ``/usr`` (with the ``/bin``, ``/lib*`` links or folders), the Python installation
and virtual environment the interpreter runs from, the site-packages folders on ``sys.path``, the
folders of shared libraries already loaded from elsewhere, the worker's own code (``dlgrade``'s
``__init__``, ``protocol`` and ``worker/`` only) and ``/etc/ld.so.cache``; generated ``/etc/passwd``
and ``/etc/group``; ``/dev/null``, ``zero``, ``full``, ``random``, ``urandom`` (and the NVIDIA
devices and ``/sys`` when the worker uses CUDA); a private ``/proc`` of the worker's PID
namespace; a size-capped tmpfs ``/tmp`` that holds the work dir; a small ``/dev/shm``. Then
``pivot_root`` and the old root is detached: nothing else of the machine exists for the worker —
not the batch folder with the other students, not graders/, reference_solutions/ or the results,
not /root or /home (a Python under /root/.pyenv appears there alone).

:func:`plan` runs once, in the zygote; :func:`build` runs in every worker.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from dlgrade.worker.syscalls import mount

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 0x4000, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME, MS_STRICTATIME = 1024, 2048, 1 << 21, 1 << 24
MNT_DETACH = 2
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC = ("/etc/ld.so.cache",)
DEVICES = ("null", "zero", "full", "random", "urandom")


@dataclass(frozen=True)
class Plan:
    binds: tuple[tuple[str, str], ...]   # (where the worker sees it, the real path on the host), parents first
    links: tuple[tuple[str, str], ...]   # symbolic links to recreate (path, target), e.g. /lib -> usr/lib
    gpu_devices: tuple[str, ...]         # /dev/nvidia* and /dev/dri, bound only for a CUDA worker


def _covered(path: str, binds: dict[str, str]) -> bool:
    """Is ``path`` already visible, with the same content, through a bind of one of its parents?"""
    real = os.path.realpath(path)
    for target, source in binds.items():
        if path == target or path.startswith(target + "/"):
            return os.path.realpath(source + path[len(target):]) == real
    return False


def plan() -> Plan:
    """What the worker's file system holds, from this interpreter's own layout."""
    binds: dict[str, str] = {}
    links: list[tuple[str, str]] = []

    def add(path: str) -> None:
        path = os.path.abspath(path)
        if not os.path.exists(path) or path == "/":
            return
        # the path as the interpreter names it, and where it really is (a venv's python links out)
        for name in dict.fromkeys((path, os.path.realpath(path))):
            if not _covered(name, binds):
                binds[name] = os.path.realpath(path)

    for top in SYSTEM:
        if os.path.islink(top):
            links.append((top, os.readlink(top)))
        elif os.path.isdir(top):
            add(top)
    for prefix in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix):
        add(prefix)
    add(os.path.dirname(os.path.realpath(sys.executable)))
    for entry in sys.path:
        # site-packages folders only: other entries (a checkout on PYTHONPATH, the grader's cwd) may hold graders/
        if entry and os.path.basename(entry.rstrip("/")) in ("site-packages", "dist-packages"):
            add(entry)
    import dlgrade

    pkg = os.path.dirname(os.path.abspath(dlgrade.__file__))
    for rel in ("__init__.py", "protocol.py", "worker"):
        add(os.path.join(pkg, rel))
    for lib in _loaded_libraries():
        add(os.path.dirname(lib))
    for path in ETC:
        add(path)
    gpu = sorted(os.path.join("/dev", d) for d in (os.listdir("/dev") if os.path.isdir("/dev") else [])
                 if d.startswith("nvidia") or d == "dri")
    ordered = tuple(sorted(binds.items(), key=lambda kv: (kv[0].count("/"), kv[0])))
    return Plan(ordered, tuple(links), tuple(gpu))


def _loaded_libraries() -> list[str]:
    """Shared libraries mapped into this process from outside the usual places (a conda or CUDA folder)."""
    found: set[str] = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split(None, 5)[-1].strip() if line.count(" ") >= 5 else ""
                if path.startswith("/") and ".so" in os.path.basename(path) and not path.startswith(SYSTEM):
                    found.add(path)
    except OSError:
        pass
    return sorted(found)


def _keep_flags(target: str) -> int:
    """The flags of the mount now at ``target`` that a remount must repeat (a user namespace may not drop them)."""
    st = os.statvfs(target)
    flags = 0
    for st_bit, ms_bit in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
                           (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME)):
        if st.f_flag & st_bit:
            flags |= ms_bit
    return flags


def _bind(fd: int, target: str, readonly: bool = True, extra: int = MS_NOSUID) -> None:
    if os.path.isdir(f"/proc/self/fd/{fd}"):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    if readonly:
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | extra | _keep_flags(target))


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def build(p: Plan, uid: int, gid: int, tmp_mb: int, in_pid_namespace: bool, gpu: bool, hide: list[str]) -> list[str]:
    """Replace this process's root by the allow-listed view (the caller is alone in a new mount namespace).

    Returns warnings for what could not be done; raises OSError when the view cannot be built at all.
    """
    warnings: list[str] = []
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    sources = [(target, os.open(source, os.O_PATH | os.O_CLOEXEC)) for target, source in p.binds if os.path.exists(source)]
    devices = [(f"/dev/{d}", os.open(f"/dev/{d}", os.O_PATH | os.O_CLOEXEC)) for d in DEVICES if os.path.exists(f"/dev/{d}")]
    if gpu:
        devices += [(d, os.open(d, os.O_PATH | os.O_CLOEXEC)) for d in p.gpu_devices]
        if os.path.isdir("/sys"):
            sources.append(("/sys", os.open("/sys", os.O_PATH | os.O_CLOEXEC)))
    root = "/tmp"  # any existing folder serves as the mount point: sources are held open, so covering it hides none
    try:
        mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
        # the private /tmp first: a checkout or venv under the host's /tmp (CI clones) is bound into it
        os.mkdir(root + "/tmp")
        mount("tmpfs", root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmp_mb}m,mode=1777")
        for target, fd in sources:
            try:
                _bind(fd, root + target)
            except OSError as exc:
                warnings.append(f"not in the worker's view: {target} ({exc.strerror or exc})")
        for path, target in p.links:
            os.symlink(target, root + path)
        os.makedirs(root + "/dev", exist_ok=True)
        mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
        for target, fd in devices:
            _bind(fd, root + target, readonly=False, extra=0)
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                             ("stderr", "/proc/self/fd/2")):
            os.symlink(target, f"{root}/dev/{name}")
        os.mkdir(root + "/dev/shm")
        mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64m,mode=1777")
        os.mkdir(root + "/proc")
        try:  # its own PID namespace's processes only; without one, only its own uid's (hidepid)
            mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None if in_pid_namespace else "hidepid=invisible")
        except OSError as exc:
            warnings.append(f"no /proc in the worker ({exc.strerror or exc})")
        os.makedirs(root + "/etc", exist_ok=True)
        _write(root + "/etc/passwd", "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
                                     f"student:x:{uid}:{gid}:student:/tmp/work:/usr/sbin/nologin\n")
        _write(root + "/etc/group", f"root:x:0:\nstudent:x:{gid}:\n")
        for path in hide:  # a second line of defence: a hidden path that a bind above happens to contain
            if os.path.lexists(root + path):
                mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=000")
    finally:
        for _, fd in sources + devices:
            os.close(fd)
    os.chdir(root)
    _pivot(root)
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    return warnings


def _pivot(root: str) -> None:
    """``pivot_root(".", ".")`` then detach the old root that it leaves stacked under the new one."""
    from dlgrade.worker.syscalls import check, libc

    number = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine)
    if number is None:
        raise OSError(f"pivot_root: unknown system call number on {os.uname().machine}")
    check(libc.syscall(number, b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")
