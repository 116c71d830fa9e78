"""otter-grader side by side with dlgrade on the same small suite (``make bench-peers``; numbers, not a test).

usage: .venv/bin/python scripts/bench_peers/run.py [--otter .venv-peers/bin/otter] [--class-size 20] [--repeat 1] [--out FILE]

The suite (LayerNorm, split/merge heads, attention weights) is written once, in ``peer_checks.py``. Three notebooks
(correct, buggy, blank) are graded by ``otter run`` (non-containerised Otter: the notebook runs in a Jupyter kernel,
then the test files run in that kernel) and by ``dlgrade grade`` (the process sandbox) from a throw-away assignment
in a temporary project root (DLGRADE_ROOT), so nothing is added to the shipped assignments. Each tool is timed as
an instructor runs it: a fresh command per submission, and a class of N copies (otter: N commands, one per
submission, as ``otter run`` takes one; dlgrade: one ``dlgrade grade`` of the class folder).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import peer_checks  # noqa: E402

ASSIGNMENT = "peer_suite"

OTTER_TEST = '''\
OK_FORMAT = False

from otter.test_files import test_case

import peer_checks

name = "{name}"
points = {points}


@test_case(points={points})
def test_{name}(env):
    peer_checks.check_{name}(peer_checks.LocalApi(env))
'''

DLGRADE_TOML = '''\
id = "peer_suite"
title = "The otter-grader side-by-side suite (throw-away, built by scripts/bench_peers/run.py)"
submit = ["peer_suite.ipynb"]
release = ["peer_suite.ipynb"]

[parts]
layernorm = "LayerNorm"
heads = "split and merge heads"
attention = "attention weights"

[limits]
call_timeout_s = 20
submission_timeout_s = 120
memory_mb = 2048
processes = 64
file_size_mb = 64
cpus = 1
'''

DLGRADE_TEST = '''\
"""The side-by-side suite as dlgrade hidden tests: the checks of peer_checks.py, reaching the worker through RemoteApi."""

import pytest

from dlgrade.harness import expect
from graders.peer_suite import peer_checks


class RemoteApi:
    def __init__(self, sub):
        self.sub = sub

    def new(self, name, *args):
        return self.sub.new(f"peer_suite.{{name}}", *args)

    def call(self, obj, method, *args):
        return obj.call(method, *args)

    def forward(self, obj, *args):
        return obj(*args)


def _run(name, sub, seed):
    try:
        peer_checks.CHECKS[name](RemoteApi(sub), seed)
    except AssertionError as exc:
        expect.fail(str(exc))
{tests}'''

DLGRADE_CASE = '''

@pytest.mark.part("{name}")
@pytest.mark.points({points})
@pytest.mark.spec("{doc}")
def test_{name}(sub, seed):
    """{doc}"""
    _run("{name}", sub, seed)
'''


def notebook(code: str) -> str:
    """A student's notebook: a markdown cell, then one code cell per class (nbformat 4, no outputs)."""
    parts = code.split("\n\n\nclass ")
    cells = [parts[0]] + ["class " + p for p in parts[1:]]
    def cell(kind: str, text: str) -> dict[str, Any]:
        base: dict[str, Any] = {"cell_type": kind, "metadata": {}, "source": text.rstrip("\n").splitlines(keepends=True)}
        return {**base, "execution_count": None, "outputs": []} if kind == "code" else base
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                          "language": "python"}},
          "cells": [cell("markdown", "# LayerNorm and attention\n")] + [cell("code", c) for c in cells]}
    for i, c in enumerate(nb["cells"]):
        c["id"] = f"cell-{i}"
    return json.dumps(nb, indent=1)


def build_otter(work: Path, otter: str) -> Path:
    """otter's autograder zip: the three test files and peer_checks.py as a support file."""
    tests = work / "tests"
    tests.mkdir(parents=True)
    for name, points in peer_checks.POINTS.items():
        (tests / f"{name}.py").write_text(OTTER_TEST.format(name=name, points=points))
    shutil.copy(HERE / "peer_checks.py", work / "peer_checks.py")
    (work / "requirements.txt").write_text("")
    zip_path = work / "autograder.zip"
    subprocess.run([otter, "generate", "-t", "tests", "-o", str(zip_path), "--no-environment", "--no-config", "peer_checks.py"],
                   cwd=work, check=True, capture_output=True, text=True)
    return zip_path


