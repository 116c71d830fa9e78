"""The `process` sandbox, driven directly with tiny hand-written submissions.

Each test builds a ``WorkerSpec`` whose only module is ``m.py`` and talks to it through the
same ``Submission`` proxy the hidden tests use. Isolation checks (uid, network, hidden paths)
need root, as on Gradescope and in CI; without root they are skipped.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest
from conftest import ROOT

import dlgrade
from dlgrade.errors import LimitExceeded, StudentCodeError, SubmissionImportError, WorkerCrashed
from dlgrade.grade import _spec
from dlgrade.harness.remote import Submission
from dlgrade.sandbox import WorkerSpec
from dlgrade.sandbox.process import ProcessBackend

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="isolation (uid, namespaces, hidden paths) needs root")

PROBE = """
import os
import shutil
import socket
import tempfile


def pid():
    return os.getpid()


def identity():
    return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
            "cwd": os.getcwd(), "env": sorted(os.environ)}


def read(path):
    \"\"\"What this process can see at ``path``: its text, a listing, or the error's name.\"\"\"
    try:
        if os.path.isdir(path):
            return {"listing": sorted(os.listdir(path))}
        with open(path, "rb") as f:
            return {"text": f.read(200).decode("latin-1")}
    except OSError as exc:
        return {"error": type(exc).__name__}


def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "written"
    except OSError as exc:
        return type(exc).__name__


def connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=2) as s:
            s.sendall(b"hello from the worker")
        return "connected"
    except OSError as exc:
        return type(exc).__name__
