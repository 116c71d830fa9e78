"""Benchmark: how long a realistic class takes to grade, per assignment, sandbox and -j (numbers, not a test).

usage: python scripts/bench.py [--assignments a,b] [--sandboxes process,docker] [--copies N] [--jobs 1,2]
                               [--kinds reference,bug,skeleton,slow] [--bugs K] [--out FILE] [--compare OLD.json]
       python scripts/bench.py --quick                    # about a minute: one assignment, reference + skeleton, -j 1
       python scripts/bench.py --compare OLD.json --against NEW.json   # compare two earlier runs, grade nothing

For every assignment found in assignments/*/assignment.toml it builds a class of N copies of: the reference, K bugs
of graders/<id>/bugs.toml (spread over the catalogue), the blank skeleton and a slow submission (the reference with
a fixed amount of wasted matrix work at the start of every ``forward``). It grades that class with the ``inprocess``
backend (the floor: no sandbox at all) and with each sandbox at each -j, every run in a fresh Python process, and
prints seconds per submission, the overhead over the floor, the parallel efficiency and peak memory.

Peak memory is VmHWM from /proc/<pid>/status (the most resident memory a process ever had), read at -j 1:
the grader is the benchmark's child process itself (for ``inprocess`` it includes the student code), a worker is read
just before it is closed (process sandbox: the worker's host pid that it reports; docker: the container's processes,
found through its cgroup), the process sandbox's zygote at the end. At -j > 1 each pool process is one such grader
with its own workers, so the per-process numbers of -j 1 hold there too and are not read again.

Results go to bench/out/<timestamp>.json (or --out). Timings are wall-clock seconds of the whole batch
(``dlgrade.grade.grade_batch``, as ``dlgrade grade`` runs it) divided by the class size; Python start-up and
``import torch`` of the benchmark's own process are outside the timer, those of -j pool processes inside it.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULT_TAG = "BENCH-RESULT "
KINDS = ("reference", "bug", "skeleton", "slow")


# ----------------------------------------------------------------------------- the class

@dataclass(frozen=True)
class Student:
    name: str
    kind: str          # reference | bug | skeleton | slow
    expect: str        # full | zero | loses points


def slow_sources(sources: dict[str, str], size: int) -> dict[str, str]:
    """The reference texts with wasted work (a size x size matrix product) at the start of every ``forward``.

    The product is deterministic and its result unused, so the submission stays correct and only gets slower,
    like a student's needlessly expensive code. Works on plain modules and on percent-format notebook sources."""
    out = {}
    for rel, text in sources.items():
        try:
            tree = ast.parse(text)
        except SyntaxError:
            out[rel] = text
            continue
        lines = text.splitlines(keepends=True)
        inserts: list[tuple[int, int]] = []   # (0-based line, indentation)
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for fn in cls.body:
                if not isinstance(fn, ast.FunctionDef) or fn.name != "forward":
                    continue
                body = fn.body
                first = body[1] if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(
                    getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str) else body[0]
                if first.lineno == fn.lineno:   # `def forward(self, x): return x` on one line
                    continue
                inserts.append((first.lineno - 1, first.col_offset))
        for line, indent in sorted(inserts, reverse=True):
            pad = " " * indent
            lines.insert(line, f"{pad}import torch as _bench_torch  # benchmark: wasted work, result unused\n"
                               f"{pad}_bench_torch.ones({size}, {size}).matmul(_bench_torch.ones({size}, {size}))\n")
        out[rel] = "".join(lines)
    return out