def build_dlgrade(root: Path) -> None:
    """The throw-away project root: assignments/, graders/ and reference_solutions/ of one assignment."""
    (root / "assignments" / ASSIGNMENT).mkdir(parents=True)
    (root / "assignments" / ASSIGNMENT / "assignment.toml").write_text(DLGRADE_TOML)
    graders = root / "graders" / ASSIGNMENT
    graders.mkdir(parents=True)
    (root / "graders" / "__init__.py").write_text("")
    (graders / "__init__.py").write_text("")
    shutil.copy(HERE / "peer_checks.py", graders / "peer_checks.py")
    cases = "".join(DLGRADE_CASE.format(name=n, points=p, doc=(peer_checks.CHECKS[n].__doc__ or n).strip())
                    for n, p in peer_checks.POINTS.items())
    (graders / "test_peer.py").write_text(DLGRADE_TEST.format(tests=cases))
    ref = root / "reference_solutions" / ASSIGNMENT
    ref.mkdir(parents=True)
    (ref / f"{ASSIGNMENT}.py").write_text("# %%\n" + peer_checks.CORRECT)


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None,
          timeout: float = 300) -> tuple[float, subprocess.CompletedProcess[str]]:
    t = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return time.perf_counter() - t, done


def otter_score(out_dir: Path) -> float | None:
    try:
        data = json.loads((out_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    if "score" in data:
        return float(data["score"])
    return float(sum(t.get("score", 0) for t in data.get("tests", [])))


def dlgrade_scores(out_dir: Path) -> dict[str, float]:
    scores = {}
    for res in sorted(out_dir.glob("*/results.json")):
        scores[res.parent.name] = float(json.loads(res.read_text())["score"])
    return scores


def isolation_of_dlgrade() -> str:
    """What the process sandbox isolates on this machine (as the backend reports it), in words."""
    from dlgrade.sandbox.process import ProcessBackend

    try:
        backend = ProcessBackend()
    except Exception as exc:
        return f"the process sandbox cannot isolate here: {str(exc).splitlines()[0]}"
    how = backend.isolation
    return (f"process sandbox ({how}): the hidden tests and the reference run in the trusted grader process, never in "
            "the worker; the student's module is imported in a worker forked from a pre-imported zygote, in new mount, "
            "network and PID namespaces" + (" under a uid of its own" if how == "root" else " (rootless: user namespace)") +
            ", with the grader's files hidden, a private tmpfs, rlimits on memory, processes, file size and CPU; only plain "
            "data crosses the pipe")


OTTER_ISOLATION = ("otter run (no Docker): none. The notebook runs in a Jupyter kernel as the instructor's own user, "
                   "with the instructor's files and the network; the test files run in that same kernel, next to the "
                   "student's objects, which could read or change them")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--otter", default=str(ROOT / ".venv-peers" / "bin" / "otter"))
    ap.add_argument("--class-size", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1, help="time each single submission this many times (median)")
    ap.add_argument("--out", help="results JSON (default bench/out/peers-<timestamp>.json)")
    args = ap.parse_args()
    if not Path(args.otter).exists():
        raise SystemExit(f"no otter at {args.otter}: run `make bench-peers` (it creates .venv-peers)")
    work = Path(tempfile.mkdtemp(prefix="dlgrade-peers-"))
    dl_root = work / "dlgrade-root"
    build_dlgrade(dl_root)
    zip_path = build_otter(work / "otter", args.otter)
    subs = work / "submissions"
    for name, code in peer_checks.SUBMISSIONS.items():
        (subs / name).mkdir(parents=True)
        (subs / name / f"{ASSIGNMENT}.ipynb").write_text(notebook(code))
    dlgrade = str(ROOT / ".venv" / "bin" / "dlgrade")
    env = {**os.environ, "DLGRADE_ROOT": str(dl_root)}
    print(f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; work folder {work}")

    single: dict[str, dict[str, Any]] = {}
    for name in peer_checks.SUBMISSIONS:
        o_times, d_times, o_score, d_score = [], [], None, None
        for r in range(args.repeat):
            out = work / f"otter-out-{name}-{r}"
            out.mkdir()
            seconds, done = timed([args.otter, "run", "-a", str(zip_path), "-o", str(out), "--no-logo",
                                   str(subs / name / f"{ASSIGNMENT}.ipynb")], work)
            o_times.append(seconds)
            o_score = otter_score(out)
            if o_score is None:
                print(f"otter run failed on {name}: {(done.stderr or done.stdout)[-500:]}")
            seconds, done = timed([dlgrade, "grade", ASSIGNMENT, str(subs / name), "--out", str(work / f"dl-out-{name}-{r}"),
                                   "--seed", "1", "--force"], dl_root, env)
            d_times.append(seconds)
            d_score = dlgrade_scores(work / f"dl-out-{name}-{r}").get(name)
            if done.returncode != 0 or d_score is None:
                print(f"dlgrade grade failed on {name}: {(done.stderr or done.stdout)[-800:]}")
        o, d = sorted(o_times)[len(o_times) // 2], sorted(d_times)[len(d_times) // 2]
        single[name] = {"otter_s": o, "dlgrade_s": d, "ratio": o / d, "otter_score": o_score, "dlgrade_score": d_score,
                        "expected": peer_checks.EXPECTED[name]}

    # a class: N copies, the three kinds in turn
    klass = work / "class"
    kinds = list(peer_checks.SUBMISSIONS)
    for i in range(args.class_size):
        kind = kinds[i % len(kinds)]
        (klass / f"s{i:02d}-{kind}").mkdir(parents=True)
        shutil.copy(subs / kind / f"{ASSIGNMENT}.ipynb", klass / f"s{i:02d}-{kind}" / f"{ASSIGNMENT}.ipynb")
    t = time.perf_counter()
    otter_class: dict[str, float | None] = {}
    for student in sorted(p.name for p in klass.iterdir()):
        out = work / "otter-class" / student
        out.mkdir(parents=True)
        subprocess.run([args.otter, "run", "-a", str(zip_path), "-o", str(out), "--no-logo",
                        str(klass / student / f"{ASSIGNMENT}.ipynb")], cwd=work, capture_output=True, text=True, timeout=300)
        otter_class[student] = otter_score(out)
    otter_class_s = time.perf_counter() - t
    dl_class: dict[str, dict[str, Any]] = {}
    for jobs in (1, os.cpu_count() or 1) if (os.cpu_count() or 1) > 1 else (1,):
        seconds, done = timed([dlgrade, "grade", ASSIGNMENT, str(klass), "--out", str(work / f"dl-class-j{jobs}"), "--seed", "1",
                               "--force", "-j", str(jobs)], dl_root, env, timeout=900)
        dl_class[str(jobs)] = {"seconds": seconds, "scores": dlgrade_scores(work / f"dl-class-j{jobs}"), "rc": done.returncode}
    agree = all(otter_class.get(s) == v for s, v in dl_class["1"]["scores"].items()) and len(otter_class) == len(dl_class["1"]["scores"])

    print(f"\n{'submission':10s} {'otter s':>8s} {'dlgrade s':>9s} {'ratio':>6s}  {'otter pts':>9s} {'dlgrade pts':>11s} {'expected':>8s}")
    for name, r in single.items():
        print(f"{name:10s} {r['otter_s']:8.2f} {r['dlgrade_s']:9.2f} {r['ratio']:6.1f}  {r['otter_score']!s:>9s} "
              f"{r['dlgrade_score']!s:>11s} {r['expected']:8g}")
    print(f"\nclass of {args.class_size}: otter run {otter_class_s:.1f} s ({otter_class_s / args.class_size:.2f} s/submission)")
    for jobs, r in dl_class.items():
        print(f"class of {args.class_size}: dlgrade grade -j {jobs} {r['seconds']:.1f} s ({r['seconds'] / args.class_size:.2f} "
              f"s/submission): {otter_class_s / r['seconds']:.1f}x otter's throughput")
    print(f"scores of the class agree between the tools: {'yes' if agree else 'NO'}")
    print(f"\nwhat each tool isolated:\n- {OTTER_ISOLATION}\n- dlgrade: {isolation_of_dlgrade()}")
    versions = subprocess.run([args.otter, "--version"], capture_output=True, text=True).stdout
    run = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "cores": os.cpu_count(), "load_1min": os.getloadavg()[0],
           "otter_version": next((ln.split(":")[1].strip() for ln in versions.splitlines() if ln.startswith("Otter-Grader")), ""),
           "single": single, "class_size": args.class_size, "otter_class_s": otter_class_s, "dlgrade_class": dl_class,
           "scores_agree": agree, "isolation": {"otter": OTTER_ISOLATION, "dlgrade": isolation_of_dlgrade()}}
    out_path = Path(args.out) if args.out else ROOT / "bench" / "out" / f"peers-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(run, indent=1))
    print(f"\nWrote {out_path}")


if __name__ == "__main__":
    main()