"""


@pytest.fixture(scope="module")
def backend():  # type: ignore[no-untyped-def]
    b = ProcessBackend()
    yield b
    b.shutdown()


def make_spec(code: str, **kw: Any) -> WorkerSpec:
    return WorkerSpec(files={"m.py": dedent(code).encode()}, modules=("m",), **kw)


def submission(backend: ProcessBackend, code: str, call_timeout: float = 10.0, **kw: Any) -> Submission:
    return Submission(backend, make_spec(code, **kw), call_timeout=call_timeout, submission_timeout=120.0)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def gone_within(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < end:
        time.sleep(0.02)
    return not alive(pid)


# ----------------------------------------------------------------------------- isolation


@needs_root
def test_worker_runs_as_its_own_unprivileged_uid_with_a_clean_environment(backend: ProcessBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-for-students")
    sub = submission(backend, PROBE)
    try:
        me = sub.call("m.identity")
        assert sub.worker is not None
        uid = sub.worker.info["uid"]
        assert uid >= 100_000 and uid == 100_000 + sub.worker.info["pid"]
        assert (me["uid"], me["euid"], me["gid"], me["groups"]) == (uid, uid, uid, [])
        assert me["cwd"].startswith("/tmp/")
        allowed = {"LANG", "LC_ALL", "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "HOME", "TMPDIR", "PATH",
                   "OMP_NUM_THREADS", "MKL_NUM_THREADS", "DLGRADE_DEVICE"}
        assert set(me["env"]) <= allowed
        assert not sub.warnings
    finally:
        sub.close()


@needs_root
def test_network_is_unreachable(backend: ProcessBackend) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    port = server.getsockname()[1]
    sub = submission(backend, PROBE)
    try:
        assert sub.call("m.connect", "127.0.0.1", port) != "connected"
        assert sub.call("m.connect", "8.8.8.8", 53) != "connected"
        with pytest.raises(OSError):  # nothing ever knocked
            server.accept()
    finally:
        sub.close()
        server.close()


@needs_root
def test_worker_sees_only_the_allow_list(backend: ProcessBackend, cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The grader's real spec: the worker's file system is built from nothing, so hidden tests, the
    reference, git history, builds, results, the batch folder with a classmate and every home are absent."""
    batch = tmp_path / "batch"
    (batch / "classmate").mkdir(parents=True)
    (batch / "classmate" / "lstm_solution.py").write_text("classmate's work\n")
    for path in [tmp_path, batch, batch / "classmate", batch / "classmate" / "lstm_solution.py"]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by anyone on the host, as files normally are
    spec = _spec(cfg, {"m.py": PROBE.encode()}, tmp_path / "results", "cpu")
    spec = dataclasses.replace(spec, modules=("m",))
    sub = Submission(backend, spec, call_timeout=10, submission_timeout=60)
    try:
        for path in [cfg.grader_dir, cfg.grader_dir / "__init__.py", cfg.reference_dir / "vit_solution.py",
                     ROOT / "graders", ROOT / "reference_solutions", ROOT / ".git", ROOT / ".git" / "HEAD",
                     ROOT / "dist", ROOT / "tests", cfg.assignment_dir / "assignment.toml", tmp_path / "results",
                     batch / "classmate" / "lstm_solution.py", batch, Path("/home"), Path("/root/.bashrc"), Path("/var"),
                     Path("/etc/shadow"), Path("/etc/hostname")]:
            seen = sub.call("m.read", str(path))
            assert seen.get("error") == "FileNotFoundError", f"{path}: {seen}"
        top = set(sub.call("m.read", "/")["listing"])
        assert {"usr", "tmp", "dev", "proc", "etc"} <= top
        assert top <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "tmp", "dev", "proc", "etc", "sys",
                       *{Path(p).parts[1] for p in (sys.base_prefix, sys.prefix, dlgrade.__file__)}}, top
        assert set(sub.call("m.read", "/etc")["listing"]) <= {"ld.so.cache", "passwd", "group"}
        assert set(sub.call("m.read", "/dev")["listing"]) <= {"null", "zero", "full", "random", "urandom", "shm", "fd",
                                                               "stdin", "stdout", "stderr"}
        # of the checkout, only the worker's own code (and a venv inside it) is there
        pkg = Path(dlgrade.__file__).parent
        assert set(sub.call("m.read", str(pkg))["listing"]) == {"__init__.py", "protocol.py", "worker"}
        assert sub.call("m.read", str(pkg / "grade.py")) == {"error": "FileNotFoundError"}
        # the worker's own folder holds the submission and the given support files, nothing else
        assert sub.call("m.read", ".") == {"listing": ["submission"]}
        assert sub.call("m.read", "/tmp") == {"listing": ["work"]} or "dlgrade" not in str(sub.call("m.read", "/tmp"))
        assert {"m.py", "utils"} <= set(sub.call("m.read", "submission")["listing"])
        assert sub.call("m.write", "/usr/lib/hostile.txt") in ("OSError", "PermissionError")
    finally:
        sub.close()


@needs_root
def test_each_worker_is_alone_in_its_pid_namespace(backend: ProcessBackend) -> None:
    """A worker sees only its own processes (its init is PID 1, it is 2): not the grader, not another worker."""
    a, b = submission(backend, PROBE), submission(backend, PROBE)
    try:
        assert a.call("m.pid") == 2 and b.call("m.pid") == 2  # (os.getpid() inside the worker's own namespace)
        assert a.worker is not None and b.worker is not None
        b_host_pid, grader = b.worker.info["pid"], os.getpid()
        assert a.call("m.read", "/proc")["listing"].count("1") == 1
        assert {p for p in a.call("m.read", "/proc")["listing"] if p.isdigit()} == {"1", "2"}
        for pid in (b_host_pid, grader):
            for what in ("environ", "mem", "cmdline", "root/tmp"):
                seen = a.call("m.read", f"/proc/{pid}/{what}")
                assert seen.get("error") in ("FileNotFoundError", "PermissionError"), f"{pid}/{what}: {seen}"
    finally:
        a.close()
        b.close()


