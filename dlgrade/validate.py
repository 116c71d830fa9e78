"""Validate: prove the hidden suite is strong.

The reference must score 100 %, the blank skeleton 0, and every catalogued bug must lose
points (and fail the tests it names). Each case is materialised as a submission folder
named by what it is (``reference/``, ``skeleton/``, ``bug-<name>/``) and graded for real.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from dlgrade.config import AssignmentConfig
from dlgrade.errors import ConfigError
from dlgrade.grade import grade_one, new_seed
from dlgrade.release import reference_submission, skeleton_files
from dlgrade.results import SubmissionResult
from dlgrade.sandbox import get_backend

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


@dataclass(frozen=True)
class Bug:
    name: str
    file: str
    find: str
    replace: str
    why: str
    fails: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    name: str
    expectation: str          # "full" | "zero" | "loses points"
    score: float
    max_score: float
    ok: bool
    detail: str


def load_bugs(cfg: AssignmentConfig) -> list[Bug]:
    path = cfg.grader_dir / "bugs.toml"
    if not path.is_file():
        return []
    raw = tomllib.loads(path.read_text())
    bugs = []
    for i, b in enumerate(raw.get("bug", [])):
        missing = {"name", "file", "find", "replace"} - set(b)
        if missing:
            raise ConfigError(f"{path}: bug {i + 1} lacks {sorted(missing)}")
        bugs.append(Bug(b["name"], b["file"], b["find"], b["replace"], b.get("why", ""), tuple(b.get("fails", []))))
    return bugs


def bug_submission(cfg: AssignmentConfig, bug: Bug) -> dict[str, bytes]:
    files = reference_submission(cfg)
    if bug.file not in files:
        raise ConfigError(f"bug {bug.name}: {bug.file} is not a submitted file")
    text = files[bug.file].decode()
    count = text.count(bug.find)
    if count != 1:
        raise ConfigError(f"bug {bug.name}: the find text occurs {count} times in {bug.file} (must be exactly once)")
    files[bug.file] = text.replace(bug.find, bug.replace).encode()
    return files


def materialise(files: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


def _failed_tests(result: SubmissionResult) -> set[str]:
    return {t.nodeid.rsplit("::", 1)[-1] for t in result.tests if t.status != "passed"}


def validate(cfg: AssignmentConfig, out: Path, sandbox: str = "process", seed: int | None = None,
             only: list[str] | None = None) -> list[Case]:
    seed = new_seed() if seed is None else seed
    subs_dir, results_dir = out / "submissions", out / "results"
    skeleton = {rel: data for rel, data in skeleton_files(cfg).items() if rel in cfg.submit}
    cases: list[tuple[str, str, dict[str, bytes], Bug | None]] = [
        ("reference", "full", reference_submission(cfg), None),
        ("skeleton", "zero", skeleton, None),
    ]
    cases += [(f"bug-{b.name}", "loses points", bug_submission(cfg, b), b) for b in load_bugs(cfg)]
    if only:
        cases = [c for c in cases if c[0] in only or c[0].removeprefix("bug-") in only]
    backend = get_backend(sandbox)
    out_cases = []
    try:
        for name, expectation, files, bug in cases:
            r = grade_one(cfg, backend, materialise(files, subs_dir / name), seed, results_dir)
            failed = _failed_tests(r)
            if r.grader_errors:
                ok, detail = False, "grader error: " + r.grader_errors[0].splitlines()[0]
            elif expectation == "full":
                ok, detail = r.score == r.max_score, f"failed: {', '.join(sorted(failed))}" if failed else ""
            elif expectation == "zero":
                ok, detail = r.score == 0, "" if r.score == 0 else "passed: " + ", ".join(
                    t.nodeid.rsplit("::", 1)[-1] for t in r.tests if t.status == "passed")
            else:
                assert bug is not None
                not_failed = [t for t in bug.fails if t not in failed]
                ok = r.score < r.max_score and not not_failed
                detail = f"caught by {len(failed)} tests"
                if not_failed:
                    detail += f"; expected to fail but passed: {', '.join(not_failed)}"
            out_cases.append(Case(name, expectation, r.score, r.max_score, ok, detail))
    finally:
        backend.shutdown()
    (out / "validate.json").write_text(json.dumps([c.__dict__ for c in out_cases], indent=2))
    return out_cases
