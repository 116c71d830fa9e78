"""Validate: prove the hidden suite is strong.

The reference must score 100 %, the blank skeleton 0, every correct submission of
``graders/<id>/full_marks/`` full marks, every catalogued bug must lose points (and fail the tests
it names), and every hidden test must name the handout sentence it checks (``spec``). Each case is
materialised as a submission folder named by what it is (``reference/``, ``skeleton/``,
``full-<name>/``, ``bug-<name>/``) and graded for real.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import multiprocessing.util
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dlgrade.bugs import Bug, bug_submission, load_bugs, materialise
from dlgrade.config import AssignmentConfig
from dlgrade.errors import ConfigError
from dlgrade.grade import grade_one, new_seed
from dlgrade.release import reference_submission, skeleton_files
from dlgrade.results import SubmissionResult, TestResult
from dlgrade.sandbox import Backend, get_backend


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


FAST_SKIP = "validate --fast"


def _failed_tests(result: SubmissionResult) -> set[str]:
    """The tests that failed (a test --fast left out did not run, so it did not catch anything)."""
    return {t.nodeid.rsplit("::", 1)[-1] for t in result.tests
            if t.status != "passed" and not t.output.startswith(f"Not run: {FAST_SKIP}")}


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


@dataclass(frozen=True)
class _Job:
    """One case to grade (plain data: it crosses to a pool process)."""

    name: str
    expectation: str
    files: dict[str, bytes]
    bug: Bug | None


class _CaughtAlready:
    """validate --fast: a bug's threshold tests are left out once it has lost points, unless it names them in ``fails``.

    A picklable callable (it travels to pool processes with the case)."""

    def __init__(self, bug: Bug) -> None:
        self.named = set(bug.fails)

    def __call__(self, results: list[TestResult], test: str) -> str | None:
        if test in self.named or not any(r.score < r.max_score and not r.advice for r in results):
            return None
        return f"{FAST_SKIP}: this bug already lost points in the tests before, so its threshold training is skipped"


def _grade_case(cfg: AssignmentConfig, backend: Backend, job: _Job, seed: int, out: Path, seeds: int,
                fast: bool) -> list[Case]:
    folder = materialise(job.files, out / "submissions" / job.name)
    bug = job.bug
    skip = _CaughtAlready(bug) if fast and bug is not None and not bug.advice and seeds == 1 else None
    # the claims' rule is off: reference and bug notebooks are built without outputs (no training log)
    r = grade_one(cfg, backend, folder, seed, out / "results", claims_rule=False, skip_threshold=skip)
    ok, detail = _judge(job.expectation, r, bug)
    found: list[Case] = []
    if job.name == "reference":
        untagged = spec_problems(r)
        found.append(Case("spec tags", "every test", float(len(r.tests) - len(untagged)), float(len(r.tests)),
                          not untagged, "without @pytest.mark.spec: " + ", ".join(untagged) if untagged else ""))
    if bug is not None and seeds > 1 and not bug.advice:
        scores = {seed: r.score}
        for k in range(1, seeds):
            other = seed + 7919 * k
            scores[other] = grade_one(cfg, backend, folder, other, out / f"results-seed{other}", claims_rule=False).score
        if len(set(scores.values())) > 1:
            ok = False
            detail += "; the points lost depend on the seed: " + ", ".join(f"{v:g} at seed {k}" for k, v in scores.items())
        else:
            detail += f"; the same score at {seeds} seeds"
    if skip is not None and any(t.output.startswith(f"Not run: {FAST_SKIP}") for t in r.tests):
        detail += " (threshold training skipped: --fast)"
    found.append(Case(job.name, job.expectation, r.score, r.max_score, ok, detail))
    return found


_POOL: tuple[AssignmentConfig, Backend] | None = None


def _pool_init(cfg: AssignmentConfig, sandbox: str) -> None:
    global _POOL
    backend = get_backend(sandbox, preload=cfg.preload)
    _POOL = (cfg, backend)
    multiprocessing.util.Finalize(None, backend.shutdown, exitpriority=10)


def _pool_case(job: _Job, seed: int, out: Path, seeds: int, fast: bool) -> list[Case]:
    assert _POOL is not None
    return _grade_case(_POOL[0], _POOL[1], job, seed, out, seeds, fast)


def validate(cfg: AssignmentConfig, out: Path, sandbox: str = "process", seed: int | None = None,
             only: list[str] | None = None, seeds: int = 1, jobs: int = 1, fast: bool = False,
             progress: Callable[[Case], None] | None = None) -> list[Case]:
    """Grade every case; with ``seeds`` > 1 every bug is graded at that many seeds and must lose the same
    points at each (a mistake costs the same whatever the inputs). ``jobs`` cases are graded at once, each
    in a pool process of its own; ``fast`` skips a bug's threshold training once its unit tests caught it
    (unless its ``fails`` names a threshold test). The cases come back in catalogue order."""
    seed = new_seed() if seed is None else seed
    skeleton = {rel: data for rel, data in skeleton_files(cfg).items() if rel in cfg.submit}
    todo = [_Job("reference", "full", reference_submission(cfg), None), _Job("skeleton", "zero", skeleton, None)]
    todo += [_Job(f"full-{name}", "full", files, None) for name, files in full_marks_submissions(cfg).items()]
    todo += [_Job(f"bug-{b.name}", "advice" if b.advice else "loses points", bug_submission(cfg, b), b) for b in load_bugs(cfg)]
    if only:
        todo = [j for j in todo if j.name in only or j.name.split("-", 1)[-1] in only]
    done: dict[str, list[Case]] = {}

    def finished(job: _Job, cases: list[Case]) -> None:
        done[job.name] = cases
        if progress is not None:
            progress(cases[-1])

    if jobs <= 1 or len(todo) <= 1:
        backend = get_backend(sandbox, preload=cfg.preload)
        try:
            for job in todo:
                finished(job, _grade_case(cfg, backend, job, seed, out, seeds, fast))
        finally:
            backend.shutdown()
    else:
        pool = cf.ProcessPoolExecutor(min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn"),
                                      initializer=_pool_init, initargs=(cfg, sandbox))
        try:
            futures = {pool.submit(_pool_case, job, seed, out, seeds, fast): job for job in todo}
            for fut in cf.as_completed(futures):
                finished(futures[fut], fut.result())
        except BaseException:
            processes = list(getattr(pool, "_processes", {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in processes:
                proc.terminate()
            raise
        pool.shutdown()
    out_cases = [case for job in todo for case in done[job.name]]
    (out / "validate.json").write_text(json.dumps([c.__dict__ for c in out_cases], indent=2))
    return out_cases