def build_class(cfg: Any, folder: Path, copies: int, kinds: tuple[str, ...], n_bugs: int,
                slow_size: int) -> tuple[list[Student], list[str]]:
    """Write the class under ``folder`` (one sub-folder per student); returns the students and what was left out."""
    from dlgrade.release import build_submission, reference_sources, reference_submission, skeleton_files
    from dlgrade.validate import bug_submission, load_bugs, materialise

    notes: list[str] = []
    cases: list[tuple[str, str, str, dict[str, bytes]]] = []
    if "reference" in kinds:
        cases.append(("reference", "reference", "full", reference_submission(cfg)))
    if "bug" in kinds and n_bugs > 0:
        bugs = load_bugs(cfg)
        picked = sorted({round(i * (len(bugs) - 1) / max(1, n_bugs - 1)) for i in range(min(n_bugs, len(bugs)))})
        for i in picked:
            try:
                cases.append((f"bug-{bugs[i].name}", "bug", "loses points", bug_submission(cfg, bugs[i])))
            except Exception as exc:  # a catalogue entry that does not apply: say so and go on
                notes.append(f"bug {bugs[i].name} left out: {exc}")
        if not bugs:
            notes.append("no bug catalogue (graders/<id>/bugs.toml): no bug in the class")
    if "skeleton" in kinds:
        cases.append(("skeleton", "skeleton", "zero", {r: d for r, d in skeleton_files(cfg).items() if r in cfg.submit}))
    if "slow" in kinds:
        sources = reference_sources(cfg)
        slowed = slow_sources(sources, slow_size)
        if slowed == sources:
            notes.append("slow submission left out: no forward method found to slow down")
        else:
            cases.append(("slow", "slow", "full", build_submission(cfg, slowed)))
    students = []
    for c in range(copies):
        for name, kind, expect, files in cases:
            student = f"c{c:02d}-{name}"
            materialise(files, folder / student)
            students.append(Student(student, kind, expect))
    return students, notes


# ----------------------------------------------------------------------------- one run (in a child process)

def vm_hwm_kb(pid: int | str) -> int | None:
    """Peak resident memory (VmHWM) of a live process in KiB; None when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _container_pids(container_id: str) -> list[int]:
    """Host pids of a running container, from its memory cgroup (v1 or v2, cgroupfs or systemd driver)."""
    for pattern in (f"/sys/fs/cgroup/memory/docker/{container_id}/cgroup.procs",
                    f"/sys/fs/cgroup/docker/{container_id}/cgroup.procs",
                    f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cgroup.procs",
                    f"/sys/fs/cgroup/memory/system.slice/docker-{container_id}.scope/cgroup.procs"):
        try:
            return [int(p) for p in Path(pattern).read_text().split()]
        except (OSError, ValueError):
            continue
    return []


class MeasuredBackend:
    """A backend that reads each worker's peak memory just before closing it (and records what the worker reported)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.workers: list[dict[str, Any]] = []   # per worker: peak KiB, device, isolation
        self.zygote_peak_kb: int | None = None

    def start(self, spec: Any, timeout: float = 60.0) -> Any:
        return _MeasuredWorker(self, self.inner.start(spec, timeout))

    def shutdown(self) -> None:
        zygote = getattr(self.inner, "_zygote", None)   # the process sandbox's: read before it goes
        if zygote is not None:
            self.zygote_peak_kb = max(self.zygote_peak_kb or 0, vm_hwm_kb(zygote.pid) or 0) or None
        self.inner.shutdown()


