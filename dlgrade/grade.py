"""Grade: one submission or a whole class, always ending in a valid results file per student."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.util
import os
import secrets
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dlgrade import intake, notebook, static_check
from dlgrade.config import AssignmentConfig, module_name
from dlgrade.harness.plugin import GradingContext, Reference, run_suite
from dlgrade.harness.remote import Submission
from dlgrade.notebook.claims import find_claims, settle
from dlgrade.release import support_files
from dlgrade.results import GradeRow, SubmissionResult, TestResult, read_results, write_grades_csv, write_results
from dlgrade.sandbox import Backend, WorkerSpec, get_backend

BATCH_ENV = "DLGRADE_BATCH_ID"


@dataclass(frozen=True)
class GradeOptions:
    sandbox: str = "process"
    seed: int | None = None
    jobs: int = 1
    force: bool = False
    device: str = "cpu"                  # "cuda": the worker trains on the GPU (docker: with --gpus)
    backend_options: tuple[tuple[str, object], ...] = ()   # e.g. (("gpus", "all"), ("image", ...)) for docker

    def backend(self, cfg: AssignmentConfig | None = None) -> Backend:
        """The sandbox, with the assignment's ``[worker] preload`` where ``cfg`` is given."""
        return get_backend(self.sandbox, preload=cfg.preload if cfg is not None else (), **dict(self.backend_options))


def new_seed() -> int:
    return secrets.randbelow(2**31)


def runtime_rules(cfg: AssignmentConfig) -> tuple[dict[str, object], ...]:
    """What the worker watches at run time: per rule and file, the module, the scope and the APIs."""
    return tuple({"id": str(i), "module": module_name(f), "scope": list(r.scope), "apis": list(r.apis), "allow": list(r.allow)}
                 for i, r in enumerate(cfg.rules) if r.runtime for f in r.files)


def _spec(cfg: AssignmentConfig, files: dict[str, bytes], out_dir: Path, device: str) -> WorkerSpec:
    lim = cfg.limits
    return WorkerSpec(
        files={**support_files(cfg), **files}, modules=cfg.modules,
        forbidden=runtime_rules(cfg), memory_mb=lim.memory_mb, processes=lim.processes,
        file_size_mb=lim.file_size_mb, cpu_seconds=int(lim.submission_timeout_s * lim.cpus) + 60, threads=lim.cpus,
        device=device, hide=tuple(str(p) for p in (cfg.root / "graders", cfg.root / "reference_solutions",
                                                   # git history and build outputs (bundles, validate) hold both
                                                   cfg.root / ".git", cfg.root / "dist", out_dir.resolve())))


def _summary(student: str, score: float, max_score: float, seed: int, problems: tuple[str, ...], stdout: str,
             cfg: AssignmentConfig) -> str:
    lines = [f"{student}: {score:g} / {max_score:g} points (input seed {seed})."]
    lines += [f"- {p}" for p in problems]
    lines += [f"- The part {cfg.all_parts[p].title!r} is not graded for this assignment (turned off by your instructor)."
              for p in cfg.disabled_parts]
    if stdout.strip():
        lines.append("Your code printed output while being graded; it was ignored for grading.")
    return "\n".join(lines)


def _not_graded(files: intake.SubmissionFiles, cfg: AssignmentConfig) -> str:
    """Why a submission cannot be graded at all ('' when it can): nothing readable, or none of the files asked for."""
    if files.files:
        return ""
    unreadable = [p for p in files.problems if "could not be read" in p]
    if unreadable:
        return unreadable[0]
    wanted = [f for f in cfg.submit if f not in cfg.optional_files]
    return f"none of the files this assignment asks for was found ({', '.join(wanted)})"


def _resumable(out_dir: Path, cfg: AssignmentConfig) -> tuple[int, dict[str, TestResult]] | None:
    """(seed, finished tests) of a cut-off earlier run of this student, if its results were left incomplete."""
    try:
        data = read_results(out_dir / "results.json")
    except (OSError, ValueError):
        return None
    extra = data.get("extra_data", {})
    if extra.get("complete", True) or extra.get("assignment") != cfg.id or not isinstance(extra.get("seed"), int):
        return None
    done: dict[str, TestResult] = {}
    for t in extra.get("tests", []):
        try:
            result = TestResult(**t)
        except TypeError:
            return None
        done[result.nodeid] = result
    return int(extra["seed"]), done