@needs_root
def test_workers_cannot_signal_each_other_or_the_grader(backend: ProcessBackend) -> None:
    code = PROBE + dedent("""
        def kill(pid):
            try:
                os.kill(pid, 9)
                return "killed"
            except OSError as exc:
                return type(exc).__name__
        """)
    a, b = submission(backend, code), submission(backend, code)
    try:
        assert b.call("m.pid") == 2 and b.worker is not None
        victim = b.worker.info["pid"]
        assert a.call("m.kill", victim) == "ProcessLookupError"
        assert a.call("m.kill", os.getpid()) == "ProcessLookupError"
        assert a.call("m.kill", -1) in ("killed", "PermissionError", "ProcessLookupError")  # its own namespace only
        assert b.call("m.pid") == 2 and b.worker.info["pid"] == victim
    finally:
        a.close()
        b.close()


DAEMON = """
    import ctypes
    import os
    import time


    def daemon():
        \"\"\"Fork, setsid, try a new user + network namespace, fork again; the grandchild sleeps on.\"\"\"
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            unshared = ctypes.CDLL(None, use_errno=True).unshare(0x10000000 | 0x40000000) == 0
            if os.fork() == 0:
                os.write(w, f"{os.getpid()} {unshared}".encode())
                time.sleep(120)
            os._exit(0)
        os.wait()
        pid, unshared = os.read(r, 64).decode().split()
        return [int(pid), unshared == "True", len([p for p in os.listdir("/proc") if p.isdigit()])]
    """


def _in_namespace(pidns: str | None) -> list[int]:
    found = []
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{p}/ns/pid") == pidns and alive(int(p)):
                found.append(int(p))
        except OSError:
            pass
    return found


@needs_root
def test_processes_left_behind_die_with_the_worker(backend: ProcessBackend) -> None:
    """A setsid, double-forked daemon escapes the process group, not the PID namespace; user namespaces are refused."""
    sub = submission(backend, DAEMON)
    daemon, unshared, processes = sub.call("m.daemon")
    assert not unshared, "the worker could make a user namespace"
    assert daemon > 2 and processes >= 3
    assert sub.worker is not None
    pidns = sub.worker.pidns  # type: ignore[attr-defined]
    assert pidns is not None and len(_in_namespace(pidns)) >= 3  # init, worker, daemon
    sub.close()
    assert _in_namespace(pidns) == [], "a process outlived its worker"
    assert backend.leftovers == [], "the kernel, not the sweep, should have ended them"


# ----------------------------------------------------------------------------- limits and failures


def test_call_timeout_kills_the_worker_and_a_new_one_serves_the_next_call(backend: ProcessBackend) -> None:
    sub = submission(backend, """
        import os


        def spin():
            while True:
                pass


        def pid():
            return os.getpid()
        """, call_timeout=1.5)
    try:
        sub.call("m.pid")
        assert sub.worker is not None
        first = sub.worker.info["pid"]  # as the grader sees it
        started = time.monotonic()
        with pytest.raises(LimitExceeded, match="time limit of 1.5 s"):
            sub.call("m.spin")
        assert time.monotonic() - started < 10
        assert gone_within(first, 5), "the stuck worker was not killed"
        sub.call("m.pid")
        assert sub.worker is not None and sub.worker.info["pid"] != first and sub.restarts == 2
    finally:
        sub.close()


class CpuHogs:
    """Busy processes on every core (a loaded machine: other students graded at -j N, other users' work). Each in a
    session of its own, as separate jobs are: with the kernel's autogroup scheduling, processes of one session share
    one CPU share, and the worker (in a session of its own too) would barely notice them."""

    def __init__(self, count: int) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
                      for _ in range(count)]

    def __enter__(self) -> CpuHogs:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def test_limits_count_cpu_time_so_a_busy_machine_fails_no_one(backend: ProcessBackend) -> None:
    """0.6 s of computing under a 1 s limit, with far more busy processes than cores beside it: the call takes well over
    1 s of wall-clock time, and passes, because the limit counts the worker's CPU time. An endless loop still stops at
    its limit of CPU time; code that sleeps is stopped by the wall-clock backstop (4 times the limit)."""
    sub = submission(backend, """
        import time


        def compute(seconds):
            end = time.process_time() + seconds
            while time.process_time() < end:
                pass
            return time.process_time()


        def spin():
            while True:
                pass


        def wait():
            time.sleep(3600)
        """, call_timeout=1.0)
    try:
        sub.call("m.compute", 0.0)   # the worker is up (its start is not the call's)
        with CpuHogs(2 * (os.cpu_count() or 1)):   # the worker gets about 2/5 of a core
            time.sleep(0.3)
            started = time.monotonic()
            sub.call("m.compute", 0.6)
            busy_wall = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(LimitExceeded, match="time limit of 1 s of CPU time"):
            sub.call("m.spin")
        spin_wall = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(LimitExceeded, match="wall-clock time"):
            sub.call("m.wait")
        waited = time.monotonic() - started
    finally:
        sub.close()
    assert busy_wall > 1.0, f"the machine was not busy enough to show anything ({busy_wall:.2f} s)"
    assert 1.0 <= spin_wall < 4.0, spin_wall
    assert 3.5 < waited < 8.0, waited


