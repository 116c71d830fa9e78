"""Validate: prove the hidden suite is strong.

The reference must score 100 %, the blank skeleton 0, every correct submission of
``graders/<id>/full_marks/`` full marks, every catalogued bug must lose points (and fail the tests
it names), and every hidden test must name the handout sentence it checks (``spec``). Each case is
materialised as a submission folder named by what it is (``reference/``, ``skeleton/``,
``full-<name>/``, ``bug-<name>/``) and graded for real.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dlgrade.bugs import Bug, bug_submission, load_bugs, materialise
from dlgrade.config import AssignmentConfig
from dlgrade.errors import ConfigError
from dlgrade.grade import grade_one, new_seed
from dlgrade.release import reference_submission, skeleton_files
from dlgrade.results import SubmissionResult
from dlgrade.sandbox import get_backend


@dataclass(frozen=True)
class Case:
    name: str
    expectation: str          # "full" | "zero" | "loses points" | "advice"
    score: float
    max_score: float
    ok: bool
    detail: str


def full_marks_submissions(cfg: AssignmentConfig) -> dict[str, dict[str, bytes]]:
    """``graders/<id>/full_marks/``: correct submissions written unlike the reference, each worth full marks.

    A folder is a whole submission (written the way the course's students write: the given code as shipped,
    other names, the other reading of the handout); a ``.patch`` is a unified diff applied to the reference.
    """
    folder = cfg.grader_dir / "full_marks"
    out: dict[str, dict[str, bytes]] = {}
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if entry.is_dir():
            files = {p.relative_to(entry).as_posix(): p.read_bytes() for p in sorted(entry.rglob("*")) if p.is_file()}
            out[entry.name] = {name: data for name, data in files.items() if name in cfg.submit}
        elif entry.suffix == ".patch":
            with tempfile.TemporaryDirectory() as tmp:
                base = materialise(reference_submission(cfg), Path(tmp) / "sub")
                done = subprocess.run(["patch", "-s", "-p1", "-d", str(base), "-i", str(entry.resolve())],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    raise ConfigError(f"{entry}: the patch does not apply to the reference: {done.stdout}{done.stderr}")
                out[entry.stem] = {rel: (base / rel).read_bytes() for rel in cfg.submit if (base / rel).is_file()}
    return out


def _failed_tests(result: SubmissionResult) -> set[str]:
    return {t.nodeid.rsplit("::", 1)[-1] for t in result.tests if t.status != "passed"}


def _judge(expectation: str, r: SubmissionResult, bug: Bug | None) -> tuple[bool, str]:
    failed = _failed_tests(r)
    if r.grader_errors:
        return False, "grader error: " + r.grader_errors[0].splitlines()[0]
    if expectation == "full":
        return r.score == r.max_score, f"failed: {', '.join(sorted(failed))}" if failed else ""
    if expectation == "zero":
        return r.score == 0, "" if r.score == 0 else "passed: " + ", ".join(
            t.nodeid.rsplit("::", 1)[-1] for t in r.tests if t.status == "passed")
    assert bug is not None
    if bug.advice:  # not a mistake by the handout: no points lost, but the advice tests say something
        advised = {t.nodeid.rsplit("::", 1)[-1] for t in r.tests if t.advice and "nothing to improve" not in t.output}
        silent = [t for t in bug.fails if t not in advised]
        return (r.score == r.max_score and not silent,
                "advice only" + (f"; no advice from: {', '.join(silent)}" if silent else "")
                + (f"; lost points in: {', '.join(sorted(failed))}" if r.score < r.max_score else ""))
    not_failed = [t for t in bug.fails if t not in failed]
    detail = f"caught by {len(failed)} tests"
    if not_failed:
        detail += f"; expected to fail but passed: {', '.join(not_failed)}"
    return r.score < r.max_score and not not_failed, detail


def spec_problems(r: SubmissionResult) -> list[str]:
    """Tests without a @pytest.mark.spec tag (the handout sentence or interface line they check)."""
    return [t.nodeid.rsplit("::", 1)[-1] for t in r.tests if not t.spec and t.part != "grading"]


def validate(cfg: AssignmentConfig, out: Path, sandbox: str = "process", seed: int | None = None,
             only: list[str] | None = None, seeds: int = 1) -> list[Case]:
    """Grade every case; with ``seeds`` > 1 every bug is graded at that many seeds and must lose the same
    points at each (a mistake costs the same whatever the inputs)."""
    seed = new_seed() if seed is None else seed
    subs_dir, results_dir = out / "submissions", out / "results"
    skeleton = {rel: data for rel, data in skeleton_files(cfg).items() if rel in cfg.submit}
    cases: list[tuple[str, str, dict[str, bytes], Bug | None]] = [
        ("reference", "full", reference_submission(cfg), None),
        ("skeleton", "zero", skeleton, None),
    ]
    cases += [(f"full-{name}", "full", files, None) for name, files in full_marks_submissions(cfg).items()]
    cases += [(f"bug-{b.name}", "advice" if b.advice else "loses points", bug_submission(cfg, b), b) for b in load_bugs(cfg)]
    if only:
        cases = [c for c in cases if c[0] in only or c[0].split("-", 1)[-1] in only]
    backend = get_backend(sandbox)
    out_cases = []
    try:
        for name, expectation, files, bug in cases:
            folder = materialise(files, subs_dir / name)
            r = grade_one(cfg, backend, folder, seed, results_dir)
            ok, detail = _judge(expectation, r, bug)
            if name == "reference":
                untagged = spec_problems(r)
                out_cases.append(Case("spec tags", "every test", float(len(r.tests) - len(untagged)), float(len(r.tests)),
                                      not untagged, "without @pytest.mark.spec: " + ", ".join(untagged) if untagged else ""))
            if bug is not None and seeds > 1 and not bug.advice:
                scores = {seed: r.score}
                for k in range(1, seeds):
                    other = seed + 7919 * k
                    scores[other] = grade_one(cfg, backend, folder, other, out / f"results-seed{other}").score
                if len(set(scores.values())) > 1:
                    ok = False
                    detail += "; the points lost depend on the seed: " + ", ".join(f"{v:g} at seed {k}" for k, v in scores.items())
                else:
                    detail += f"; the same score at {seeds} seeds"
            out_cases.append(Case(name, expectation, r.score, r.max_score, ok, detail))
    finally:
        backend.shutdown()
    (out / "validate.json").write_text(json.dumps([c.__dict__ for c in out_cases], indent=2))
    return out_cases