def grade_one(cfg: AssignmentConfig, backend: Backend, path: Path, seed: int, out_root: Path,
              device: str = "cpu", only_thresholds: tuple[str, ...] = (), claims_rule: bool = True,
              skip_threshold: Callable[[list[TestResult], str], str | None] | None = None) -> SubmissionResult:
    """Grade one submission and write ``out_root/<student>/results.json``. Never raises for student faults.

    Results are written after every test (``extra_data.complete`` false until the end), so a run that is cut
    off keeps what it finished; grading the student again resumes from there, with the same seed. The rule of
    ``[[claims]]`` (a notebook's output must show its training log) applies to partial and final results alike;
    ``claims_rule=False`` (validate: reference notebooks have no outputs) and calibration only record the claims.
    ``skip_threshold`` (validate --fast) may leave threshold tests out once the submission is known to lose points.
    """
    started = time.monotonic()
    # the grader's reference computations (and an inprocess worker) use the worker's thread count:
    # results then match across backends, and -j N does not oversubscribe the CPUs
    torch.set_num_threads(cfg.limits.cpus)
    student = intake.student_id(path)
    out_dir = out_root / student
    sub: Submission | None = None
    resumed = None if only_thresholds else _resumable(out_dir, cfg)
    if resumed is not None:
        seed = resumed[0]
    try:
        files = intake.read_submission(path, cfg)
        notebook.write_graded(files.notebooks, out_dir)  # the modules graded, for the instructor's report
        found = find_claims(cfg, files.notebooks)      # what the notebooks' saved outputs show of their training
        apply_claims = claims_rule and not only_thresholds
        violations = notebook.locate_violations(static_check.check_files(
            {**files.files, **notebook.check_sources(files.notebooks)}, cfg.rules), files.notebooks)
        sub = Submission(backend, _spec(cfg, files.files, out_root, device), cfg.limits.call_timeout_s,
                         cfg.limits.submission_timeout_s, recipe_source=_recipe_reader(cfg))
        sub.notebooks = files.notebooks  # worker messages name the notebook's cells
        reason = _not_graded(files, cfg)
        # a file of a part that is turned off is not asked for: its absence is no problem
        skipped = tuple(f"{f} is missing" for f in cfg.optional_files)
        problems = tuple(p for p in files.problems if not p.startswith(skipped)) + tuple(v.message() for v in violations)

        def partial(tests: list[TestResult]) -> None:
            assert sub is not None
            done = settle(cfg, found, tests, apply_claims)
            write_results(SubmissionResult(
                student=student, assignment=cfg.id, seed=seed, tests=done.tests, execution_time=time.monotonic() - started,
                output=_summary(student, sum(t.score for t in done.tests), sum(t.max_score for t in done.tests), seed,
                                problems + done.notes, "", cfg)
                + "\nGrading was cut off before every test had run; the tests not listed were not graded.",
                complete=False, claims=done.records, leftovers=tuple(sub.leftovers),
                pending=tuple(t for t in ctx.planned if t.nodeid not in {r.nodeid for r in tests})), out_dir)

        ctx = GradingContext(cfg=cfg, sub=sub, seed=seed, reference=_reference(cfg), violations=violations,
                             done=resumed[1] if resumed else {}, on_result=None if only_thresholds else partial,
                             only_thresholds=only_thresholds, skip_threshold=skip_threshold)
        run_suite(ctx)
        sub.close()  # the last worker ends now: what it left running is known before the results are written
        stdout = sub.stdout()
        problems += tuple(f"Run-time use of a forbidden API: {api}" for _, api in sorted(sub.forbidden_used))
        problems += tuple(dict.fromkeys(ctx.notes))
        settled = settle(cfg, found, ctx.results, apply_claims)
        problems += settled.notes
        tests = settled.tests
        errors = tuple(ctx.grader_log)
        if not tests:
            errors += ("the hidden suite produced no results",)
        score = sum(t.score for t in tests)
        status = "grader error" if errors else ("not graded" if reason else "graded")
        result = SubmissionResult(student=student, assignment=cfg.id, seed=seed, tests=tests,
                                  execution_time=time.monotonic() - started,
                                  output=_summary(student, score, sum(t.max_score for t in tests), seed, problems, stdout, cfg),
                                  warnings=tuple(sub.warnings) + tuple(sub.leftovers), grader_errors=errors, stdout=stdout,
                                  status=status, reason=reason, claims=settled.records, leftovers=tuple(sub.leftovers))
    except Exception:  # the platform broke: still leave a valid, fail-closed results file
        result = SubmissionResult(student=student, assignment=cfg.id, seed=seed,
                                  tests=(TestResult("Grading", "1", 0.0, 0.0, "failed", "The autograder failed on this "
                                                    "submission; your instructor has been notified.", "visible", "", "grading"),),
                                  execution_time=time.monotonic() - started, output="The autograder failed; no score was given.",
                                  grader_errors=(traceback.format_exc(),), status="grader error")
    finally:
        if sub is not None:
            sub.close()
    write_results(result, out_dir)
    if result.grader_errors:
        (out_dir / "grader.log").write_text("\n\n".join(result.grader_errors))
    return result


_REFERENCES: dict[str, Reference] = {}


def _reference(cfg: AssignmentConfig) -> Reference:
    """One reference per assignment and process: its outputs are reused across students."""
    if cfg.id not in _REFERENCES:
        _REFERENCES[cfg.id] = Reference(cfg.reference_dir, cfg.id)
    return _REFERENCES[cfg.id]


def _recipe_reader(cfg: AssignmentConfig) -> Callable[[], str] | None:
    path = cfg.assignment_dir / "recipes.py"
    if not path.is_file():
        return None
    text = path.read_text()
    return lambda: text


def _complete(out_dir: Path) -> bool:
    path = out_dir / "results.json"
    try:
        data = read_results(path)
    except (OSError, ValueError):
        return False
    extra = data.get("extra_data", {})
    return bool(data.get("tests")) and not extra.get("grader_errors") and extra.get("complete", True) is True