def test_student_prints_do_not_reach_the_protocol(backend: ProcessBackend) -> None:
    sub = submission(backend, """
        import os
        import sys

        print("printed at import")
        FORGED = b"DLG\\x01" + (13).to_bytes(4, "big") + (0).to_bytes(8, "big") + b'{"ok": false}'


        def noisy(x):
            print("printed in a call", x)
            print("to stderr", file=sys.stderr)
            os.write(1, FORGED)
            os.write(2, FORGED)
            sys.stdout.flush()
            return x * 2
        """)
    try:
        assert sub.call("m.noisy", 21) == 42
        assert sub.call("m.noisy", 1) == 2
        out = sub.stdout()
        assert "printed at import" in out and "printed in a call 21" in out and "to stderr" in out
        assert '{"ok": false}' in out  # the forged frame landed in the output file, as text
    finally:
        sub.close()


def test_memory_limit_gives_a_memory_message(backend: ProcessBackend) -> None:
    sub = submission(backend, """
        import torch


        def tensor_bomb():
            hog = []
            while True:
                hog.append(torch.ones(16 * 1024 * 1024))  # 64 MB, written


        def list_bomb():
            hog = []
            while True:
                hog.append(bytearray(64 * 1024 * 1024))


        def fine():
            return float(torch.ones(10).sum())
        """, memory_mb=256)
    try:
        for fn in ("m.tensor_bomb", "m.list_bomb"):
            with pytest.raises(LimitExceeded, match=r"ran out of memory \(limit 256 MB\)"):
                sub.call(fn)
        assert sub.call("m.fine") == 10.0
        assert sub.restarts == 1  # a MemoryError is an answer, not a crash
    finally:
        sub.close()


def test_os_exit_is_reported_as_a_crash_and_the_module_is_imported_afresh(backend: ProcessBackend) -> None:
    sub = submission(backend, """
        import os

        CALLS = []


        def count():
            CALLS.append(1)
            return len(CALLS)


        def die():
            os._exit(3)
        """)
    try:
        assert sub.call("m.count") == 1
        assert sub.call("m.count") == 2
        with pytest.raises(WorkerCrashed, match="exited with code 3"):
            sub.call("m.die")
        assert sub.call("m.count") == 1  # a fresh worker imported the module again
        assert not sub.import_failures
    finally:
        sub.close()


def test_sys_exit_in_a_call_is_an_error_not_a_crash(backend: ProcessBackend) -> None:
    sub = submission(backend, """
        import sys


        def leave():
            sys.exit(4)


        def ok():
            return "still here"
        """)
    try:
        with pytest.raises(StudentCodeError, match=r"sys.exit\(\) \(4\)"):
            sub.call("m.leave")
        assert sub.call("m.ok") == "still here"
        assert sub.restarts == 1
    finally:
        sub.close()


def test_crash_at_import_is_remembered(backend: ProcessBackend) -> None:
    sub = submission(backend, """
        import os

        os._exit(5)


        def f():
            return 1
        """)
    try:
        with pytest.raises(SubmissionImportError, match="exited with code 5"):
            sub.call("m.f")
        started = time.monotonic()
        with pytest.raises(SubmissionImportError, match="exited with code 5"):
            sub.call("m.f")
        assert time.monotonic() - started < 0.5, "the second call paid for the import again"
        assert not sub.has("m.f")
        assert sub.restarts <= 2
    finally:
        sub.close()


