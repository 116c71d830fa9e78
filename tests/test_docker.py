"""The `docker` sandbox: container configuration (no engine needed) and real containers (engine needed).

The hostile fixtures run in Docker too, in ``test_hostile.py`` (its batch is parametrised by sandbox).
Tests marked `docker` skip without an engine and the image, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from textwrap import dedent

import pytest
from conftest import ROOT, check_gradescope, docker_containers, grade_cli, require_docker, run_dlgrade, write_files

from dlgrade.cli import build_parser, grade_options
from dlgrade.config import load_assignment
from dlgrade.release import reference_submission
from dlgrade.sandbox import WorkerSpec
from dlgrade.sandbox.docker import (
    CPU_IMAGE,
    GPU_IMAGE,
    RUNTIME_ALLOWANCE_MB,
    DockerOptions,
    container_config,
    worker_code_dir,
)
from dlgrade.tomlcompat import tomllib


def _options(*argv: str) -> tuple[DockerOptions, str, WorkerSpec]:
    """What `dlgrade grade ARGS` hands the docker backend: its options, the device, a spec with the limits."""
    args = build_parser().parse_args(["grade", "lstm_lm_vit", "subs", "--sandbox", "docker", *argv])
    cfg, opts = grade_options(args)
    lim = cfg.limits
    spec = WorkerSpec(files={}, modules=cfg.modules, memory_mb=lim.memory_mb, processes=lim.processes,
                      file_size_mb=lim.file_size_mb, threads=lim.cpus, device=opts.device)
    return DockerOptions(**dict(opts.backend_options)), opts.device, spec


def _config(*argv: str) -> dict:  # type: ignore[type-arg]
    docker_opts, _device, spec = _options(*argv)
    return container_config(spec, docker_opts, "/host/slot", "/host/code", {"dlgrade.batch": "b"})


# ----------------------------------------------------------------------------- without an engine


def test_gpu_flag_reaches_the_container_configuration() -> None:
    """--gpus all / N becomes a GPU device request, the GPU image and a worker on cuda; no flag, none."""
    for argv, count in ((("--gpus", "all"), -1), (("--gpus", "2"), 2)):
        docker_opts, device, _spec = _options(*argv)
        cfg = _config(*argv)
        assert device == "cuda" and cfg["image"] == GPU_IMAGE
        [request] = cfg["device_requests"]
        assert request["Count"] == count and request["Capabilities"] == [["gpu"]]
    cfg = _config()
    assert cfg["device_requests"] == [] and cfg["image"] == CPU_IMAGE
    assert _options()[1] == "cpu"
    assert _config("--gpus", "1", "--image", "lab/sandbox:cuda")["image"] == "lab/sandbox:cuda"
    with pytest.raises(ValueError, match="all' or a number"):
        _config("--gpus", "many")


def test_gpus_without_docker_is_refused() -> None:
    proc = run_dlgrade("grade", "lstm_lm_vit", str(ROOT / "nothing"), "--gpus", "all", timeout=120)
    assert proc.returncode == 2
    assert "--gpus is for --sandbox docker" in proc.stderr and "--device cuda" in proc.stderr


def test_container_is_confined_with_the_assignment_limits() -> None:
    cfg = _config()
    lim = load_assignment("lstm_lm_vit").limits
    assert cfg["network_mode"] == "none" and cfg["read_only"] is True
    # the init and `timeout` stay root (not the worker's to signal); the worker drops to 10001 with these capabilities
    assert cfg["user"] == "0:0" and cfg["cap_add"] == ["SETUID", "SETGID", "SETPCAP"]
    assert cfg["cap_drop"] == ["ALL"] and cfg["security_opt"] == ["no-new-privileges"]
    assert cfg["mem_limit"] == cfg["memswap_limit"] == f"{lim.memory_mb + RUNTIME_ALLOWANCE_MB}m"
    assert cfg["pids_limit"] == lim.processes
    assert cfg["nano_cpus"] == lim.cpus * 10**9
    assert set(cfg["tmpfs"]) == {"/tmp", "/dev/shm"}
    assert all(v["mode"] == "ro" for v in cfg["volumes"].values())
    assert {v["bind"] for v in cfg["volumes"].values()} == {"/submission", "/opt/dlgrade"}
    assert cfg["labels"]["dlgrade.batch"] == "b"
    # a hard wall-clock life, so that a container outlives a killed grader by minutes at most
    assert cfg["entrypoint"][:3] == ["timeout", "-s", "KILL"] and cfg["entrypoint"][-2:] == ["-m", "dlgrade.worker.main"]
    # the command line overrides the assignment
    cfg = _config("--memory-mb", "1000", "--pids", "16", "--cpus", "3")
    assert cfg["mem_limit"] == f"{1000 + RUNTIME_ALLOWANCE_MB}m" and cfg["pids_limit"] == 16 and cfg["nano_cpus"] == 3 * 10**9


def test_only_the_worker_code_is_mounted(tmp_path: Path) -> None:
    root = Path(worker_code_dir(tmp_path / "code"))
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.py"))
    assert "dlgrade/protocol.py" in files and "dlgrade/worker/main.py" in files
    assert all(f.startswith("dlgrade/worker/") or f in ("dlgrade/__init__.py", "dlgrade/protocol.py") for f in files), files


def test_worker_image_pins_match_the_project() -> None:
    pins = {line.split("==")[0]: line for line in (ROOT / "sandbox/requirements-worker.txt").read_text().split()
            if "==" in line}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for name in ("torch", "numpy", "nltk"):
        assert pins[name] in project, f"sandbox/requirements-worker.txt pins {pins[name]}, pyproject.toml does not"


def test_missing_engine_is_explained(tmp_path: Path) -> None:
    sub = write_files(reference_submission(load_assignment("lstm_lm_vit")), tmp_path / "alice")
    proc = run_dlgrade("grade", "lstm_lm_vit", str(sub), "--out", str(tmp_path / "out"), "--sandbox", "docker",
                       env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Docker engine" in proc.stderr and "--sandbox process" in proc.stderr and "dockerd" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "alice").exists()


# ----------------------------------------------------------------------------- real containers


@pytest.fixture(scope="module")
def engine() -> None:
    require_docker()


@pytest.mark.docker
@pytest.mark.slow
def test_reference_scores_full_marks_in_docker(engine: None, tmp_path: Path) -> None:
    cfg = load_assignment("lstm_lm_vit")
    sub = write_files(reference_submission(cfg), tmp_path / "subs" / "alice")
    run = grade_cli(sub.parent, tmp_path / "out", "--sandbox", "docker", "--seed", "7", "--no-report")
    data = run.results("alice")
    check_gradescope(data)
    assert data["score"] == data["extra_data"]["max_score"] > 0, [t["output"][:200] for t in data["tests"] if t["status"] != "passed"]
    assert data["extra_data"]["warnings"] == []
    assert docker_containers() == []

    # a second run skips the complete result; --force grades again
    before = (tmp_path / "out" / "alice" / "results.json").stat().st_mtime_ns
    again = grade_cli(sub.parent, tmp_path / "out", "--sandbox", "docker", "--seed", "7", "--no-report")
    assert "1 already complete" in again.stdout
    assert (tmp_path / "out" / "alice" / "results.json").stat().st_mtime_ns == before
    grade_cli(sub.parent, tmp_path / "out", "--sandbox", "docker", "--seed", "7", "--force", "--no-report")
    assert (tmp_path / "out" / "alice" / "results.json").stat().st_mtime_ns != before


PROBE = r'''
import json, os, socket

found = []
for top in ("/", ):
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath.startswith(("/proc", "/sys", "/dev")):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            if name in ("graders", "reference_solutions", "bugs.toml", "CALIBRATION.md", "test_thresholds.py",
                        "assignment.toml", "results.json", "grades.csv") or name.endswith("_solution.py"):
                found.append(os.path.join(dirpath, name))

def attempt(what, fn):
    try:
        fn()
        return f"{what}: worked"
    except OSError as exc:
        return f"{what}: {type(exc).__name__}"

def connect():
    socket.create_connection(("8.8.8.8", 53), timeout=2).close()

def write_root():
    open("/usr/hostile.txt", "w").close()

def write_submission():
    open("/submission/hostile.txt", "w").close()

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()


def environ(pid):
    try:
        return sorted(v.split(b"=", 1)[0].decode() for v in open(f"/proc/{pid}/environ", "rb").read().split(b"\0") if v)
    except OSError as exc:
        return type(exc).__name__


sockets = [os.path.join(d, n) for d, _, names in os.walk("/") if not d.startswith(("/proc", "/sys"))
           for n in names if n.endswith(".sock") or n in ("docker.sock", "containerd.sock")]
REPORT = json.dumps({"uid": os.getuid(), "found": found, "net": attempt("net", connect),
                     "root_fs": attempt("root", write_root), "submission": attempt("sub", write_submission),
                     "tmp_writable": os.access("/tmp", os.W_OK), "cwd": os.getcwd(),
                     "mounts": sorted({line.split()[4] for line in open("/proc/self/mountinfo")}),
                     "sockets": sockets, "env": sorted(os.environ), "env_of_1": environ(1),
                     "caps": status("CapEff"), "bounding": status("CapBnd"), "no_new_privs": status("NoNewPrivs"),
                     "seccomp": status("Seccomp"),
                     "interfaces": sorted(line.split(":")[0].strip() for line in open("/proc/net/dev").readlines()[2:]),
                     "processes": sorted(p for p in os.listdir("/proc") if p.isdigit())})


def report():
    return REPORT
'''


@pytest.mark.docker
def test_a_warm_container_has_imported_the_preload_and_the_submission_s_own_file_still_wins(engine: None) -> None:
    """[worker] preload in docker: the container imports the modules while it waits (as the process sandbox's zygote
    does once), the variable that carried them is gone before student code runs, and a submitted colorsys.py is what
    the student's ``import colorsys`` gets."""
    from dlgrade.sandbox import get_backend

    code = dedent("""
        import os
        import sys

        def probe():
            before = ["colorsys" in sys.modules, "wave" in sys.modules, "DLGRADE_PRELOAD" in os.environ]
            import colorsys
            return before + [getattr(colorsys, "OWN", False)]
        """)
    backend = get_backend("docker", preload=("colorsys", "wave"))
    try:
        worker = backend.start(WorkerSpec(files={"probe.py": code.encode(), "colorsys.py": b"OWN = True\n"}, modules=("probe",)))
        try:
            reply = worker.request({"op": "call", "target": "probe.probe", "args": [], "kwargs": {}}, 60)
        finally:
            worker.close()
    finally:
        backend.shutdown()
    assert reply.get("ok"), reply
    assert reply["value"] == [False, True, False, True]
    assert _config()["environment"].get("DLGRADE_PRELOAD") is None  # no preload, no variable


