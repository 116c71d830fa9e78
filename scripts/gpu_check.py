"""The GPU check's driver (run it through scripts/gpu_check.sh): grading with --device cuda, compared with the CPU.

For every assignment (assignments/*/assignment.toml): the reference, one catalogued bug and the skeleton are graded
with ``dlgrade grade --device DEVICE`` twice with one seed, and once on the CPU with the same seed. Checks:
- a worker started for the assignment reports the device (and, for cuda, that CUDA is available in it), and no
  results file carries the worker's "CUDA requested but not available" warning;
- the two GPU runs give the same score and the same verdict (pass/fail) per test; the GPU verdicts equal the CPU's;
- the GPU is in use while grading (nvidia-smi's memory.used, sampled, rises above its level before);
and it reports seconds per submission and per part, CPU against GPU. Every step is time-boxed by a deadline.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from bench import build_class  # noqa: E402


class GpuMemory:
    """Samples nvidia-smi's memory.used (MiB) in the background; no-op without nvidia-smi."""

    def __init__(self) -> None:
        self.tool = shutil.which("nvidia-smi")
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def read(self) -> int | None:
        if not self.tool:
            return None
        try:
            out = subprocess.run([self.tool, "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            return int(out.split()[0])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            return None

    def __enter__(self) -> GpuMemory:
        def loop() -> None:
            while not self._stop.wait(0.5):
                v = self.read()
                if v is not None:
                    self.samples.append(v)
        if self.tool:
            self._thread = threading.Thread(target=loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def probe_worker(aid: str, device: str) -> dict[str, Any]:
    """Start one process-sandbox worker for the assignment's reference on ``device``; what it reports."""
    from dlgrade.config import load_assignment
    from dlgrade.grade import _spec
    from dlgrade.release import reference_submission
    from dlgrade.sandbox import get_backend

    cfg = load_assignment(aid, ROOT)
    backend = get_backend("process", preload=cfg.preload)
    try:
        worker = backend.start(_spec(cfg, reference_submission(cfg), Path(tempfile.mkdtemp()), device))
        try:
            ping = worker.request({"op": "ping"}, 60)
            return {"hello_device": worker.info.get("device"), "ping": ping.get("value"), "warnings": worker.info.get("warnings", []),
                    "isolation": worker.info.get("isolation")}
        finally:
            worker.close()
    finally:
        backend.shutdown()


def grade(aid: str, class_dir: Path, out: Path, device: str, seed: int, timeout: float) -> dict[str, Any]:
    """``dlgrade grade`` on the class; per student: score, verdicts per test, seconds per part, warnings."""
    cmd = [sys.executable, "-m", "dlgrade", "grade", aid, str(class_dir), "--out", str(out), "--seed", str(seed), "--force",
           "--device", device]
    t = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        return {"error": f"not finished within its time box ({timeout:.0f} s)"}
    wall = time.perf_counter() - t
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: " + " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])}
    students: dict[str, Any] = {}
    for res in sorted(out.glob("*/results.json")):
        data = json.loads(res.read_text())
        extra = data.get("extra_data", {})
        parts: dict[str, float] = {}
        for t_ in extra.get("tests", []):
            parts[t_.get("part") or "?"] = parts.get(t_.get("part") or "?", 0.0) + float(t_.get("seconds", 0.0))
        students[res.parent.name] = {
            "score": data.get("score"), "max_score": extra.get("max_score"), "seconds": data.get("execution_time"),
            "verdicts": {t_["nodeid"].rsplit("::", 1)[-1]: t_["status"] for t_ in extra.get("tests", [])},
            "parts": parts, "warnings": extra.get("warnings", []), "grader_errors": len(extra.get("grader_errors", []))}
    return {"wall_s": wall, "students": students}


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Differences in score or per-test verdict between two runs of the same class."""
    diffs = []
    for s in sorted(set(a["students"]) | set(b["students"])):
        x, y = a["students"].get(s), b["students"].get(s)
        if x is None or y is None:
            diffs.append(f"{s}: graded in one run only")
            continue
        if x["score"] != y["score"]:
            diffs.append(f"{s}: score {x['score']} vs {y['score']}")
        changed = [t for t in set(x["verdicts"]) | set(y["verdicts"]) if x["verdicts"].get(t) != y["verdicts"].get(t)]
        if changed:
            diffs.append(f"{s}: verdicts differ in {', '.join(sorted(changed)[:4])}")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default=os.environ.get("DEVICE", "cuda"))
    ap.add_argument("--assignments", help="comma-separated (default: all)")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--budget", type=float, default=float(os.environ.get("BUDGET_S", "400")), help="seconds for everything")
    ap.add_argument("--out", default=os.environ.get("OUT") or "")
    args = ap.parse_args()
    deadline = time.monotonic() + args.budget
    import torch

    from dlgrade.config import known_assignments, load_assignment

    env = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(), "device": args.device, "cores": os.cpu_count(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "python": sys.version.split()[0],
           "namespaces": os.environ.get("DLGRADE_NAMESPACES", "1")}
    print("environment: " + ", ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("FAIL: --device cuda asked for, but torch sees no CUDA device here")
        return 2
    aids = args.assignments.split(",") if args.assignments else known_assignments(ROOT)
    work = Path(tempfile.mkdtemp(prefix="dlgrade-gpu-check-"))
    report: dict[str, Any] = {"environment": env, "assignments": {}}
    classes: dict[str, Path] = {}
    for aid in aids:
        entry: dict[str, Any] = report["assignments"].setdefault(aid, {})
        try:
            cfg = load_assignment(aid, ROOT)
            students, notes = build_class(cfg, work / aid / "class", 1, ("reference", "bug", "skeleton"), 1, 0)
            entry["class"] = [s.name for s in students]
            entry["notes"] = notes
            classes[aid] = work / aid / "class"
            entry["probe"] = probe_worker(aid, args.device)
        except Exception as exc:
            entry["error"] = f"could not set up: {exc}"
        print(f"{aid}: " + (entry.get("error") or f"class {', '.join(entry['class'])}; worker reports {entry['probe']}"), flush=True)

    # the CPU runs (one thread each) go alongside the GPU runs, which go one after the other so their times are clean
    cpu_results: dict[str, dict[str, Any]] = {}
    def cpu_run(aid: str) -> None:
        cpu_results[aid] = grade(aid, classes[aid], work / aid / "cpu", "cpu", args.seed, deadline - time.monotonic() - 5)
    threads = [threading.Thread(target=cpu_run, args=(aid,), daemon=True) for aid in classes]
    for t in threads:
        t.start()
    memory = GpuMemory()
    before = memory.read()
    with memory:
        for aid in classes:
            entry = report["assignments"][aid]
            for run in ("gpu1", "gpu2"):
                left = deadline - time.monotonic() - 5
                entry[run] = grade(aid, classes[aid], work / aid / run, args.device, args.seed, left) if left > 10 else \
                    {"error": "not run: the time box was used up"}
                r = entry[run]
                print(f"{aid} {run}: " + (r.get("error") or f"{r['wall_s']:.1f} s for {len(r['students'])}"), flush=True)
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    report["gpu_memory_mib"] = {"before": before, "max_while_grading": max(memory.samples, default=None)}

    ok = True
    rows = []
    for aid in classes:
        entry = report["assignments"][aid]
        entry["cpu"] = cpu_results.get(aid, {"error": "not finished within the time box"})
        g1, g2, cpu = entry["gpu1"], entry["gpu2"], entry["cpu"]
        checks: list[str] = []
        probe = entry.get("probe", {})
        if probe.get("hello_device") != args.device.split(":")[0] and probe.get("hello_device") != args.device:
            checks.append(f"worker reports device {probe.get('hello_device')!r}")
        for name, r in (("gpu run 1", g1), ("gpu run 2", g2), ("cpu run", cpu)):
            if "error" in r:
                checks.append(f"{name}: {r['error']}")
        if "error" not in g1:
            fell_back = [s for s, v in g1["students"].items() if any("CUDA requested but not available" in w for w in v["warnings"])]
            if fell_back:
                checks.append(f"workers fell back to the CPU: {', '.join(fell_back)}")
            errors = [s for s, v in g1["students"].items() if v["grader_errors"]]
            if errors:
                checks.append(f"grader errors: {', '.join(errors)}")
        if "error" not in g1 and "error" not in g2:
            entry["gpu_twice_diffs"] = compare_runs(g1, g2)
            checks += [f"gpu twice: {d}" for d in entry["gpu_twice_diffs"]]
        if "error" not in g1 and "error" not in cpu:
            entry["gpu_vs_cpu_diffs"] = [d for d in compare_runs(g1, cpu) if "verdicts" in d or "one run" in d]
            checks += [f"gpu vs cpu: {d}" for d in entry["gpu_vs_cpu_diffs"]]
        entry["checks"] = checks or ["ok"]
        ok = ok and not checks
        for student in entry.get("class", []):
            c = cpu.get("students", {}).get(student, {})
            g = g1.get("students", {}).get(student, {})
            rows.append((aid, student, c, g))
    print(f"\n{'assignment':22s} {'submission':40s} {'score cpu/gpu':>15s} {'cpu s':>7s} {'gpu s':>7s}  per part cpu/gpu s")
    for aid, student, c, g in rows:
        parts = " ".join(f"{p} {c.get('parts', {}).get(p, 0):.1f}/{g.get('parts', {}).get(p, 0):.1f}"
                         for p in sorted(set(c.get("parts", {})) | set(g.get("parts", {}))))
        print(f"{aid:22s} {student:40s} {str(c.get('score')) + '/' + str(g.get('score')):>15s} {c.get('seconds') or 0:7.2f} "
              f"{g.get('seconds') or 0:7.2f}  {parts}")
    print()
    for aid in classes:
        print(f"{aid}: " + "; ".join(report["assignments"][aid]["checks"]))
    for aid, entry in report["assignments"].items():
        if "error" in entry:
            print(f"{aid}: {entry['error']}")
    mem = report["gpu_memory_mib"]
    print(f"GPU memory used (nvidia-smi): {mem['before']} MiB before, at most {mem['max_while_grading']} MiB while grading")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(report, indent=1))
        print(f"Wrote {Path(args.out) / 'gpu_check.json'}")
    print("GPU CHECK: " + ("PASSED" if ok else "FAILED (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
