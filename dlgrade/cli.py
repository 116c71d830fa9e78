"""The `dlgrade` command line: parses arguments and forwards to one pipeline stage."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dlgrade import __version__
from dlgrade.errors import ConfigError, SandboxUnavailable

if TYPE_CHECKING:
    from dlgrade.config import AssignmentConfig
    from dlgrade.grade import GradeOptions


def _console():  # type: ignore[no-untyped-def]
    from rich.console import Console
    return Console(stderr=False, highlight=False)


def cmd_release(args: argparse.Namespace) -> int:
    from dlgrade.config import load_assignment
    from dlgrade.release import build_release

    rel = build_release(load_assignment(args.assignment), Path(args.out))
    print(f"Released {len(rel.files)} files to {rel.folder} and {rel.zip}")
    return 0


def grade_options(args: argparse.Namespace) -> tuple[AssignmentConfig, GradeOptions]:
    """The assignment (with command-line limits) and the grading options of `dlgrade grade`."""
    from dlgrade.config import load_assignment
    from dlgrade.grade import GradeOptions

    cfg = load_assignment(args.assignment).with_limits(memory_mb=args.memory_mb, call_timeout_s=args.call_timeout,
                                                       submission_timeout_s=args.submission_timeout, cpus=args.cpus,
                                                       processes=args.pids)
    if args.gpus and args.sandbox != "docker":
        raise ValueError("--gpus is for --sandbox docker; with the process sandbox use --device cuda")
    device = args.device or ("cuda" if args.gpus else "cpu")
    backend_options = (("gpus", args.gpus), ("image", args.image), ("cpus", args.cpus), ("pids", args.pids),
                       ("allow_unisolated", True if getattr(args, "allow_unisolated", False) else None))
    opts = GradeOptions(sandbox=args.sandbox, seed=args.seed, jobs=args.jobs, force=args.force, device=device,
                        backend_options=tuple((k, v) for k, v in backend_options if v is not None))
    return cfg, opts


def cmd_grade(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from dlgrade.executors.local import grade_local
    from dlgrade.intake import find_submissions

    cfg, opts = grade_options(args)
    if args.executor == "slurm":
        return cmd_grade_slurm(args, cfg, opts)
    if args.corpus and not args.similarity:
        raise ValueError("--corpus is for --similarity")
    out = Path(args.out)
    total = len(find_submissions(Path(args.path), cfg))
    console = _console()
    with Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.description}"), console=console, transient=True,
                  disable=not sys.stdout.isatty()) as bar:
        task = bar.add_task("", total=total)

        def progress(student: str, score: float, max_score: float) -> None:
            bar.update(task, advance=1, description=f"{student}: {score:g}/{max_score:g}")

        batch = grade_local(cfg, Path(args.path), out, opts, progress)
    table = Table(title=f"{cfg.id} (seed {batch.seed})")
    for col in ("student", "score", "max", *cfg.parts, "status"):
        table.add_column(col)
    for row in batch.rows:
        table.add_row(row.student, f"{row.score:g}", f"{row.max_score:g}", *(f"{row.parts.get(p, 0):g}" for p in cfg.parts),
                      row.label)
    console.print(table)
    skipped = f", {len(batch.skipped)} already complete (use --force to regrade)" if batch.skipped else ""
    print(f"Graded {len(batch.graded)} submission(s) in {batch.seconds:.1f} s{skipped}; "
          f"results in {out}/<student>/results.json, grades in {batch.csv}")
    broken = [r for r in batch.rows if r.status != "graded"]
    for row in broken:
        print(f"dlgrade: {row.student}: {row.label}", file=sys.stderr)
    for row in batch.rows:
        if row.status == "graded" and row.faults:
            print(f"dlgrade: {row.student}: graded, but the code {'; '.join(row.faults)}", file=sys.stderr)
    for row in batch.rows:  # the sandbox ended them; the instructor should know the code tried to outlive its worker
        for note in row.leftovers:
            print(f"dlgrade: {row.student}: {note}", file=sys.stderr)
    if args.similarity:
        _run_similarity(cfg, Path(args.path), out / "similarity", args)
    if args.report:
        _print_reports(out, "student", False, False)
    if broken and not args.allow_broken:
        print(f"dlgrade: {len(broken)} of {len(batch.rows)} submission(s) could not be graded (see above; the class summary lists "
              "them first); exit status 1 (--allow-broken: 0)", file=sys.stderr)
        return 1
    return 0


def cmd_grade_slurm(args: argparse.Namespace, cfg: AssignmentConfig, opts: GradeOptions) -> int:
    from dlgrade.executors.settings import slurm_settings
    from dlgrade.executors.slurm import grade_command

    settings = slurm_settings(cfg, partition=args.partition, account=args.account, qos=args.qos, time=args.time,
                              mem_per_task_mb=args.mem_per_task, cpus_per_task=args.cpus_per_task,
                              gpus_per_task=args.gpus_per_task, students_per_task=args.students_per_task,
                              max_concurrent=args.max_concurrent)
    return grade_command(cfg, Path(args.path), Path(args.out), opts, settings, args.wait, args.device is not None, _console())


def cmd_status(args: argparse.Namespace) -> int:
    from dlgrade.executors.status import cancel, show

    return cancel(Path(args.results)) if args.cancel else show(Path(args.results), _console(), watch=args.watch)


def _print_reports(results: Path, audience: str, after_due_date: bool, published: bool) -> int:
    from dlgrade.report import ReportView, write_reports

    rep = write_reports(results, ReportView(audience, after_due_date=after_due_date, published=published))
    problems = [f"{len(rep.failed)} failed to grade" if rep.failed else "", f"{len(rep.unreadable)} unreadable" if rep.unreadable else ""]
    extra = "; ".join(p for p in problems if p)
    print(f"Wrote {len(rep.students)} {audience} report(s) (HTML + Markdown) to {rep.folder}/students/ and the class summary "
          f"{rep.summary} in {rep.seconds:.2f} s" + (f" ({extra}, see the summary)" if extra else ""))
    return 0


def _run_similarity(cfg: AssignmentConfig, path: Path, out: Path, args: argparse.Namespace) -> int:
    from dlgrade.similarity import SimilarityOptions, check_similarity

    given = {k: getattr(args, k) for k in ("threshold", "top") if getattr(args, k, None) is not None}  # grade: the defaults
    opts = SimilarityOptions(corpus=tuple(Path(c) for c in args.corpus or ()), **given)
    run = check_similarity(cfg, path, out, opts)
    print(f"Compared {run.students} submission(s) with each other and with {run.corpus_files} corpus file(s) in {run.seconds:.1f} s: "
          f"{len(run.flagged)} pair(s) of {len(run.pairs)} at or above {opts.threshold:g}; ranked pairs in {run.csv}, "
          f"side by side in {run.index}" + (f" ({len(run.problems)} not compared, see the index)" if run.problems else ""))
    return 0


def cmd_similarity(args: argparse.Namespace) -> int:
    from dlgrade.config import load_assignment

    return _run_similarity(load_assignment(args.assignment), Path(args.path), Path(args.out), args)


def cmd_report(args: argparse.Namespace) -> int:
    return _print_reports(Path(args.results), args.audience, args.after_due_date, args.published)


def cmd_validate(args: argparse.Namespace) -> int:
    from rich.table import Table

    from dlgrade.config import load_assignment
    from dlgrade.validate import Case, validate

    cfg = load_assignment(args.assignment)
    out = Path(args.out) / cfg.id / "validate"
    def progress(case: Case) -> None:
        print(f"  {case.name}: {case.score:g}/{case.max_score:g} {'ok' if case.ok else 'NOT AS EXPECTED'}", flush=True)

    cases = validate(cfg, out, sandbox=args.sandbox, seed=args.seed, only=args.only, seeds=args.seeds, jobs=args.jobs,
                     fast=args.fast, progress=progress)
    table = Table(title=f"validate {cfg.id}")
    for col in ("case", "expected", "score", "ok", "detail"):
        table.add_column(col)
    for c in cases:
        table.add_row(c.name, c.expectation, f"{c.score:g}/{c.max_score:g}", "yes" if c.ok else "NO", c.detail)
    _console().print(table)
    bad = [c.name for c in cases if not c.ok]
    print(f"{len(cases) - len(bad)}/{len(cases)} expectations hold; details in {out}"
          + (f"; failing: {', '.join(bad)}" if bad else ""))
    return 1 if bad else 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from rich.markup import escape
    from rich.table import Table

    from dlgrade.calibrate import calibrate, write_calibration
    from dlgrade.config import load_assignment

    cfg = load_assignment(args.assignment)
    out = Path(args.out) / cfg.id / "calibrate"
    reports = calibrate(cfg, args.seeds, out, names=args.only, sandbox=args.sandbox)
    for rep in reports:
        table = Table(title=escape(f"{cfg.id} [thresholds.{rep.name}]: {rep.threshold.metric} ({rep.threshold.direction} is better)"))
        for col in ("seed", *rep.values):
            table.add_column(col)
        for i, seed in enumerate(args.seeds):
            table.add_row(str(seed), *(f"{v[i]:.3f}" for v in rep.values.values()))
        _console().print(table)
        for line in rep.unmeasured[:10]:
            print(f"  not measured: {line}")
        print(f"[thresholds.{rep.name}]: suggested {rep.suggested:g} ({'separates' if rep.separated else 'does NOT separate'} "
              f"the reference from {', '.join(rep.threshold.required_bad) or 'no required bad model'}); assignment.toml has "
              f"{rep.threshold.threshold:g}, which {'holds' if rep.current_ok else 'does NOT hold'} on every seed")
    if args.write:
        print(f"Wrote {write_calibration(cfg, args.seeds, reports, args.sandbox)}")
    return 0 if all(r.current_ok for r in reports) else 1


def cmd_bundle(args: argparse.Namespace) -> int:
    from dlgrade.bundle import build_bundle
    from dlgrade.config import load_assignment

    b = build_bundle(load_assignment(args.assignment), Path(args.out), memory_mb=args.memory_mb, cpus=args.cpus,
                     call_timeout_s=args.call_timeout, submission_timeout_s=args.submission_timeout,
                     run_timeout_s=args.run_timeout)
    lim = b.settings.limits
    print(f"Bundled {len(b.files)} files into {b.zip} ({b.zip.stat().st_size / 1e6:.1f} MB): worker memory {lim.memory_mb} MB, "
          f"suite timeout {lim.submission_timeout_s:g} s, whole run {b.settings.run_timeout_s:g} s; upload it as the Gradescope autograder")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    folder = Path(args.folder).resolve()
    tests = folder / "public_tests"
    if not tests.is_dir():
        print(f"dlgrade: error: {folder} has no public_tests/ folder: run `dlgrade check` inside your assignment folder "
              "(or give its path: dlgrade check FOLDER)", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "pytest", str(tests), "-q", "-p", "no:cacheprovider", *args.pytest_args]
    return subprocess.call(cmd, cwd=folder, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})


def _assignment_ids() -> str:
    try:
        from dlgrade.config import known_assignments
        ids = known_assignments()
    except Exception:  # no project root found (e.g. an installed copy outside a checkout): the help still works
        ids = []
    return ", ".join(ids) if ids else "see assignments/ in the project"


def _add_assignment(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assignment", help=f"the assignment id, a folder of assignments/ ({_assignment_ids()})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlgrade", description="Autograder for deep-learning homework.")
    p.add_argument("--version", action="version", version=f"dlgrade {__version__}")
    sp = p.add_subparsers(dest="command", required=True)

    r = sp.add_parser("release", help="build the student release (skeleton, public tests, handout, zip)")
    _add_assignment(r)
    r.add_argument("--out", default="dist", help="where the release goes: OUT/<id>/ and OUT/<id>/student.zip (default: dist)")
    r.set_defaults(func=cmd_release)

    g = sp.add_parser("grade", help="grade one submission or a folder of submissions")
    _add_assignment(g)
    g.add_argument("path", help="a submission (folder or zip) or a folder with one entry per student")
    g.add_argument("--sandbox", choices=["process", "docker", "inprocess"], default="process",
                   help="process (default), docker (one container per submission) or inprocess (authoring only)")
    g.add_argument("--out", default="dist/results", help="results folder: OUT/<student>/results.json, OUT/grades.csv and "
                                                          "OUT/reports/ (default: dist/results)")
    g.add_argument("--seed", type=int, default=None,
                   help="input seed (default: the one recorded by earlier results in --out, so a re-run after an "
                        "interruption grades everyone with the same inputs; else a fresh one, recorded in the results)")
    g.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="submissions graded at once, each in its own worker (default 1; at most your CPU count is useful)")
    g.add_argument("--force", action=argparse.BooleanOptionalAction, default=False,
                   help="regrade students whose results are already complete (default: skip them)")
    g.add_argument("--memory-mb", type=int, default=None, metavar="MB",
                   help="memory limit of one worker in MB (default: the assignment's [limits] memory_mb)")
    g.add_argument("--cpus", type=int, default=None, metavar="N",
                   help="CPUs per worker: its torch threads, a CPU quota in docker (default: [limits] cpus)")
    g.add_argument("--pids", type=int, default=None, metavar="N", help="process limit per worker (default: [limits] processes)")
    g.add_argument("--allow-unisolated", action="store_true",
                   help="process sandbox without root where user namespaces are refused: grade anyway, with only rlimits "
                        "(the worker can read what you can; also DLGRADE_ALLOW_UNISOLATED=1)")
    g.add_argument("--call-timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit of one call into the student's code, in seconds of the worker's CPU time (wall-clock "
                        "time stops it at 4 times that; default: [limits] call_timeout_s)")
    g.add_argument("--submission-timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit of one submission's whole suite, in wall-clock seconds (default: [limits] submission_timeout_s)")
    g.add_argument("--allow-broken", action="store_true",
                   help="exit 0 even when a submission could not be graded (default: exit 1, after grading everyone else)")
    g.add_argument("--gpus", default=None, metavar="all|N",
                   help="docker: give each container GPUs (all, or a count); the worker then trains on cuda")
    g.add_argument("--image", default=None, help="docker: sandbox image (default: dlgrade-sandbox:cpu, :gpu with --gpus)")
    g.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="where the worker trains (default: cpu; cuda with --gpus); falls back to cpu with a warning")
    g.add_argument("--report", action=argparse.BooleanOptionalAction, default=True,
                   help="write student reports and the class summary under OUT/reports (default: on; --no-report skips)")
    g.add_argument("--similarity", action="store_true",
                   help="after grading, compare the submissions with each other and the --corpus (OUT/similarity, instructors only)")
    g.add_argument("--corpus", action="append", metavar="DIR", help="with --similarity: a folder of known solutions (.py, .ipynb)")
    sl = g.add_argument_group("cluster", "--executor slurm: a job array on a Slurm cluster (defaults: [slurm] of assignment.toml; "
                                         "docs/cluster.md)")
    sl.add_argument("--executor", choices=["local", "slurm"], default="local",
                    help="local (default: this machine, -j workers) or slurm (sbatch a job array; re-run to resume)")
    sl.add_argument("--partition", default=None, help="Slurm partition (default: [slurm] partition, else the cluster's default)")
    sl.add_argument("--account", default=None, help="Slurm account to charge (default: [slurm] account, else yours)")
    sl.add_argument("--qos", default=None, help="Slurm quality of service (default: [slurm] qos, else none)")
    sl.add_argument("--time", default=None, metavar="HH:MM:SS", help="time limit of one array task (default 01:00:00)")
    sl.add_argument("--mem-per-task", type=int, default=None, metavar="MB",
                    help="memory of one array task (default: the worker's --memory-mb plus 1024 for the grader)")
    sl.add_argument("--cpus-per-task", type=int, default=None, metavar="N", help="default: the worker's CPUs ([limits] cpus)")
    sl.add_argument("--gpus-per-task", type=int, default=None, metavar="N", help="GPUs of one array task; the worker then "
                                                                               "trains on cuda unless --device cpu")
    sl.add_argument("--students-per-task", type=int, default=None, metavar="N", help="students one task grades in turn (default 4)")
    sl.add_argument("--max-concurrent", type=int, default=None, metavar="N", help="array tasks running at once (default: no limit)")
    sl.add_argument("--wait", action="store_true", help="block until the run has finished, then show grades.csv")
    g.set_defaults(func=cmd_grade)

    st = sp.add_parser("status", help="done / running / failed / missing per student of a results folder (and its Slurm run)")
    st.add_argument("results", help="the folder `dlgrade grade --out` wrote")
    st.add_argument("--watch", action="store_true", help="a live progress bar until no task is queued or running")
    st.add_argument("--cancel", action="store_true", help="scancel the latest Slurm run (finished tests are kept)")
    st.set_defaults(func=cmd_status)

    si = sp.add_parser("similarity", help="flag submissions that match each other or known solutions (ranked CSV, side-by-side HTML)")
    _add_assignment(si)
    si.add_argument("path", help="a folder with one submission (folder or zip) per student, as for `dlgrade grade`")
    si.add_argument("--corpus", action="append", metavar="DIR",
                    help="a folder of known solutions (any tree of .py and .ipynb files); repeat for several")
    si.add_argument("--threshold", type=float, default=0.7,
                    help="flag a pair when either side has at least this share of its own code in the other (default 0.7)")
    si.add_argument("--out", default="dist/similarity", help="where the CSV and pages go (default: dist/similarity)")
    si.add_argument("--top", type=int, default=20, help="side-by-side pages for this many of the top pairs (default 20)")
    si.set_defaults(func=cmd_similarity)

    rp = sp.add_parser("report", help="write per-student HTML/Markdown reports and the class summary from a results folder "
                                      "(replaces RESULTS/reports)",
                       description="Writes RESULTS/reports/students/<student>.html and .md, the class summary RESULTS/reports/"
                                   "index.html and grades_canvas.csv; files already there are overwritten.")
    rp.add_argument("results", help="the folder `dlgrade grade --out` wrote (<student>/results.json)")
    rp.add_argument("--audience", choices=["student", "instructor"], default="student",
                    help="student (default): tests the visibility rules hide show only their name; instructor: everything")
    rp.add_argument("--after-due-date", action="store_true", help="student audience: also show after_due_date tests")
    rp.add_argument("--published", action="store_true",
                    help="student audience: grades are published (after_published and after_due_date tests shown, full totals)")
    rp.set_defaults(func=cmd_report)

    v = sp.add_parser("validate", help="reference = full marks, skeleton = 0, every catalogued bug loses points")
    _add_assignment(v)
    v.add_argument("--sandbox", choices=["process", "docker", "inprocess"], default="process",
                   help="sandbox the cases are graded in (default: process)")
    v.add_argument("--out", default="dist", help="graded cases go to OUT/<id>/validate (default: dist)")
    v.add_argument("--seed", type=int, default=None, help="input seed (default: a fresh one)")
    v.add_argument("--only", nargs="*", default=None, help="case names (reference, skeleton, full-marks or bug names)")
    v.add_argument("--seeds", type=int, default=1,
                   help="grade every bug at this many seeds; each must lose the same points at every seed (default 1)")
    v.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                   help="cases graded at once, each in a process and worker of its own (default 1; at most your CPU count is useful)")
    v.add_argument("--fast", action="store_true",
                   help="skip a bug's threshold training once its unit tests have caught it, unless its `fails` names a "
                        "threshold test (default: every test runs for every case)")
    v.set_defaults(func=cmd_validate)

    cal = sp.add_parser("calibrate", help="measure the threshold tests on the reference and the bad models over several seeds")
    _add_assignment(cal)
    cal.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5], help="run seeds (default: 0 to 5)")
    cal.add_argument("--only", nargs="*", default=None, help="threshold names (default: every [thresholds.*] table)")
    cal.add_argument("--sandbox", choices=["process", "docker", "inprocess"], default="process",
                     help="sandbox the runs are graded in (default: process)")
    cal.add_argument("--out", default="dist", help="where the graded runs go (default: dist/<id>/calibrate)")
    cal.add_argument("--write", action="store_true", help="write graders/<id>/CALIBRATION.md")
    cal.set_defaults(func=cmd_calibrate)

    b = sp.add_parser("bundle", help="build the Gradescope autograder zip (setup.sh, run_autograder, engine, hidden suite)")
    _add_assignment(b)
    b.add_argument("--out", default="dist", help="the bundle goes to OUT/<id>/autograder.zip (default: dist)")
    b.add_argument("--memory-mb", type=int, default=None, metavar="MB",
                   help="worker memory on Gradescope in MB (default: [gradescope] memory_mb, else 384)")
    b.add_argument("--cpus", type=int, default=None, metavar="N",
                   help="torch threads in the worker on Gradescope (default: [gradescope] cpus, else 1)")
    b.add_argument("--call-timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit of one call into the student's code, in seconds (default: [gradescope] call_timeout_s, "
                        "else 60)")
    b.add_argument("--submission-timeout", type=float, default=None, metavar="SECONDS",
                   help="the hidden suite's budget in seconds (default: [gradescope] submission_timeout_s, else 480)")
    b.add_argument("--run-timeout", type=float, default=None, metavar="SECONDS",
                   help="the whole run_autograder in seconds (default: [gradescope] run_timeout_s, else 570)")
    b.set_defaults(func=cmd_bundle)

    c = sp.add_parser("check", help="run the public tests in a student release folder")
    c.add_argument("folder", nargs="?", default=".", help="the unzipped student release (default: the current folder)")
    c.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed on to pytest (e.g. -k layernorm -x)")
    c.set_defaults(func=cmd_check)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, FileNotFoundError, ValueError, SandboxUnavailable) as exc:
        print(f"dlgrade: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dlgrade: interrupted", file=sys.stderr)
        return 130