# ----------------------------------------------------------------------------- batches

_POOL_BACKEND: Backend | None = None


def _pool_init(opts: GradeOptions, cfg: AssignmentConfig) -> None:
    global _POOL_BACKEND
    _POOL_BACKEND = backend = opts.backend(cfg)
    # containers (docker) and the zygote go when this pool process ends
    multiprocessing.util.Finalize(None, backend.shutdown, exitpriority=10)


def _pool_grade(cfg: AssignmentConfig, path: Path, seed: int, out_root: Path, device: str) -> tuple[str, float, float]:
    assert _POOL_BACKEND is not None
    r = grade_one(cfg, _POOL_BACKEND, path, seed, out_root, device)
    return r.student, r.score, r.max_score


def _grade_pool(cfg: AssignmentConfig, todo: list[Path], seed: int, out_root: Path, opts: GradeOptions,
                report: Callable[[str, float, float], None]) -> None:
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(opts.jobs, mp_context=ctx, initializer=_pool_init, initargs=(opts, cfg))
    try:
        # The pool's processes start while submitting; they inherit a blocked SIGINT, so Ctrl-C never reaches them
        # (not even while they import torch): this process handles it and stops them. A Ctrl-C meanwhile is delivered here
        # once unblocked.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            futures = {pool.submit(_pool_grade, cfg, p, seed, out_root, opts.device): p for p in todo}
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        for fut in cf.as_completed(futures):
            try:
                report(*fut.result())
            except Exception:  # a pool process died: grade that student again on its own
                backend = opts.backend(cfg)
                try:
                    r = grade_one(cfg, backend, futures[fut], seed, out_root, opts.device)
                finally:
                    backend.shutdown()
                report(r.student, r.score, r.max_score)
    except BaseException:
        # Ctrl-C: the pool's processes would go on with the students already queued to them
        processes = list(getattr(pool, "_processes", {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.join(10)
        raise
    pool.shutdown()


def _earlier_seed(out_root: Path, cfg: AssignmentConfig) -> int | None:
    """The seed an earlier, cut-off run of this batch recorded in ``out_root`` (the most common one): a re-run
    grades the students it had not reached with the same inputs as the others. None: no earlier results."""
    seeds: Counter[int] = Counter()
    for path in out_root.glob("*/results.json") if out_root.is_dir() else ():
        try:
            extra = read_results(path).get("extra_data", {})
        except (OSError, ValueError):
            continue
        if extra.get("assignment") == cfg.id and isinstance(extra.get("seed"), int):
            seeds[extra["seed"]] += 1
    return seeds.most_common(1)[0][0] if seeds else None


@dataclass(frozen=True)
class BatchResult:
    graded: tuple[str, ...]
    skipped: tuple[str, ...]
    rows: tuple[GradeRow, ...]
    csv: Path
    seed: int
    seconds: float


def grade_batch(cfg: AssignmentConfig, path: Path, out_root: Path, opts: GradeOptions,
                progress: Callable[[str, float, float], None] | None = None) -> BatchResult:
    started = time.monotonic()
    seed = opts.seed if opts.seed is not None else _earlier_seed(out_root, cfg) if not opts.force else None
    seed = new_seed() if seed is None else seed
    submissions = intake.find_submissions(path, cfg)
    ids = [intake.student_id(p) for p in submissions]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"two submissions map to the same student id: {', '.join(dupes)}")
    todo = [p for p in submissions if opts.force or not _complete(out_root / intake.student_id(p))]
    skipped = tuple(intake.student_id(p) for p in submissions if p not in todo)
    report = progress or (lambda student, score, max_score: None)
    # every container of this batch carries its id, so an interrupted batch can remove them all
    batch_id, previous = secrets.token_hex(6), os.environ.get(BATCH_ENV)
    os.environ[BATCH_ENV] = batch_id  # inherited by the pool's processes
    try:
        if opts.jobs <= 1 or len(todo) <= 1:
            backend = opts.backend(cfg)
            try:
                for p in todo:
                    r = grade_one(cfg, backend, p, seed, out_root, opts.device)
                    report(r.student, r.score, r.max_score)
            finally:
                backend.shutdown()
        else:
            opts.backend(cfg).shutdown()  # fail fast, and clearly, when the sandbox cannot start at all
            _grade_pool(cfg, todo, seed, out_root, opts, report)
    except BaseException:
        if opts.sandbox == "docker":
            from dlgrade.sandbox.docker import remove_batch_containers
            remove_batch_containers(batch_id)
        raise
    finally:
        if previous is None:
            os.environ.pop(BATCH_ENV, None)
        else:
            os.environ[BATCH_ENV] = previous
    rows = tuple(GradeRow.from_results(read_results(out_root / sid / "results.json")) for sid in sorted(set(ids)))
    csv_path = write_grades_csv(list(rows), cfg.parts, out_root / "grades.csv")
    return BatchResult(tuple(intake.student_id(p) for p in todo), skipped, rows, csv_path, seed, time.monotonic() - started)
