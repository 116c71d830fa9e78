"""Confining a freshly forked worker before any student code runs.

The zygote forks each worker as PID 2 of a PID namespace of its own, under a tiny init (PID 1) that
exits with the worker, so the kernel kills every process the submission started (``setsid``,
double forks, new sessions) when the worker ends. Then the worker confines itself:

- **root** (an instructor's server, CI, Gradescope where namespaces work): new mount, network, IPC
  and UTS namespaces; the allow-listed file system of :mod:`dlgrade.worker.view`; a uid of its own;
- **rootless** (a cluster node, ``dlgrade`` run by a normal user): the same inside the unprivileged
  user namespace that the zygote made; the worker keeps the grader's uid, drops every capability,
  and cannot make user namespaces (``user.max_user_namespaces`` is 0 in the zygote's);
- **no namespaces** (``DLGRADE_NAMESPACES=0``, or a kernel or container that refuses them): as root,
  a uid of its own and a private work dir, and Landlock (:mod:`dlgrade.worker.landlock`) in place of the
  view where the kernel has it; the warnings say what the worker can still read (tried, not guessed).

Always: rlimits (address space, file size, processes, CPU time, open files, no core dumps),
``no_new_privs``, a clean environment and, last, the seccomp filter of :mod:`dlgrade.worker.syscalls`.
In a container (the docker backend) the container is the sandbox: rlimits, the environment and the seccomp filter.
"""

from __future__ import annotations

import os
import resource
import tempfile
from dataclasses import dataclass, field
from typing import Any

from dlgrade.worker import landlock, syscalls, view
from dlgrade.worker.syscalls import CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUTS, prctl

PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
UID_BASE = 100_000  # worker uid = UID_BASE + its host pid: unique among live workers, so none can signal another


@dataclass
class Setup:
    """What the zygote prepared for its workers (set in the zygote, inherited through fork)."""

    mode: str = "none"                   # "root", "rootless" (in the zygote's user namespace) or "none"
    pid_namespace: bool = False          # this worker runs under its own init, in a PID namespace of its own
    plan: view.Plan | None = None
    seccomp: Any = None                  # a filter ready to load, or None
    problems: list[str] = field(default_factory=list)   # isolation the zygote could not set up, and why
    preloaded: tuple[str, ...] = ()      # top-level modules that the assignment's preload added to sys.modules


SETUP: Setup | None = None  # None: a one-shot worker (in a container), not forked by a zygote
HOST_PID: int | None = None  # set by confine(): the worker's pid as the grader sees it


def _host_pid() -> int:
    """This process's pid in the machine's PID namespace (the /proc mounted there still says it)."""
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _write_files(root: str, files: dict[str, bytes], uid: int | None, gid: int | None) -> None:
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


def _work_root(cfg: dict[str, Any]) -> str | None:
    """The folder the grader made for its workers' work dirs (it removes them), when it names an existing one."""
    root = cfg.get("work_root")
    return root if isinstance(root, str) and os.path.isabs(root) and os.path.isdir(root) else None


