"""The Gradescope bundle, run the way Gradescope runs it.

`dlgrade bundle` builds autograder.zip (twice: byte-identical); the zip is unpacked into
``<root>/autograder/source``, ``setup.sh`` installs it (offline, from a local wheelhouse), and
``run_autograder`` grades one submission at a time from ``<root>/autograder/submission`` into
``<root>/autograder/results/results.json``: the reference, a catalogued bug, hostile and broken
submissions, with and without namespaces (Gradescope's containers refuse unshare).

Needs root (setup.sh creates the worker user) and a torch CPU wheel for the interpreter: from
/opt/wheels (or $DLGRADE_TORCH_WHEELS), else downloaded once from download.pytorch.org (skipped
when neither works); the other wheels are downloaded once from PyPI into ~/.cache/dlgrade/wheelhouse.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ASSIGNMENT, ROOT, check_gradescope

from dlgrade.config import load_assignment
from dlgrade.release import reference_submission
from dlgrade.validate import bug_submission, load_bugs

WORKER = "dlgrade-bundle-test"
TORCH_WHEELS = Path(os.environ.get("DLGRADE_TORCH_WHEELS", "/opt/wheels"))
CACHE = Path.home() / ".cache" / "dlgrade" / "wheelhouse"


def _python() -> tuple[str, str] | None:
    """An interpreter every user can run (as Ubuntu's /usr/bin/python3 on Gradescope) and its wheel tag.

    Preferred: one with a torch CPU wheel in /opt/wheels (or the cache); else the first usable one,
    whose wheel the fixture then tries to download from download.pytorch.org.
    """
    found = []
    for cand in ("/usr/bin/python3", "/usr/bin/python3.11", "/usr/bin/python3.10", sys.executable):
        if not os.access(cand, os.X_OK):
            continue
        tag = subprocess.run([cand, "-c", "import sys; print(f'cp{sys.version_info[0]}{sys.version_info[1]}')"],
                             capture_output=True, text=True).stdout.strip()
        if tag.startswith("cp3") and int(tag[3:] or 0) >= 10:
            found.append((cand, tag))
    for cand, tag in found:
        if _torch_wheel(tag) is not None:
            return cand, tag
    return found[0] if found else None


def _torch_wheel(tag: str) -> Path | None:
    for folder in (TORCH_WHEELS, CACHE / tag):
        wheels = sorted(folder.glob(f"torch-2.13.0*-{tag}-{tag}-*x86_64.whl")) if folder.is_dir() else []
        if wheels:
            return wheels[0]
    return None


PYTHON = _python()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="setup.sh creates a user and run_autograder runs as root, as on Gradescope"),
    pytest.mark.skipif(PYTHON is None, reason="no Python 3.10+ that every user can run"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="setup.sh needs useradd"),
]


def _wheelhouse(requirements: str, python: str, tag: str) -> Path:
    """torch's CPU wheel (local, or downloaded once from download.pytorch.org), the rest downloaded once from PyPI."""
    house = CACHE / tag
    house.mkdir(parents=True, exist_ok=True)
    torch_wheel = _torch_wheel(tag)
    if torch_wheel is None:
        proc = subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "-d", str(house), "--index-url",
                               "https://download.pytorch.org/whl/cpu", "torch==2.13.0"], capture_output=True, text=True, timeout=600)
        torch_wheel = _torch_wheel(tag)
        if torch_wheel is None:
            pytest.skip(f"no torch 2.13.0 CPU wheel for {tag} in {TORCH_WHEELS} and none downloadable: {proc.stderr[-300:]}")
    if not (house / torch_wheel.name).exists():
        (house / torch_wheel.name).symlink_to(torch_wheel)
    rest = [line for line in requirements.splitlines() if line and not line.startswith(("#", "torch=="))]
    req = house / "requirements.txt"
    if not req.exists() or req.read_text() != "\n".join(rest):
        proc = subprocess.run([python, "-m", "pip", "download", "-q", "--no-deps", "-d", str(house), *rest],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        req.write_text("\n".join(rest))
    return house


def _run(script: Path, root: Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script)], cwd="/", capture_output=True, text=True, timeout=timeout,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AUTOGRADER_ROOT": str(root), **env})