def test_forbidden_api_guard_watches_only_its_scope(backend: ProcessBackend) -> None:
    """Run-time rules watch what runs inside their scope (any spelling, caught or not) and nothing outside it."""
    sub = submission(backend, """
        import torch
        import torch.nn as nn
        import torch.nn.functional as F


        class Norm:
            def functional(self, x):
                return F.layer_norm(x, (x.shape[-1],))

            def sneaky(self, x):
                try:  # an alias, spelled at run time, inside try
                    return getattr(torch.ops.aten, "native_" + "layer_norm")(x, [x.shape[-1]], None, None, 1e-5)[0]
                except Exception:
                    return x

            def module(self):
                return nn.MultiheadAttention(8, 2)

            def allowed(self, x):
                return F.softmax(x, dim=-1)


        def given_head(x):  # outside the scope: free to use torch's own layer norm
            return nn.LayerNorm(x.shape[-1])(x)
        """, forbidden=({"id": "0", "module": "m", "scope": ["Norm"], "apis": ["torch.nn.functional.layer_norm"], "allow": []},
                        {"id": "1", "module": "m", "scope": ["Norm.module"], "apis": ["torch.nn.MultiheadAttention"],
                         "allow": []}))
    import torch

    x = torch.randn(2, 4)
    try:
        norm = sub.new("m.Norm")
        assert torch.allclose(sub.call("m.given_head", x), torch.nn.functional.layer_norm(x, (4,)), atol=1e-6)
        assert sub.forbidden_used == set()
        assert torch.allclose(norm.call("allowed", x), x.softmax(-1))
        assert sub.forbidden_used == set()
        norm.call("functional", x)  # the call goes on; the use is recorded
        assert sub.forbidden_used == {("0", "torch.nn.functional.layer_norm")}
        norm.call("module")
        assert ("1", "torch.nn.MultiheadAttention") in sub.forbidden_used
    finally:
        sub.close()
    sub = submission(backend, """
        import torch


        class Norm:
            def sneaky(self, x):
                return getattr(torch.ops.aten, "native_" + "layer_norm")(x, [x.shape[-1]], None, None, 1e-5)[0]
        """, forbidden=({"id": "0", "module": "m", "scope": ["Norm"], "apis": ["torch.nn.functional.layer_norm"], "allow": []},))
    try:
        sub.new("m.Norm").call("sneaky", x)
        assert sub.forbidden_used == {("0", "torch.nn.functional.layer_norm")}
    finally:
        sub.close()


@needs_root
def test_site_packages_under_tmp_stay_importable_and_other_sys_path_entries_do_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """A venv under /tmp (CI clones) is bound into the worker's private /tmp; a plain sys.path entry is not.

    The grader often runs from a checkout (``python -m dlgrade`` puts it on sys.path), and a checkout holds
    graders/ and reference_solutions/: only site-packages folders of sys.path enter the worker's view.
    """
    base = Path(tempfile.mkdtemp(prefix="dlgrade-site-", dir="/tmp"))
    site = base / "venv" / "lib" / "python3" / "site-packages"
    site.mkdir(parents=True)
    (site / "lazy_helper.py").write_text("VALUE = 42\n")
    checkout = base / "checkout"
    (checkout / "graders").mkdir(parents=True)
    (checkout / "graders" / "answers.py").write_text("SECRET = 1\n")
    secret = Path(tempfile.mkdtemp(prefix="dlgrade-secret-", dir="/tmp"))
    (secret / "answers.txt").write_text("not for students")
    for path in [base, secret, *base.rglob("*"), *secret.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # like a cloned checkout: readable by anyone on the host
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(checkout))
    backend = ProcessBackend()  # its zygote inherits sys.path, as an installed package would
    code = dedent(f"""
        import os
        def probe():
            import lazy_helper  # first imported inside the sandbox
            return [lazy_helper.VALUE, os.path.exists({str(secret / 'answers.txt')!r}), os.path.exists({str(checkout)!r})]
        """)
    sub = submission(backend, code)
    try:
        assert sub.call("m.probe") == [42, False, False]
    finally:
        sub.close()
        backend.shutdown()
        shutil.rmtree(base)
        shutil.rmtree(secret)


