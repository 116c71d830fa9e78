"""Grading a class on a Slurm cluster (``dlgrade grade --executor slurm``, ``dlgrade status``).

The end-to-end test needs a running Slurm: ``.ci/run`` installs and starts a single-node cluster
(scripts/install_slurm.sh, scripts/start_slurm.sh); elsewhere it starts one when it can (as root with
Slurm installed) and is skipped otherwise, except in CI, where it must run.

The class: the reference, the blank skeleton, three catalogued bugs, two hostile submissions (one
tries to overwrite results in the shared results folder), and one whose code gets its own array task
killed: it fills memory from several processes, each within the sandbox's per-process limit, until
the whole task is over its ``--mem`` and Slurm kills it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, Hostile, grade_cli, load_hostile, materialise, run_dlgrade, write_files

from dlgrade.bugs import bug_submission, load_bugs
from dlgrade.config import AssignmentConfig, load_assignment
from dlgrade.errors import ConfigError
from dlgrade.executors import scheduler
from dlgrade.executors.manifest import runs
from dlgrade.executors.settings import slurm_settings
from dlgrade.release import reference_submission, skeleton_files

SEED = 4242
BUGS = ("unbiased_variance", "no_scaling", "lstm_returns_logits")
HOSTILE = ("writes_results_json", "nan_output")
KILLER = "z_task_killer"
REFERENCE = "a_reference"        # task 0: it starts first, and it is the task killed mid-run
# four processes of 1 GB each: every one is within the worker's address-space limit (3 GB), together they
# take the task over its default --mem (the worker's 3072 MB + 1024 MB) and Slurm kills the whole task
TASK_KILLER = Hostile(
    name=KILLER, files=("vit_solution.py",), score="zero", message="memory",
    find="        mean = inputs.mean(dim=-1, keepdim=True)  # (*dims, 1)",
    replace='''
        import os as _os
        import time as _time
        _children = []
        for _ in range(4):
            _pid = _os.fork()
            if _pid == 0:
                _block = b"x" * (1 << 30)
                _time.sleep(30)
                _os._exit(0)
            _children.append(_pid)
        for _pid in _children:
            _os.waitpid(_pid, 0)
        mean = inputs.mean(dim=-1, keepdim=True)  # (*dims, 1)''')


# ----------------------------------------------------------------------------- without a cluster


def test_settings_name_where_a_bad_value_came_from(cfg: AssignmentConfig) -> None:
    toml = cfg.assignment_dir / "assignment.toml"
    bad = {"students_per_task": 0}
    with pytest.raises(ConfigError, match=rf"{toml} \[slurm\]: students_per_task = 0: must be at least 1"):
        slurm_settings(_with_slurm(cfg, bad))
    with pytest.raises(ConfigError, match=r"\[slurm\]: unknown keys memory"):
        slurm_settings(_with_slurm(cfg, {"memory": 4096}))
    with pytest.raises(ConfigError, match=r"the command line \(--time\): time = '90 minutes'"):
        slurm_settings(cfg, time="90 minutes")
    s = slurm_settings(_with_slurm(cfg, {"time": "00:20:00", "partition": "gpu", "students_per_task": 2}), students_per_task=5)
    assert (s.time, s.partition, s.students_per_task) == ("00:20:00", "gpu", 5)  # the command line wins over the file
    assert s.mem_per_task_mb == cfg.limits.memory_mb + 1024 and s.cpus_per_task == cfg.limits.cpus
    assert "--gpus-per-task=1" in slurm_settings(cfg, gpus_per_task=1).sbatch_options()


def _with_slurm(cfg: AssignmentConfig, table: dict[str, Any]) -> AssignmentConfig:
    from dataclasses import replace

    return replace(cfg, raw={**cfg.raw, "slurm": table})


def test_without_slurm_the_command_says_where_to_run(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # a PATH with Python but no Slurm tools
    bin_dir.mkdir()
    proc = run_dlgrade("grade", "lstm_lm_vit", str(ROOT / "reference_solutions" / "lstm_lm_vit"), "--out", str(tmp_path / "out"),
                       "--executor", "slurm", env={"PATH": str(bin_dir)})
    assert proc.returncode == 2, proc.stderr
    assert "sbatch" in proc.stderr and "login node" in proc.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- a real single-node cluster


def require_slurm() -> None:
    """Start the single-node cluster if it is not up (root only); skip without Slurm, except in CI."""
    problem = scheduler.available()
    if problem is None:
        up = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
        if up.returncode == 0 and any(s.startswith(("idle", "mix", "alloc")) for s in up.stdout.split()):
            return
        problem = "the Slurm node is not up"
    if os.geteuid() == 0 and shutil.which("slurmctld"):
        start = subprocess.run(["bash", str(ROOT / "scripts" / "start_slurm.sh")], capture_output=True, text=True, timeout=180)
        if start.returncode == 0:
            return
        problem = f"scripts/start_slurm.sh failed: {start.stderr[-2000:]}"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the Slurm tests: {problem}")
    pytest.skip(f"{problem} (scripts/install_slurm.sh and scripts/start_slurm.sh set up a single-node cluster)")


def build_class(cfg: AssignmentConfig, dest: Path, results: Path) -> None:
    write_files(reference_submission(cfg), dest / REFERENCE)
    write_files({k: v for k, v in skeleton_files(cfg).items() if k in cfg.submit}, dest / "b_skeleton")
    bugs = {b.name: b for b in load_bugs(cfg)}
    for name in BUGS:
        write_files(bug_submission(cfg, bugs[name]), dest / f"bug_{name}")
    fixtures = {f.name: f for f in load_hostile()}
    for name in HOSTILE:
        materialise(cfg, fixtures[name], dest, {"OUT": str(results), "ROOT": str(ROOT)})
    materialise(cfg, TASK_KILLER, dest, {})


def _results(folder: Path, student: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / student / "results.json").read_text())
    return data


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    """A results.json without what timing changes (execution time, per-test seconds)."""
    tests = [{k: v for k, v in t.items() if k != "seconds"} for t in data["extra_data"]["tests"]]
    return {"score": data["score"], "output": data["output"], "tests": data["tests"], "detail": tests,
            "status": data["extra_data"]["status"], "seed": data["extra_data"]["seed"]}


def _slurm(subs: Path, out: Path, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return run_dlgrade("grade", "lstm_lm_vit", str(subs), "--out", str(out), "--executor", "slurm", "--seed", str(SEED),
                       "--students-per-task", "1", "--cpus-per-task", "1", "--max-concurrent", "2", *extra, timeout=timeout)


def _running(job: str) -> int:
    proc = subprocess.run(["squeue", "-h", "-r", "-j", job, "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True)
    return len(proc.stdout.split()) if proc.returncode == 0 else 0


@pytest.mark.slow
def test_class_on_slurm_equals_local_survives_a_killed_task_and_resumes(tmp_path: Path) -> None:
    require_slurm()
    cfg = load_assignment("lstm_lm_vit", ROOT)
    subs, out = tmp_path / "submissions", tmp_path / "slurm-results"
    build_class(cfg, subs, out)
    students = sorted(p.name for p in subs.iterdir())
    assert len(students) >= 8

    # 1. submit, watch two tasks run at once, scancel the reference's task once it has finished a few tests
    first = _slurm(subs, out)
    assert first.returncode == 0, first.stdout + first.stderr
    m = runs(out)[-1]
    assert "Submitted 8 student(s) in 8 array task(s)" in first.stdout and m.array_job in first.stdout
    assert m.shards[0] == (REFERENCE,)
    most, killed_after, deadline = 0, -1, time.monotonic() + 420
    while time.monotonic() < deadline:
        most = max(most, _running(m.array_job))
        partial = out / REFERENCE / "results.json"
        if killed_after < 0 and partial.is_file():
            tests = _results(out, REFERENCE)["extra_data"]["tests"]
            if len(tests) >= 3:
                scheduler.scancel(f"{m.array_job}_0")
                killed_after = len(tests)
        states, _ = scheduler.task_states([m.array_job, m.collect_job])
        if m.collect_job in states and not states[m.collect_job].active:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"the run did not end within 7 minutes: {scheduler.task_states([m.array_job, m.collect_job])}")
    assert states[m.collect_job].state == "COMPLETED", states
    assert killed_after >= 3, "the reference's task was never seen running"
    assert most >= 2, "never two array tasks running at once"
    assert states[f"{m.array_job}_0"].state == "CANCELLED"
    assert states[f"{m.array_job}_{len(m.shards) - 1}"].state == "OUT_OF_MEMORY", states

    # the cancelled student kept the tests it finished, in a valid file marked incomplete
    cut = _results(out, REFERENCE)
    assert cut["extra_data"]["complete"] is False and len(cut["extra_data"]["tests"]) >= killed_after
    kept = {t["nodeid"]: t["seconds"] for t in cut["extra_data"]["tests"]}
    # the task killer is final: the tests it reached before the kill, the rest 0 with the reason
    killer = _results(out, KILLER)
    assert killer["extra_data"]["status"] == "stopped" and killer["extra_data"]["complete"] is True
    assert "more memory than the grading task's 4096 MB" in killer["extra_data"]["reason"]
    assert killer["score"] < killer["extra_data"]["max_score"] == _results(out, "b_skeleton")["extra_data"]["max_score"]
    with (out / "grades.csv").open() as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert sorted(rows) == students
    assert rows[REFERENCE]["status"].startswith("not finished: its grading task") and "CANCELLED" in rows[REFERENCE]["status"]
    assert rows[KILLER]["status"].startswith("stopped: grading this submission used more memory")
    status = run_dlgrade("status", str(out))
    assert status.returncode == 0, status.stderr
    assert "8 student(s): 6 done, 0 running, 0 queued, 2 failed, 0 missing" in status.stdout, status.stdout
    assert "task states from sacct" in status.stdout

    # 2. the same command again submits only the cancelled student, which resumes where it was cut off
    again = _slurm(subs, out, "--wait")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Submitted 1 student(s) in 1 array task(s)" in again.stdout and "7 already complete" in again.stdout
    assert runs(out)[-1].shards == ((REFERENCE,),)
    done = _results(out, REFERENCE)
    assert done["extra_data"]["complete"] is True and done["score"] == done["extra_data"]["max_score"]
    assert {t["nodeid"]: t["seconds"] for t in done["extra_data"]["tests"][:len(kept)]} == kept  # resumed, not regraded
    assert "8 student(s): 7 done, 0 running, 0 queued, 1 failed, 0 missing" in run_dlgrade("status", str(out)).stdout

    # 3. and once more: nothing left to submit
    last = _slurm(subs, out)
    assert last.returncode == 0 and "Nothing to submit: all 8 student(s) have complete results" in last.stdout, last.stdout

    # no hostile code got anything written into the shared results folder
    for student in students:
        printed = (out / student / "student_output.txt")
        assert "HOSTILE-SUCCESS" not in (printed.read_text(errors="replace") if printed.is_file() else "")
    assert json.loads((out / "writes_results_json" / "results.json").read_text())["score"] < 9999

    # 4. the same class graded locally with the same seed: every student's results are the same, test by test
    local_subs = tmp_path / "local-submissions"
    shutil.copytree(subs, local_subs, ignore=shutil.ignore_patterns(KILLER))
    local = grade_cli(local_subs, tmp_path / "local-results", "--seed", str(SEED), "-j", "2", "--no-report", timeout=600)
    for student in students:
        if student == KILLER:
            continue
        assert _comparable(_results(out, student)) == _comparable(local.results(student)), student


# ----------------------------------------------------------------------------- jobs of an unprivileged user

USER = "dlgrade-slurm-user"


def _as_user(*cmd: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", USER, "--", *cmd], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HOME": "/tmp"})


def _shared_python(base: Path) -> Path:
    """An interpreter the unprivileged user can run: a venv on a world-readable copy of this Python (without its own
    site-packages), seeing this checkout's venv packages, as a venv on a cluster's shared storage would."""
    import sys
    import sysconfig

    copy = base / "python"
    shutil.copytree(sys.base_prefix, copy, symlinks=True,
                    ignore=lambda d, names: [n for n in names if n in ("site-packages", "test", "__pycache__", "idlelib")])
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(copy / "bin" / version), "-m", "venv", "--without-pip", str(base / "venv")], check=True,
                   capture_output=True, env={**os.environ, "LD_LIBRARY_PATH": str(copy / "lib")})
    site = base / "venv" / "lib" / version / "site-packages"
    (site / "dlgrade_shared.pth").write_text(f"import site; site.addsitedir({sysconfig.get_paths()['purelib']!r})\n")
    return base / "venv" / "bin" / "python"


@pytest.mark.slow
def test_slurm_tasks_of_an_unprivileged_user_grade_isolated() -> None:
    """On a cluster, jobs run as the instructor, not as root: the process sandbox's rootless mode (user
    namespaces) must still keep the hidden tests and the reference out of the worker's sight, although the
    instructor's own uid, which the worker maps to, can read them."""
    require_slurm()
    if os.geteuid() != 0 or shutil.which("runuser") is None or shutil.which("useradd") is None:
        pytest.skip("needs root, runuser and useradd to submit as an unprivileged user")
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
    base = Path(tempfile.mkdtemp(prefix="dlgrade-slurm-user-", dir="/tmp"))
    try:
        base.chmod(0o755)
        python = _shared_python(base)
        probe = _as_user(str(python), "-c", "import dlgrade.executors.task, torch; open('graders/lstm_lm_vit/test_vit.py')")
        if probe.returncode != 0:
            pytest.skip(f"the checkout or its packages are not readable by an unprivileged user: {probe.stderr[-500:]}")
        cfg = load_assignment("lstm_lm_vit", ROOT)
        subs, out = base / "submissions", base / "results"
        write_files(reference_submission(cfg), subs / REFERENCE)
        fixtures = {f.name: f for f in load_hostile()}
        for name in ("reads_hidden_tests", "reads_reference_solution"):
            materialise(cfg, fixtures[name], subs, {"ROOT": str(ROOT)})
        out.mkdir()
        subprocess.run(["chown", "-R", USER, str(subs), str(out)], check=True)

        run = _as_user(str(python), "-m", "dlgrade", "grade", "lstm_lm_vit", str(subs), "--out", str(out), "--executor", "slurm",
                       "--seed", str(SEED), "--students-per-task", "3", "--cpus-per-task", "1", "--wait")
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        m = runs(out)[-1]
        log = (m.folder / "logs" / f"task-{m.array_job}_0.out").read_text()
        uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout)
        assert f"isolation: rootless (user namespaces)), uid {uid}" in log, log
        accounted = subprocess.run(["sacct", "-n", "-X", "-P", "-j", m.array_job, "-o", "User"], capture_output=True, text=True)
        assert accounted.stdout.split() == [USER], accounted.stdout
        for student in sorted(p.name for p in subs.iterdir()):
            data = _results(out, student)
            assert (out / student / "results.json").stat().st_uid == uid
            assert data["score"] == data["extra_data"]["max_score"] > 0, (student, data["output"])
            assert not data["extra_data"]["warnings"], data["extra_data"]["warnings"]
            printed = (out / student / "student_output.txt").read_text() if (out / student / "student_output.txt").is_file() else ""
            assert "HOSTILE-SUCCESS" not in printed
            if student != REFERENCE:
                assert "HOSTILE-BLOCKED" in printed, printed[-2000:]
    finally:
        shutil.rmtree(base, ignore_errors=True)