@pytest.mark.docker
@pytest.mark.slow
def test_container_holds_no_hidden_tests_or_reference(engine: None) -> None:
    """Inside the container: no grader or reference file anywhere, non-root, no network, read-only but /tmp;
    of the host it sees no mount but its own two, no engine socket, no environment, no process, no capability."""
    from dlgrade.sandbox import get_backend

    os.environ["DLGRADE_TEST_HOST_SECRET"] = "not for containers"

    backend = get_backend("docker")
    try:
        worker = backend.start(WorkerSpec(files={"probe.py": PROBE.encode()}, modules=("probe",)))
        try:
            reply = worker.request({"op": "call", "target": "probe.report", "args": [], "kwargs": {}}, 60)
            assert reply.get("ok"), reply
            report = json.loads(reply["value"])
        finally:
            worker.close()
    finally:
        backend.shutdown()
        os.environ.pop("DLGRADE_TEST_HOST_SECRET", None)
    assert report["found"] == [], report["found"]
    assert report["uid"] != 0
    assert report["net"] != "net: worked" and report["root_fs"] == "root: OSError" and report["submission"] == "sub: OSError"
    assert report["tmp_writable"] is True
    # what the container sees of the host: its own mounts only, no engine socket, none of the grader's environment
    allowed = {"/", "/tmp", "/dev", "/dev/shm", "/dev/pts", "/dev/mqueue", "/dev/console", "/proc", "/sys", "/sys/fs/cgroup",
               "/submission", "/opt/dlgrade", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/sbin/docker-init",
               "/usr/sbin/docker-init"}  # docker-init (tini, --init): /sbin or /usr/sbin, as the engine installs it
    unexpected = [m for m in report["mounts"] if m not in allowed and not m.startswith(("/proc/", "/sys/", "/dev/"))]
    assert unexpected == [], unexpected
    assert report["sockets"] == []
    assert "DLGRADE_TEST_HOST_SECRET" not in report["env"] and "DLGRADE_TEST_HOST_SECRET" not in str(report["env_of_1"])
    assert int(report["caps"], 16) == 0 and int(report["bounding"], 16) == 0
    assert report["no_new_privs"] == "1" and report["seccomp"] == "2"  # Docker's default seccomp profile is in force
    assert report["interfaces"] == ["lo"]
    assert len(report["processes"]) <= 4, report["processes"]  # its init, the time limit, the worker: nothing of the host
    assert docker_containers() == []


