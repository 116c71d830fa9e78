"""Shared helpers for the platform's own tests: fixture submissions and running the CLI.

Fixture submissions are described in ``tests/fixtures/<assignment>/hostile.toml`` as patches of
the reference submission (see the header of that file), so they stay small and follow the
reference when it changes. ``materialise`` turns one entry into a submission folder;
``grade_cli`` runs ``python -m dlgrade grade`` in a subprocess, as a user would.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dlgrade.config import AssignmentConfig, find_root, load_assignment
from dlgrade.release import reference_submission
from dlgrade.tomlcompat import tomllib

ROOT = find_root(Path(__file__).resolve().parent)
FIXTURES = Path(__file__).resolve().parent / "fixtures"
ASSIGNMENT = "lstm_lm_vit"
SCORES = ("zero", "partial", "full")


def pytest_configure(config: pytest.Config) -> None:
    # pyproject.toml registers these too; repeating them keeps a stray checkout without it working
    config.addinivalue_line("markers", "slow: end-to-end tests that grade real submissions (CI runs them)")
    config.addinivalue_line("markers", "docker: tests that need a Docker engine")


# ----------------------------------------------------------------------------- fixture submissions


@dataclass(frozen=True)
class Hostile:
    """One entry of hostile.toml."""

    name: str
    files: tuple[str, ...]
    score: str
    message: str
    why: str = ""
    prepend: str | None = None
    find: str | None = None
    replace: str | None = None
    content: str | None = None
    delete: bool = False
    stdout: str | None = None
    stdout_docker: str | None = None   # what is printed instead in the docker sandbox
    # the sandboxes whose class holds it: broken (not hostile) code is judged on the trusted side, the same whatever
    # runs it, so it is graded in the process class only (the docker class pays a container and training per student)
    sandboxes: tuple[str, ...] = ("process", "docker")

    def expanded(self, text: str | None, placeholders: dict[str, str]) -> str | None:
        if text is None:
            return None
        for key, value in placeholders.items():
            text = text.replace("{" + key + "}", value)
        return text


def load_hostile(assignment: str = ASSIGNMENT) -> list[Hostile]:
    path = FIXTURES / assignment / "hostile.toml"
    raw = tomllib.loads(path.read_text())
    known = set(Hostile.__dataclass_fields__) | {"file"}
    out = []
    for i, entry in enumerate(raw.get("fixture", [])):
        where = f"{path} fixture {i + 1} ({entry.get('name', '?')})"
        unknown = set(entry) - known
        assert not unknown, f"{where}: unknown fields {sorted(unknown)}"
        assert {"name", "file", "score", "message"} <= set(entry), f"{where}: needs name, file, score and message"
        assert entry["score"] in SCORES, f"{where}: score must be one of {SCORES}"
        assert ("find" in entry) == ("replace" in entry), f"{where}: find and replace go together"
        files = (entry.pop("file"),) if isinstance(entry["file"], str) else tuple(entry.pop("file"))
        if "sandboxes" in entry:
            entry["sandboxes"] = tuple(entry["sandboxes"])
            assert set(entry["sandboxes"]) <= {"process", "docker"}, f"{where}: sandboxes are process and docker"
        out.append(Hostile(files=files, **entry))
    names = [h.name for h in out]
    assert len(set(names)) == len(names), f"{path}: duplicate fixture names"
    return out


def patched_files(cfg: AssignmentConfig, fixture: Hostile, placeholders: dict[str, str] | None = None) -> dict[str, bytes]:
    """The reference submission with the fixture's patch applied (placeholders filled in)."""
    ph = placeholders or {}
    files = {rel: data.decode() for rel, data in reference_submission(cfg).items()}
    for rel in fixture.files:
        assert rel in files, f"{fixture.name}: {rel} is not a submitted file"
        if fixture.delete:
            del files[rel]
            continue
        if fixture.content is not None:
            files[rel] = fixture.expanded(fixture.content, ph) or ""
            continue
        text = files[rel]
        if fixture.find is not None:
            count = text.count(fixture.find)
            assert count == 1, f"{fixture.name}: the find text occurs {count} times in {rel} (must be once)"
            text = text.replace(fixture.find, fixture.expanded(fixture.replace, ph) or "")
        if fixture.prepend is not None:
            text = (fixture.expanded(fixture.prepend, ph) or "") + text
        files[rel] = text
    return {rel: text.encode() for rel, text in files.items()}