@pytest.fixture(scope="module")
def autograder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Build the bundle twice, unpack it into Gradescope's layout, run setup.sh; yields /autograder's stand-in."""
    assert PYTHON is not None
    python, tag = PYTHON
    builds = tmp_path_factory.mktemp("bundles")
    zips = []
    for n in ("a", "b"):
        proc = subprocess.run([sys.executable, "-m", "dlgrade", "bundle", ASSIGNMENT, "--out", str(builds / n)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "autograder.zip" in proc.stdout
        zips.append(builds / n / ASSIGNMENT / "autograder.zip")
    assert zips[0].read_bytes() == zips[1].read_bytes(), "two builds of the same tree differ"

    with zipfile.ZipFile(zips[0]) as zf:
        names = zf.namelist()
        requirements = zf.read("requirements.txt").decode()
        bundle = json.loads(zf.read("bundle.json"))
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
    assert names == sorted(names) and {"setup.sh", "run_autograder", "requirements.txt"} <= set(names)
    assert modes["setup.sh"] == modes["run_autograder"] == 0o755
    assert not [n for n in names if "__pycache__" in n or n.startswith("dist/") or n.endswith(".pyc")]
    assert f"graders/{ASSIGNMENT}/bugs.toml" in names and f"reference_solutions/{ASSIGNMENT}/vit_solution.py" in names
    assert "torch==2.13.0" in requirements.splitlines()
    assert bundle["limits"]["memory_mb"] <= 512 and bundle["run_timeout_s"] < 600  # fits Gradescope's default container

    # a root every user may traverse (the venv lives in it), unlike pytest's 700 temp folder
    base = Path(tempfile.mkdtemp(prefix="dlgrade-gs-", dir="/tmp"))
    base.chmod(0o755)
    root = base / "autograder"
    for sub in ("source", "submission", "results"):
        (root / sub).mkdir(parents=True)
    root.chmod(0o755)
    with zipfile.ZipFile(zips[0]) as zf:
        zf.extractall(root / "source")
    # the worker user of this test, so that a machine's real dlgrade-worker is left alone
    bundle["worker_user"] = WORKER
    (root / "source" / "bundle.json").write_text(json.dumps(bundle, indent=2, sort_keys=True))
    existed = _user_exists(WORKER)
    try:
        house = _wheelhouse(requirements, python, tag)
        proc = _run(root / "source" / "setup.sh", root, DLGRADE_PYTHON=python, DLGRADE_WHEELHOUSE=str(house))
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert _user_exists(WORKER) and pwd.getpwnam(WORKER).pw_uid != 0
        assert (root / "source").stat().st_mode & 0o777 == 0o700
        yield root
    finally:
        shutil.rmtree(base, ignore_errors=True)
        if not existed and _user_exists(WORKER):
            subprocess.run(["userdel", WORKER], capture_output=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def submit(root: Path, files: dict[str, bytes], namespaces: bool = True, metadata: dict[str, object] | None = None) -> dict:
    """Place a submission as Gradescope does, run run_autograder, return the parsed results.json."""
    sub = root / "submission"
    shutil.rmtree(sub)
    sub.mkdir()
    for rel, data in files.items():
        (sub / rel).parent.mkdir(parents=True, exist_ok=True)
        (sub / rel).write_bytes(data)
    (root / "submission_metadata.json").write_text(json.dumps(metadata or {"id": 1001, "users": [{"id": 7, "name": "A Student",
                                                                                                     "email": "s@example.com"}]}))
    results = root / "results" / "results.json"
    results.unlink(missing_ok=True)
    env = {} if namespaces else {"DLGRADE_NAMESPACES": "0"}
    proc = _run(root / "source" / "run_autograder", root, timeout=620, **env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert results.is_file(), f"run_autograder wrote no results.json:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    data = json.loads(results.read_text())
    assert isinstance(data.get("score"), (int, float)) and isinstance(data.get("output"), str)
    return data


@pytest.fixture(scope="module")
def reference() -> dict[str, bytes]:
    return reference_submission(load_assignment(ASSIGNMENT, ROOT))


def test_reference_gets_full_marks(autograder: Path, reference: dict[str, bytes]) -> None:
    data = submit(autograder, reference)
    check_gradescope(data)
    assert data["score"] == data["extra_data"]["max_score"] > 0, data["output"]
    assert data["extra_data"]["gradescope"] == {"submission_id": 1001, "created_at": None, "users": [{"id": 7, "name": "A Student"}]}
    assert "s@example.com" not in json.dumps(data)
    assert len(json.dumps(data)) <= 200_000


def test_a_catalogued_bug_gets_partial_marks(autograder: Path) -> None:
    cfg = load_assignment(ASSIGNMENT, ROOT)
    bug = next(b for b in load_bugs(cfg) if b.name == "unbiased_variance")
    data = submit(autograder, bug_submission(cfg, bug))
    check_gradescope(data)
    assert 0 < data["score"] < data["extra_data"]["max_score"]
    failed = [t["name"] for t in data["tests"] if t["status"] == "failed"]
    assert failed and all("LayerNorm" in name or "ViT" in name or "Vision" in name for name in failed), failed


HOSTILE = '''
import json as _json, os as _os

_AG = {root!r}


def _attack():
    """Every line that works sabotages this module, so full marks prove that all of them failed."""
    broke = []
    for label, action in [
        ("list the bundle", lambda: _os.listdir(_AG + "/source")),
        ("read a hidden test", lambda: open(_AG + "/source/graders/lstm_lm_vit/test_lstm.py").read()),
        ("read the reference", lambda: open(_AG + "/source/reference_solutions/lstm_lm_vit/lstm_solution.py").read()),
        ("read the metadata", lambda: open(_AG + "/submission_metadata.json").read()),
        ("write results.json", lambda: open(_AG + "/results/results.json", "w").write(_json.dumps({{"score": 1000}}))),
        ("plant a file in results", lambda: open(_AG + "/results/extra.json", "w").write("{{}}")),
        ("move the results folder", lambda: _os.rename(_AG + "/results", _AG + "/results-old")),
        ("change run_autograder", lambda: open(_AG + "/source/run_autograder", "a").write("echo pwned")),
    ]:
        try:
            action()
            broke.append(label)
        except OSError:
            pass
    if open("/proc/self/oom_score_adj").read().strip() != "1000":
        broke.append("not the first victim of the container's OOM killer")
    return broke


_BROKE = _attack()
if _BROKE:
    raise RuntimeError("HOSTILE-SUCCESS: " + ", ".join(_BROKE))
print(_json.dumps({{"score": 1000, "tests": [], "output": "fake"}}))
'''


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "no-namespaces"])
def test_hostile_submission_cannot_read_the_bundle_or_write_the_results(autograder: Path, reference: dict[str, bytes],
                                                                       namespaces: bool) -> None:
    """Without namespaces (Gradescope's containers) file permissions and the worker user must hold alone."""
    files = dict(reference)
    files["lstm_solution.py"] = HOSTILE.format(root=str(autograder)).encode() + files["lstm_solution.py"]
    before = sorted(p.name for p in (autograder / "results").iterdir())
    data = submit(autograder, files, namespaces=namespaces)
    check_gradescope(data)
    assert "HOSTILE-SUCCESS" not in json.dumps(data)
    assert data["score"] == data["extra_data"]["max_score"] and data["score"] < 1000, data["output"]
    assert sorted(p.name for p in (autograder / "results").iterdir()) == sorted({*before, "results.json"})
    assert not (autograder / "results-old").exists()
    assert "pwned" not in (autograder / "source" / "run_autograder").read_text()
    if not namespaces:
        assert any("namespace" in w for w in data["extra_data"]["warnings"]), data["extra_data"]["warnings"]
    ps = subprocess.run(["ps", "-u", WORKER, "-o", "pid="], capture_output=True, text=True)
    assert not ps.stdout.strip(), f"processes of {WORKER} outlived the run: {ps.stdout}"


def test_worker_killing_submission_still_gets_valid_results(autograder: Path, reference: dict[str, bytes]) -> None:
    files = dict(reference)
    files["lstm_solution.py"] = b"import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n" + files["lstm_solution.py"]
    data = submit(autograder, files, namespaces=False)
    check_gradescope(data)
    assert 0 < data["score"] < data["extra_data"]["max_score"]  # the LSTM part is lost, the ViT part is not
    lstm = [t for t in data["tests"] if t.get("tags") == ["lstm"] and t["max_score"] > 0]   # advice tests have no points
    assert lstm and all(t["status"] == "failed" for t in lstm)


def test_empty_submission_scores_zero_and_says_what_is_missing(autograder: Path) -> None:
    data = submit(autograder, {}, metadata={})
    check_gradescope(data)
    assert data["score"] == 0
    assert "lstm_solution.py is missing" in data["output"] and "vit_solution.py is missing" in data["output"]


def test_unparseable_submission_scores_zero_with_the_syntax_error(autograder: Path) -> None:
    data = submit(autograder, {"lstm_solution.py": b"def (:\n", "vit_solution.py": b"class ViT\n    pass\n"})
    check_gradescope(data)
    assert data["score"] == 0
    assert "SyntaxError" in "\n".join(t["output"] for t in data["tests"])


def test_a_run_that_overruns_its_budget_still_leaves_valid_results(autograder: Path, reference: dict[str, bytes]) -> None:
    """The whole-run timeout: the shell writes the results itself when the engine is stopped."""
    meta = autograder / "source" / "bundle.json"
    saved = meta.read_text()
    meta.write_text(saved.replace('"run_timeout_s": 570.0', '"run_timeout_s": 2'))
    try:
        data = submit(autograder, reference)
    finally:
        meta.write_text(saved)
    assert data["score"] == 0 and data["tests"] == []
    assert "did not finish within 2 s" in data["output"]


HANG_IN_VIT = "        patches = self.get_patches(x, self.patch_size)  # (B, N, C*p*p)\n"


def test_a_run_stopped_by_its_time_limit_reports_the_tests_it_finished(autograder: Path, reference: dict[str, bytes]) -> None:
    """The whole-run timeout mid-suite: finished tests keep their scores, the rest score 0 and say why.

    VisionTransformer.forward never returns: the LSTM, LayerNorm and attention tests (they run first) pass, then
    the first ViT test hangs until the run's time limit stops the engine (its call limit, 60 s, is longer).
    """
    assert HANG_IN_VIT.encode() in reference["vit_solution.py"]
    files = {**reference, "vit_solution.py": reference["vit_solution.py"].replace(
        HANG_IN_VIT.encode(), b"        while True:\n            pass\n" + HANG_IN_VIT.encode())}
    meta = autograder / "source" / "bundle.json"
    saved = meta.read_text()
    meta.write_text(saved.replace('"run_timeout_s": 570.0', '"run_timeout_s": 50'))
    try:
        data = submit(autograder, files)
    finally:
        meta.write_text(saved)
    check_gradescope(data)
    tests = data["tests"]
    assert [t["number"] for t in tests] == [str(i) for i in range(1, len(tests) + 1)], "every test of the suite is listed"
    passed = [t for t in tests if t["status"] == "passed" and t["max_score"] > 0]
    not_run = [t for t in tests if t["output"] == "Not run: the autograder's time limit (50 s for the whole run) was reached "
                                                   "before this test ran."]
    assert {t["tags"][0] for t in passed} >= {"lstm", "layernorm", "attention"}, [t["name"] for t in passed]
    assert not_run and all(t["score"] == 0 for t in not_run)
    # the ViT tests and the threshold tests (run last: the LSTM's training among them) were not run
    assert "vit" in {t["tags"][0] for t in not_run} and {t["tags"][0] for t in not_run} <= {"vit", "lstm"}
    assert len(passed) + len(not_run) == len([t for t in tests if t["max_score"] > 0]), "no test failed otherwise"
    assert data["score"] == sum(t["score"] for t in passed) > 0
    assert data["extra_data"]["status"] == "stopped" and data["extra_data"]["complete"] is True
    assert "Grading was stopped: the autograder's time limit (50 s" in data["output"]
    assert data["extra_data"]["gradescope"]["submission_id"] == 1001
    ps = subprocess.run(["ps", "-u", WORKER, "-o", "pid="], capture_output=True, text=True)
    assert not ps.stdout.strip(), f"processes of {WORKER} outlived the run: {ps.stdout}"


def test_a_missing_installation_still_leaves_valid_results(autograder: Path, reference: dict[str, bytes]) -> None:
    venv = autograder / "dlgrade-venv"
    venv.rename(venv.with_name("venv-away"))
    try:
        data = submit(autograder, reference)
    finally:
        venv.with_name("venv-away").rename(venv)
    assert data["score"] == 0 and "not installed" in data["output"]


@pytest.mark.parametrize("engine, message", [
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "ran out of memory"),  # the container's OOM killer
    ("raise SystemExit(3)\n", "failed on this submission (exit status 3)"),
], ids=["killed", "crashed"])
def test_an_engine_that_dies_still_leaves_valid_results(autograder: Path, reference: dict[str, bytes], engine: str,
                                                        message: str) -> None:
    site = next((autograder / "dlgrade-venv" / "lib").glob("python3*/site-packages"))
    entry = site / "dlgrade_gradescope.py"
    saved = entry.read_bytes()
    entry.write_text(engine)
    try:
        data = submit(autograder, reference)
    finally:
        entry.write_bytes(saved)
    assert data["score"] == 0 and data["tests"] == [] and message in data["output"], data["output"]


def test_results_are_cut_to_the_bundle_limit() -> None:
    """Per-test details go first, then long outputs; the file stays valid and the score untouched."""
    sys.path.insert(0, str(ROOT / "gradescope_bundle"))
    try:
        from dlgrade_gradescope import fit
    finally:
        sys.path.remove(str(ROOT / "gradescope_bundle"))
    tests = [{"name": f"t{i}", "score": 1.0, "max_score": 1.0, "output": "x" * 8000} for i in range(40)]
    data = {"score": 40.0, "output": "y" * 20000, "tests": tests,
            "extra_data": {"tests": [{"output": "z" * 8000, "extra": {"curve": list(range(2000))}} for _ in range(40)]}}
    out = fit(json.loads(json.dumps(data)), 150_000)
    assert len(json.dumps(out)) <= 150_000 and out["score"] == 40.0 and len(out["tests"]) == 40
    assert out["extra_data"]["truncated"] is True and "tests" not in out["extra_data"]
    small = fit(json.loads(json.dumps({"score": 1.0, "tests": tests[:1], "extra_data": {}})), 150_000)
    assert "truncated" not in small["extra_data"] and small["tests"][0]["output"] == "x" * 8000