def _can_read(path: str) -> bool:
    """Can this process list the folder or read the file? (Tried, not guessed from the mode bits: Landlock too.)"""
    try:
        if os.path.isdir(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
    except OSError:
        return False
    return True


def readable_report(hidden: list[str]) -> str:
    """What this (unprivileged) process can read of the machine, for a worker without a view of its own."""
    candidates = ["/", "/root", "/home", "/autograder", "/autograder/source", "/autograder/submission", "/autograder/results",
                  "/tmp", "/dev/shm", "/etc/passwd", *hidden]
    if _can_read("/home"):
        candidates += [os.path.join("/home", d) for d in sorted(os.listdir("/home"))[:20]]
    readable = [path for path in dict.fromkeys(candidates) if os.path.exists(path) and _can_read(path)]
    shut = [p for p in hidden if os.path.exists(p) and p not in readable]
    return ("readable by the worker: " + (", ".join(readable) if readable else "none of the usual places")
            + (f"; not readable: {', '.join(shut)}" if shut else ""))


def _landlock(setup: Setup, work: str, gpu: bool, namespaces_off: bool) -> str:
    """Apply Landlock to a worker without namespaces; returns the line that says what confines it."""
    why = "namespaces turned off (DLGRADE_NAMESPACES=0)" if namespaces_off else "no mount or network namespace"
    plan = setup.plan
    try:
        if plan is None:
            raise OSError(0, "no allow-list was planned for it")
        applied = landlock.restrict(plan, work, gpu)
    except OSError as exc:
        return (f"{why}, and {exc.strerror or exc}: the worker shares the machine's file system (file permissions are the "
                "only barrier), its /tmp and /dev/shm, and abstract unix sockets; seccomp refuses sockets other than AF_UNIX")
    scoped = ("abstract unix sockets and signals outside its own processes are refused" if applied.scoped
              else "abstract unix sockets of the machine stay reachable (Landlock ABI 6 would scope them)")
    return (f"{why}: no PID or network namespace; Landlock (ABI {applied.abi}) keeps the worker to the interpreter, its "
            f"libraries and its own work dir; {scoped}; seccomp refuses sockets other than AF_UNIX")


def confine(cfg: dict[str, Any], files: dict[str, bytes]) -> tuple[str, list[str]]:
    """Apply the sandbox to this process; returns (submission dir, warnings)."""
    setup = SETUP or Setup()
    warnings: list[str] = list(setup.problems)
    try:
        os.setsid()
    except PermissionError:  # already a process-group leader (under a container's init)
        pass
    container = not cfg.get("isolate", True)
    root = os.geteuid() == 0 and not container
    global HOST_PID
    HOST_PID = host_pid = _host_pid()
    hide = [str(p) for p in cfg.get("hide", [])]
    if root:  # a named worker user (DLGRADE_WORKER_USER, as in the Gradescope bundle) or a uid of its own
        uid = int(cfg["worker_uid"]) if cfg.get("worker_uid") is not None else UID_BASE + host_pid
        gid = int(cfg.get("worker_gid", uid))
    elif container and os.geteuid() == 0:  # a container started as root, so that its init is not the worker's to signal
        if cfg.get("worker_uid") is None:
            raise OSError("a container's worker must be told the user to run as (worker_uid); it will not run as root")
        uid, gid = int(cfg["worker_uid"]), int(cfg.get("worker_gid", cfg["worker_uid"]))
    else:
        uid, gid = os.getuid(), os.getgid()
    drop = root or (container and os.geteuid() == 0)   # leave root for (uid, gid) before any student code runs

    isolated = False
    if container:
        pass
    elif not cfg.get("namespaces", True):
        pass  # what confines it instead (Landlock) is said once it is applied, below
    elif setup.mode in ("root", "rootless") and setup.plan is not None:
        try:
            syscalls.unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
        except OSError as exc:
            warnings.append(f"no mount/network namespace ({exc}); the worker shares the machine's file system and network")
        else:  # from here on a failure must not leave a half-built view: the worker does not start (fail closed)
            warnings += view.build(setup.plan, uid, gid, int(cfg.get("tmp_mb", 512)), setup.pid_namespace,
                                   str(cfg.get("device", "cpu")).startswith("cuda"), hide)
            isolated = True
    elif not root:
        warnings.append("not running as root and no user namespace: no separate uid, network namespace or "
                        "process isolation")
    if not setup.pid_namespace and not container:
        warnings.append("no PID namespace: processes the submission leaves behind are found by uid and killed" if root
                        else "no PID namespace and no uid of its own: processes the submission starts may outlive it")

    mb = 1024 * 1024
    if isolated:
        work = "/tmp/work"
        os.mkdir(work, 0o700)
    elif container and drop:
        work = ""  # made once it is the worker's user: a container's root has no CAP_CHOWN to hand it over
    else:  # under the backend's root-owned folder (removed with the backend), else the machine's temp dir
        work = tempfile.mkdtemp(prefix="dlgrade-worker-", dir=_work_root(cfg))
    mounted = cfg.get("submission_dir")
    if mounted:  # in a container the submission is already mounted there, read-only
        sub = str(mounted)
        if not os.path.isdir(sub):
            raise OSError(f"submission directory {sub} is missing")
    else:
        if not work:
            raise OSError("a container's worker reads its submission from the mount (submission_dir)")
        sub = os.path.join(work, "submission")
        os.mkdir(sub)
        _write_files(sub, files, uid if root else None, gid if root else None)
    if drop and work:
        os.chown(work, uid, gid)

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
    if root or (isolated and setup.mode == "rootless"):  # rootless: counted in the zygote's user namespace only
        limits[resource.RLIMIT_NPROC] = int(cfg.get("processes", 64))
    for which, value in limits.items():
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError) as exc:
            warnings.append(f"rlimit {which}: {exc}")

    prctl(PR_SET_NO_NEW_PRIVS, 1)
    if drop and container:  # its capabilities were SETUID, SETGID and SETPCAP: none stays even in the bounding set
        syscalls.drop_bounding_set()
    if drop:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)  # leaves root: every capability goes with it
    elif isolated:
        syscalls.drop_capabilities()
    prctl(PR_SET_PDEATHSIG, 9)  # die with the parent (set after the uid change, which clears it)
    work = work or tempfile.mkdtemp(prefix="dlgrade-worker-", dir=_work_root(cfg))
    if not isolated and not container:  # no view of its own: Landlock keeps it to the same allow-list
        gpu = str(cfg.get("device", "cpu")).startswith("cuda")
        warnings.append(_landlock(setup, work, gpu, namespaces_off=not cfg.get("namespaces", True)))
        warnings.append(readable_report(hide))
    if setup.seccomp is not None:  # (when the zygote, or a container's worker, has none, its problems say why)
        setup.seccomp.load()
    keep = {k: os.environ[k] for k in ("LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES") if k in os.environ}
    os.environ.clear()
    os.environ.update(keep)
    threads = str(int(cfg.get("threads", 1)))
    os.environ.update({"HOME": work, "TMPDIR": work, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    os.chdir(work)
    tempfile.tempdir = work
    return sub, warnings