@pytest.mark.slow
@pytest.mark.parametrize("sandbox", ["process", pytest.param("docker", marks=pytest.mark.docker)])
def test_ctrl_c_stops_the_batch_at_once_and_leaves_nothing_behind(sandbox: str, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the foreground job) ends a -j 2 batch within seconds: exit code 130, no
    traceback, no half-graded student recorded as complete, and (docker) no container left."""
    if sandbox == "docker":
        require_docker()
    cfg = load_assignment("lstm_lm_vit")
    ref = reference_submission(cfg)
    looping = ref["lstm_solution.py"].replace(b"import torch\n", b"import torch\nwhile True:\n    pass\n", 1)
    for i in range(4):
        write_files({**ref, "lstm_solution.py": looping}, tmp_path / "subs" / f"loop{i}")
    proc = subprocess.Popen([sys.executable, "-m", "dlgrade", "grade", "lstm_lm_vit", str(tmp_path / "subs"), "--out",
                             str(tmp_path / "out"), "--sandbox", sandbox, "-j", "2", "--call-timeout", "60", "--no-report"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        if sandbox == "docker":
            deadline = time.monotonic() + 120
            while len(docker_containers()) < 2 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
            assert len(docker_containers()) >= 2, "the batch never started its containers"
        time.sleep(8)  # the students are inside their 60 s import time-out now
        interrupted = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does to the foreground job
        _out, err = proc.communicate(timeout=120)
        took = time.monotonic() - interrupted
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert err.strip() == "dlgrade: interrupted", err[-3000:]
    assert took < 30, f"the batch took {took:.0f} s to stop"
    assert not list((tmp_path / "out").glob("*/results.json")), "an interrupted student was recorded as graded"
    if sandbox == "docker":
        deadline = time.monotonic() + 20
        while docker_containers() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert docker_containers() == [], "containers survived the interrupted batch"


@pytest.mark.docker
@pytest.mark.slow
def test_containers_of_a_killed_grader_are_removed_by_the_next_batch(engine: None) -> None:
    """A grader killed with SIGKILL cannot clean up; the next backend on this host removes what it left."""
    import socket

    import docker

    from dlgrade.sandbox import get_backend
    from dlgrade.sandbox.docker import OWNER_LABEL

    dead_pid = 2**22 + 17  # above the kernel's largest possible pid_max: never a live process
    client = docker.from_env()
    box = client.containers.run(CPU_IMAGE, entrypoint=["sleep", "300"], detach=True, network_mode="none",
                                labels={"dlgrade.worker": "1", "dlgrade.batch": "orphan-test",
                                        OWNER_LABEL: f"{socket.gethostname()}:{dead_pid}"})
    try:
        assert docker_containers("orphan-test") == [box.short_id]
        get_backend("docker").shutdown()
        assert docker_containers("orphan-test") == []
    finally:
        try:
            box.remove(force=True)
        except Exception:
            pass