# ----------------------------------------------------------------------------- preloaded modules


def test_preloaded_modules_are_there_for_the_student_and_a_submitted_file_still_wins() -> None:
    """An assignment's ``[worker] preload``: the zygote imports the modules once and every worker starts with them,
    but a submission's own ``colorsys.py`` is what its ``import colorsys`` gets, as in a fresh interpreter; a
    module that cannot be imported is only recorded (the student's own import reports it, as without preload)."""
    backend = ProcessBackend(preload=("colorsys", "wave", "no_such_module_for_dlgrade"))
    code = """
        import sys

        def probe():
            before = ["colorsys" in sys.modules, "wave" in sys.modules]
            import colorsys
            import wave
            return before + [getattr(colorsys, "OWN", False), getattr(wave, "OWN", False), hasattr(wave, "open")]
        """
    spec = dataclasses.replace(make_spec(code), files={"m.py": dedent(code).encode(), "colorsys.py": b"OWN = True\n"})
    sub = Submission(backend, spec, call_timeout=10.0, submission_timeout=120.0)
    try:
        # wave stays the preloaded module; colorsys gives way to the submission's file
        assert sub.call("m.probe") == [False, True, True, False, True]
        assert backend.zygote_info["preloaded"] == ["colorsys", "wave", "no_such_module_for_dlgrade"]
        assert [f.split(":")[0] for f in backend.zygote_info["preload_failed"]] == ["no_such_module_for_dlgrade"]
    finally:
        sub.close()
        backend.shutdown()


@pytest.mark.parametrize("namespaces", [True, False], ids=["view", "nons"])
def test_matplotlib_preloaded_by_the_zygote_draws_text_inside_the_sandbox(namespaces: bool) -> None:
    """pyplot imported in the zygote knows the machine's fonts; a worker in its own file-system view (or, without
    namespaces, under Landlock's allow-list) must still be able to open them (a title and tick labels need a font)
    and to save a figure in its work dir."""
    pytest.importorskip("matplotlib")
    backend = ProcessBackend(namespaces=namespaces, preload=("matplotlib.pyplot",))
    code = """
        import os
        import sys

        def plot():
            preloaded = "matplotlib.pyplot" in sys.modules
            import matplotlib.pyplot as plt
            fig, ax = plt.subplots()
            ax.plot([1, 2, 3], [3, 1, 2])
            ax.set_title("training loss")
            fig.savefig("loss.png")
            plt.close(fig)
            return [preloaded, os.path.getsize("loss.png") > 1000]
        """
    sub = submission(backend, code, call_timeout=60.0)
    try:
        assert sub.call("m.plot") == [True, True]
    finally:
        sub.close()
        backend.shutdown()


@pytest.mark.parametrize("table, message", [
    ('preload = ["utils"]', "'utils' is a submitted module"),
    ('preload = ["matplotlib pyplot"]', "is not a module name"),
    ('preload = "nltk"\npreloda = []', r"unknown key\(s\) preloda"),
])
def test_bad_preload_settings_say_where(tmp_path: Path, table: str, message: str) -> None:
    from dlgrade.config import load_assignment
    from dlgrade.errors import ConfigError

    folder = tmp_path / "assignments" / "toy"
    folder.mkdir(parents=True)
    (folder / "assignment.toml").write_text(f'submit = ["utils.py", "model.py"]\n\n[worker]\n{table}\n')
    with pytest.raises(ConfigError, match=rf"assignment.toml \[worker\].*{message}"):
        load_assignment("toy", tmp_path)