def write_files(files: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def materialise(cfg: AssignmentConfig, fixture: Hostile, dest: Path, placeholders: dict[str, str] | None = None) -> Path:
    """Write the fixture as a submission folder ``dest/<fixture name>/``; returns that folder."""
    return write_files(patched_files(cfg, fixture, placeholders), dest / fixture.name)


# ----------------------------------------------------------------------------- running the CLI


@dataclass(frozen=True)
class CliRun:
    returncode: int
    stdout: str
    stderr: str
    out: Path

    def results(self, student: str) -> dict[str, Any]:
        """The parsed ``<out>/<student>/results.json``."""
        path = self.out / student / "results.json"
        assert path.is_file(), f"no results for {student}; dlgrade said:\n{self.stdout[-3000:]}\n{self.stderr[-3000:]}"
        data: dict[str, Any] = json.loads(path.read_text())
        return data

    def student_output(self, student: str) -> str:
        path = self.out / student / "student_output.txt"
        return path.read_text(errors="replace") if path.is_file() else ""


def run_dlgrade(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m dlgrade ARGS`` from the project root, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "dlgrade", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def grade_cli(path: Path, out: Path, *extra: str, assignment: str = ASSIGNMENT, timeout: float = 300) -> CliRun:
    """Grade a submission (or a folder of them) with the CLI; the batch must finish (exit code 0)."""
    proc = run_dlgrade("grade", assignment, str(path), "--out", str(out), *extra, timeout=timeout)
    assert proc.returncode == 0, f"dlgrade grade exited with {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return CliRun(proc.returncode, proc.stdout, proc.stderr, out)


# ----------------------------------------------------------------------------- checks on results


GRADESCOPE_TEST_KEYS = {"name": str, "number": str, "score": (int, float), "max_score": (int, float),
                        "status": str, "output": str, "visibility": str}


def check_gradescope(data: dict[str, Any]) -> None:
    """``data`` is a valid Gradescope results.json whose total is the sum of its tests."""
    assert isinstance(data.get("score"), (int, float)) and not isinstance(data["score"], bool)
    assert isinstance(data.get("execution_time"), (int, float)) and data["execution_time"] >= 0
    assert isinstance(data.get("output"), str)
    assert isinstance(data.get("tests"), list) and data["tests"], "results.json has no tests"
    for t in data["tests"]:
        for key, typ in GRADESCOPE_TEST_KEYS.items():
            assert isinstance(t.get(key), typ), f"test {t.get('name')!r}: {key} is {t.get(key)!r}"
        assert t["status"] in ("passed", "failed")
        assert t["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
        assert 0 <= t["score"] <= t["max_score"]
        if t["status"] == "passed":
            assert t["score"] == t["max_score"], f"test {t['name']!r} passed without full points"
        else:
            assert t["score"] < t["max_score"] or t["max_score"] == 0, f"test {t['name']!r} failed with full points"
    total = sum(t["score"] for t in data["tests"])
    max_score = sum(t["max_score"] for t in data["tests"])
    assert abs(data["score"] - total) < 1e-6, f"score {data['score']} is not the sum of the tests ({total})"
    assert 0 <= data["score"] <= max_score
    assert abs(data["extra_data"]["max_score"] - max_score) < 1e-6


def visible_text(data: dict[str, Any]) -> str:
    """Everything in a results.json that a student may be shown (extra_data is for instructors)."""
    parts = [data.get("output", "")]
    for t in data.get("tests", []):
        parts += [t.get("name", ""), t.get("output", "")]
    return "\n".join(parts)


def secret_lines(folder: Path, min_length: int = 30) -> set[str]:
    """Source lines of the Python files in ``folder`` that should never reach a student.

    Multi-line strings are left out (a hidden test's docstring is its public name), and so are
    lines that start with a string literal (feedback messages are shown on purpose).
    """
    lines: set[str] = set()
    for path in sorted(folder.rglob("*.py")):
        text = path.read_text()
        skip: set[int] = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (node.end_lineno or 0) > node.lineno:
                skip.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        for i, line in enumerate(text.splitlines(), 1):
            s = line.strip()
            if i in skip or len(s) < min_length or s.lstrip("rRbBfFuU")[:1] in ("'", '"'):
                continue
            lines.add(s)
    return lines


# ----------------------------------------------------------------------------- pytest fixtures


@pytest.fixture(scope="session")
def cfg() -> AssignmentConfig:
    return load_assignment(ASSIGNMENT, ROOT)


@pytest.fixture(scope="session")
def hostile_fixtures() -> list[Hostile]:
    return load_hostile()


@pytest.fixture(scope="session")
def class_batches(cfg: AssignmentConfig, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One graded class per sandbox mode, shared by test_hostile.py and test_redteam.py (see tests/classbatch.py)."""
    from classbatch import ClassBatches

    batches = ClassBatches(cfg, tmp_path_factory.mktemp("classes"))
    yield batches
    batches.cleanup()


# ----------------------------------------------------------------------------- docker

SANDBOX_IMAGE = "dlgrade-sandbox:cpu"


def docker_problem() -> str | None:
    """Why the docker sandbox cannot run here (None: it can)."""
    try:
        import docker

        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:
        return f"no Docker engine ({type(exc).__name__}); .ci/run starts one"
    try:
        client.images.get(SANDBOX_IMAGE)
    except Exception:
        return f"the image {SANDBOX_IMAGE} is not built (make sandbox-image)"
    return None


def require_docker() -> None:
    """Skip without a Docker engine and image, except in CI, which must run the docker tests."""
    problem = docker_problem()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the docker tests: {problem}")
    pytest.skip(problem)


# Every container this test session makes (in-process or from a `dlgrade` subprocess, which inherits the environment)
# carries this tag: counting containers then counts only ours, beside other sessions and other docker users.
SESSION_TAG = os.environ.setdefault("DLGRADE_CONTAINER_TAG", f"pytest-{os.getpid()}-{os.urandom(4).hex()}")


def docker_containers(batch: str | None = None) -> list[str]:
    """Ids of the dlgrade worker containers that exist (running or not): of one batch, or all of this test session's."""
    import docker

    label = f"dlgrade.batch={batch}" if batch else f"dlgrade.tag={SESSION_TAG}"
    return [c.short_id for c in docker.from_env().containers.list(all=True, filters={"label": [label]})]


# ----------------------------------------------------------------------------- full-marks alternatives


def check_full_marks_differ(assignment: str, must_change: str | None = None, minimum: int = 3) -> None:
    """``graders/<assignment>/full_marks/`` holds at least ``minimum`` correct submissions (folders, or patches of the
    reference), each different from the reference (in ``must_change`` when given). Their grading (full marks) is done
    by each assignment's validate test, which grades them with the reference and the bugs in one run."""
    from dlgrade.validate import full_marks_submissions

    cfg = load_assignment(assignment, ROOT)
    subs = full_marks_submissions(cfg)
    assert len(subs) >= minimum, f"{assignment}: {len(subs)} full-marks submissions"
    ref = reference_submission(cfg)
    for name, files in subs.items():
        assert set(files) <= set(cfg.submit), name
        if must_change is not None:
            assert files.get(must_change) != ref[must_change], f"{name}: {must_change} is the reference's"
        assert any(files.get(rel) != data for rel, data in ref.items()), f"{name}: the same files as the reference"