class _MeasuredWorker:
    def __init__(self, backend: MeasuredBackend, inner: Any) -> None:
        self.backend, self.inner = backend, inner

    @property
    def info(self) -> dict[str, Any]:
        return self.inner.info  # type: ignore[no-any-return]

    def request(self, message: dict[str, Any], timeout: Any) -> dict[str, Any]:
        return self.inner.request(message, timeout)  # type: ignore[no-any-return]

    def cpu_seconds(self) -> float | None:
        return self.inner.cpu_seconds()  # type: ignore[no-any-return]

    def output(self, limit: int = 20_000) -> str:
        return self.inner.output(limit)  # type: ignore[no-any-return]

    def close(self) -> None:
        kb: int | None = None
        if self.backend.name == "process" and isinstance(self.inner.info.get("pid"), int):
            kb = vm_hwm_kb(self.inner.info["pid"])
        elif self.backend.name == "docker" and hasattr(self.inner, "box"):
            peaks = [vm_hwm_kb(p) for p in _container_pids(self.inner.box.container.id)]
            kb = max((p for p in peaks if p is not None), default=None)
        self.backend.workers.append({"peak_kb": kb, "device": self.inner.info.get("device"),
                                     "isolation": self.inner.info.get("isolation")})
        self.inner.close()


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Grade the class once (one sandbox, one -j) in this process; what the parent records."""
    from dlgrade.config import load_assignment
    from dlgrade.grade import GradeOptions, grade_batch
    from dlgrade.results import read_results

    cfg = load_assignment(job["assignment"])
    measured: list[MeasuredBackend] = []

    @dataclass(frozen=True)
    class Measured(GradeOptions):
        def backend(self, cfg: Any = None) -> Any:
            b = MeasuredBackend(super().backend(cfg))
            measured.append(b)
            return b

    base = dict(sandbox=job["sandbox"], seed=job["seed"], jobs=job["jobs"], force=True, device=job["device"],
                backend_options=(("allow_unisolated", True),) if job["sandbox"] == "process" and job.get("allow_unisolated") else ())
    opts = Measured(**base) if job["jobs"] == 1 else GradeOptions(**base)
    out = Path(job["out"])
    load = os.getloadavg()[0]
    started = time.perf_counter()
    batch = grade_batch(cfg, Path(job["class_dir"]), out, opts)
    wall = time.perf_counter() - started
    students = {}
    for row in batch.rows:
        data = read_results(out / row.student / "results.json")
        students[row.student] = {"score": row.score, "max_score": row.max_score, "status": row.label,
                                 "seconds": float(data.get("execution_time", 0.0)),
                                 "grader_errors": len(data.get("extra_data", {}).get("grader_errors", []))}
    workers = [w for b in measured for w in b.workers]
    peaks = [w["peak_kb"] for w in workers if w["peak_kb"] is not None]
    return {"wall_s": wall, "n": len(batch.rows), "students": students, "load_before": load, "load_after": os.getloadavg()[0],
            "grader_peak_kb": vm_hwm_kb("self") if job["jobs"] == 1 else None,
            "worker_peak_kb": max(peaks) if peaks else None, "worker_peak_median_kb": statistics.median(peaks) if peaks else None,
            "zygote_peak_kb": max((b.zygote_peak_kb for b in measured if b.zygote_peak_kb), default=None),
            "devices": sorted({str(w["device"]) for w in workers if w["device"]}),
            "isolation": sorted({str(w["isolation"]) for w in workers if w["isolation"]})}


def run_child(job: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run :func:`run_one` in a fresh interpreter (so imports, caches and peak memory start from zero)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    try:
        done = subprocess.run([sys.executable, __file__, "--one", json.dumps(job)], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish within {timeout:.0f} s"}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])  # type: ignore[no-any-return]
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}


# ----------------------------------------------------------------------------- the parent: plan, summarise, compare

def machine() -> dict[str, Any]:
    import torch

    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    except OSError:
        pass
    mem_kb = next((int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal:")), 0)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                                cwd=ROOT).stdout.strip())
    return {"cores": os.cpu_count(), "cpu": model or platform.processor(), "memory_gb": round(mem_kb / 2**20, 1),
            "python": platform.python_version(), "torch": torch.__version__, "kernel": platform.release(),
            "commit": commit + ("+uncommitted changes" if dirty else ""), "load_1min": os.getloadavg()[0],
            "root": os.geteuid() == 0, "date": datetime.datetime.now().isoformat(timespec="seconds")}


def docker_problem() -> str | None:
    """Why the docker sandbox cannot run here (no engine, no image), or None."""
    try:
        from dlgrade.sandbox import get_backend
        get_backend("docker").shutdown()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0] + " (start it with scripts/start_docker.sh; build the image with make sandbox-image)"


def check(students: list[Student], result: dict[str, Any]) -> list[str]:
    """Graded as a grader must: reference and slow full marks, skeleton zero, bugs lose points."""
    problems = []
    for s in students:
        r = result["students"].get(s.name)
        if r is None:
            problems.append(f"{s.name}: no result")
        elif r["grader_errors"]:
            problems.append(f"{s.name}: grader error")
        elif s.expect == "full" and r["score"] != r["max_score"]:
            problems.append(f"{s.name}: {r['score']:g}/{r['max_score']:g}, expected full marks")
        elif s.expect == "zero" and r["score"] != 0:
            problems.append(f"{s.name}: {r['score']:g}, expected 0")
        elif s.expect == "loses points" and r["score"] >= r["max_score"]:
            problems.append(f"{s.name}: full marks, expected to lose points")
    return problems


def summarise(rows: list[dict[str, Any]]) -> None:
    """Add per-submission seconds, overhead over the floor, speed-up and efficiency to every row (in place)."""
    for r in rows:
        if "error" in r:
            continue
        r["s_per_submission"] = r["wall_s"] / max(1, r["n"])
    key = {(r["assignment"], r["sandbox"], r["jobs"]): r for r in rows if "error" not in r}
    for r in rows:
        if "error" in r:
            continue
        floor = key.get((r["assignment"], "inprocess", 1))
        one = key.get((r["assignment"], r["sandbox"], 1))
        r["overhead_s"] = r["s_per_submission"] - floor["s_per_submission"] if floor and r["sandbox"] != "inprocess" else None
        r["speedup"] = one["wall_s"] / r["wall_s"] if one else None
        r["efficiency"] = r["speedup"] / r["jobs"] if one else None
        if floor and floor is not r:
            diff = [s for s, v in r["students"].items() if floor["students"].get(s, {}).get("score") != v["score"]]
            r["scores_differ_from_floor"] = diff


def _mb(kb: int | None) -> str:
    return f"{kb / 1024:.0f}" if kb else "-"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'assignment':22s} {'sandbox':9s} {'-j':>2s} {'n':>3s} {'s/sub':>7s} {'overhead':>8s} {'speedup':>7s} {'eff':>5s} " \
           f"{'grader MB':>9s} {'worker MB':>9s} {'zygote MB':>9s}  checks"
    print(head)
    print("-" * len(head))
    for r in rows:
        label = f"{r['assignment']:22s} {r['sandbox']:9s} {r['jobs']:>2d}"
        if "error" in r:
            print(f"{label}  FAILED: {r['error']}")
            continue
        ov = f"{r['overhead_s']:+.3f}" if r.get("overhead_s") is not None else "floor" if r["sandbox"] == "inprocess" else "-"
        checks = "; ".join(r["problems"][:2] + [f"scores differ from inprocess: {', '.join(r['scores_differ_from_floor'][:3])}"]
                           if r.get("scores_differ_from_floor") else r["problems"][:2]) or "ok"
        print(f"{label} {r['n']:>3d} {r['s_per_submission']:7.2f} {ov:>8s} {r['speedup'] or 0:7.2f} {r['efficiency'] or 0:5.2f} "
              f"{_mb(r['grader_peak_kb']):>9s} {_mb(r['worker_peak_kb']):>9s} {_mb(r['zygote_peak_kb']):>9s}  {checks}")


def print_kinds(rows: list[dict[str, Any]], students: dict[str, list[Student]]) -> None:
    """Median grading time per kind of submission (results.json execution_time) at -j 1."""
    print("\nseconds per submission by kind (median execution_time at -j 1):")
    for r in rows:
        if "error" in r or r["jobs"] != 1:
            continue
        kinds: dict[str, list[float]] = {}
        for s in students[r["assignment"]]:
            if s.name in r["students"]:
                kinds.setdefault(s.kind, []).append(r["students"][s.name]["seconds"])
        print(f"  {r['assignment']:22s} {r['sandbox']:9s} " + "  ".join(f"{k} {statistics.median(v):.2f}" for k, v in kinds.items()))


def compare(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Print, per (assignment, sandbox, -j) in both runs, the old and new seconds per submission and the change."""
    def index(run: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
        return {(r["assignment"], r["sandbox"], r["jobs"]): r for r in run["rows"] if "error" not in r}
    a, b = index(old), index(new)
    print(f"\ncompare: {old['machine'].get('date')} ({old['machine'].get('commit')}, load {old['machine'].get('load_1min', 0):.1f}) "
          f"-> {new['machine'].get('date')} ({new['machine'].get('commit')}, load {new['machine'].get('load_1min', 0):.1f})")
    print(f"{'assignment':22s} {'sandbox':9s} {'-j':>2s} {'old s/sub':>9s} {'new s/sub':>9s} {'change':>7s} "
          f"{'old ovh':>7s} {'new ovh':>7s} {'old worker MB':>13s} {'new worker MB':>13s}")
    for k in sorted(set(a) | set(b)):
        o, n = a.get(k), b.get(k)
        if o is None or n is None:
            print(f"{k[0]:22s} {k[1]:9s} {k[2]:>2d}  only in the {'new' if o is None else 'old'} run")
            continue
        change = (n["s_per_submission"] - o["s_per_submission"]) / o["s_per_submission"] * 100
        def ovh(r: dict[str, Any]) -> str:
            return f"{r['overhead_s']:+.3f}" if r.get("overhead_s") is not None else "-"
        print(f"{k[0]:22s} {k[1]:9s} {k[2]:>2d} {o['s_per_submission']:9.3f} {n['s_per_submission']:9.3f} {change:+6.1f}% "
              f"{ovh(o):>7s} {ovh(n):>7s} {_mb(o.get('worker_peak_kb')):>13s} {_mb(n.get('worker_peak_kb')):>13s}")


def plan(args: argparse.Namespace) -> tuple[list[str], list[str], list[int]]:
    from dlgrade.config import known_assignments

    found = known_assignments(ROOT)
    assignments = args.assignments.split(",") if args.assignments else found
    unknown = [a for a in assignments if a not in found]
    if unknown:
        raise SystemExit(f"unknown assignment(s) {', '.join(unknown)}; found: {', '.join(found)}")
    sandboxes = [s for s in args.sandboxes.split(",") if s]
    jobs = [int(j) for j in args.jobs.split(",")] if args.jobs else list(range(1, (os.cpu_count() or 1) + 1))
    return assignments, sandboxes, jobs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assignments", help="comma-separated ids (default: every assignments/*/assignment.toml)")
    ap.add_argument("--sandboxes", default="process,docker", help="besides the inprocess floor (default process,docker)")
    ap.add_argument("--jobs", help="comma-separated -j values (default 1..cores)")
    ap.add_argument("--copies", type=int, default=1, help="copies of the class (default 1)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="which submissions make up the class (default: all four kinds)")
    ap.add_argument("--bugs", type=int, default=3, help="catalogued bugs per copy (default 3)")
    ap.add_argument("--slow-size", type=int, default=160, help="side of the wasted matrix product per forward (default 160)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--device", default="cpu", help="where workers train (cpu or cuda)")
    ap.add_argument("--allow-unisolated", action="store_true", help="let the process sandbox run where it cannot isolate")
    ap.add_argument("--no-floor", action="store_true", help="skip the inprocess floor")
    ap.add_argument("--quick", action="store_true", help="about a minute: the first assignment, reference + skeleton, process, -j 1")
    ap.add_argument("--out", help="results JSON (default bench/out/<timestamp>.json)")
    ap.add_argument("--compare", metavar="OLD.json", help="print the differences from an earlier run")
    ap.add_argument("--against", metavar="NEW.json", help="with --compare: compare two earlier runs, grade nothing")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(RESULT_TAG + json.dumps(run_one(json.loads(args.one))), flush=True)
        return
    if args.compare and args.against:
        compare(json.loads(Path(args.compare).read_text()), json.loads(Path(args.against).read_text()))
        return
    if args.quick:
        args.kinds, args.sandboxes, args.jobs, args.copies = "reference,skeleton", "process", "1", 1
        args.assignments = args.assignments or "lstm_lm_vit"
    from dlgrade.config import load_assignment

    assignments, sandboxes, jobs = plan(args)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    info = machine()
    print(f"machine: {info['cores']} cores, {info['memory_gb']} GB, {info['cpu']}, Python {info['python']}, torch {info['torch']}, "
          f"load {info['load_1min']:.1f}, commit {info['commit']}")
    notes: list[str] = []
    if "docker" in sandboxes and (why := docker_problem()):
        notes.append(f"docker skipped: {why}")
        print(notes[-1])
        sandboxes = [s for s in sandboxes if s != "docker"]
    tmp = Path(tempfile.mkdtemp(prefix="dlgrade-bench-"))
    rows: list[dict[str, Any]] = []
    students: dict[str, list[Student]] = {}
    for aid in assignments:
        try:
            cfg = load_assignment(aid, ROOT)
            students[aid], built = build_class(cfg, tmp / aid / "class", args.copies, kinds, args.bugs, args.slow_size)
        except Exception as exc:  # an assignment still being written: say why and go on with the others
            notes.append(f"{aid} skipped: could not build its class: {exc}")
            print(notes[-1])
            continue
        notes += [f"{aid}: {n}" for n in built]
        print(f"{aid}: class of {len(students[aid])} ({', '.join(s.name for s in students[aid][:len(students[aid]) // args.copies])}"
              f"{f' x {args.copies}' if args.copies > 1 else ''})" + "".join(f"\n  note: {n}" for n in built))
        runs = ([("inprocess", 1)] if not args.no_floor else []) + [(s, j) for s in sandboxes for j in jobs]
        for sandbox, j in runs:
            job = {"assignment": aid, "sandbox": sandbox, "jobs": j, "seed": args.seed, "device": args.device,
                   "class_dir": str(tmp / aid / "class"), "out": str(tmp / aid / f"out-{sandbox}-{j}"),
                   "allow_unisolated": args.allow_unisolated}
            t = time.perf_counter()
            result = run_child(job, timeout=300 + 180 * len(students[aid]))
            row = {"assignment": aid, "sandbox": sandbox, "jobs": j, **result}
            if "error" not in row:
                row["problems"] = check(students[aid], row)
            rows.append(row)
            print(f"  {sandbox:9s} -j {j}: " + (f"{row['wall_s']:.1f} s for {row['n']} ({time.perf_counter() - t:.0f} s with start-up)"
                                               if "error" not in row else f"FAILED: {row['error']}"), flush=True)
    summarise(rows)
    print()
    print_table(rows)
    print_kinds(rows, students)
    for n in notes:
        print(f"note: {n}")
    run = {"machine": info, "args": {k: v for k, v in vars(args).items() if k not in ("one", "compare", "against")},
           "classes": {a: [s.__dict__ for s in v] for a, v in students.items()}, "notes": notes, "rows": rows}
    out = Path(args.out) if args.out else ROOT / "bench" / "out" / f"{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(run, indent=1))
    print(f"\nWrote {out}" + ("" if info["load_1min"] < (info["cores"] or 1) else
                            f" (load {info['load_1min']:.1f} on {info['cores']} cores: the machine was busy; re-measure on a quiet one)"))
    if args.compare:
        compare(json.loads(Path(args.compare).read_text()), run)


if __name__ == "__main__":
    main()
