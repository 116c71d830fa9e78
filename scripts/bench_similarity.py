"""Benchmark `dlgrade similarity`: a generated class of N submissions against a corpus of M files.

    .venv/bin/python scripts/bench_similarity.py [--students 200] [--corpus 50] [--assignment lstm_lm_vit] [--repeat 3]

The class is built from the reference, an independently written solution (tests/fixtures/similarity/independent/)
and the full-marks alternatives, each student's copy disguised by a random mix of the transformations in
tests/fixtures/similarity/variants.py (renamed variables, reordered functions, reformatted code, comments), so
that most pairs share a good part of their code, as a real class does. Half of the corpus are notebooks. The
timing covers everything `dlgrade similarity` does: reading the submissions through intake, fingerprinting,
comparing every pair, and writing the CSV and pages, with ``--jobs`` forked processes. It prints the wall time and
the CPU time (this process and its workers) of each repeat, and the load average: on a busy machine the wall time
is an upper bound, and the CPU time divided by the jobs estimates a quiet machine's; rerun on a quiet one.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlgrade.config import load_assignment  # noqa: E402
from dlgrade.release import reference_submission, skeleton_files  # noqa: E402
from dlgrade.similarity import SimilarityOptions, check_similarity  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"


def _variants():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("similarity_variants", FIXTURES / "similarity" / "variants.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bases(assignment: str, tmp: Path) -> list[dict[str, str]]:
    """The distinct correct solutions the class is made of."""
    cfg = load_assignment(assignment)
    variants = _variants()
    ref = {f: d.decode() for f, d in reference_submission(cfg).items()}
    out = [ref]
    indep = FIXTURES / "similarity" / "independent" / assignment
    if indep.is_dir():
        sk = {f: d.decode() for f, d in skeleton_files(cfg).items()}
        out.append({f: variants.fill(sk[f], (indep / f).read_text()) for f in cfg.submit})
    for patch in sorted((cfg.grader_dir / "full_marks").glob("*.patch")) + sorted((FIXTURES / assignment / "full_marks").glob("*.patch")):
        folder = tmp / "fm" / patch.stem
        for f, t in ref.items():
            (folder / f).parent.mkdir(parents=True, exist_ok=True)
            (folder / f).write_text(t)
        subprocess.run(["patch", "-s", "-p1", "-d", str(folder), "-i", str(patch.resolve())], check=True)
        out.append({f: (folder / f).read_text() for f in cfg.submit})
    return out


def disguised(files: dict[str, str], rng: random.Random, salt: str) -> dict[str, str]:
    variants = _variants()
    steps = [s for s in ("rename", "reorder", "reformat", "comment") if rng.random() < 0.5]
    out = {}
    for name, text in files.items():
        for step in steps:
            text = variants.rename(text, salt) if step == "rename" else variants.VARIANTS[step](text)
        out[name] = text
    return out


def build(assignment: str, students: int, corpus: int, tmp: Path, seed: int = 0) -> tuple[Path, Path]:
    rng = random.Random(seed)
    sols = bases(assignment, tmp)
    subs, pub = tmp / "class", tmp / "corpus"
    for i in range(students):
        files = disguised(rng.choice(sols), rng, f"s{i}")
        for name, text in files.items():
            (subs / f"student{i:03d}" / name).parent.mkdir(parents=True, exist_ok=True)
            (subs / f"student{i:03d}" / name).write_text(text)
    for j in range(corpus):
        files = disguised(rng.choice(sols), rng, f"c{j}")
        repo = pub / f"repo{j:02d}"
        repo.mkdir(parents=True, exist_ok=True)
        if j % 2:
            cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": text}
                     for text in files.values()]
            (repo / "homework.ipynb").write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
        else:
            (repo / "solution.py").write_text("\n\n".join(files.values()))
    return subs, pub


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assignment", default="lstm_lm_vit")
    ap.add_argument("--students", type=int, default=200)
    ap.add_argument("--corpus", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2, help="processes (default 2: the 2 cores the target is set for)")
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    cfg = load_assignment(args.assignment)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        subs, pub = build(args.assignment, args.students, args.corpus, tmp)
        times, cpu = [], []
        for r in range(args.repeat):
            started, before = time.perf_counter(), os.times()
            run = check_similarity(cfg, subs, tmp / f"out{r}", SimilarityOptions(corpus=(pub,), jobs=args.jobs))
            times.append(time.perf_counter() - started)
            after = os.times()  # CPU of this process and of its finished workers
            cpu.append(sum(after[:4]) - sum(before[:4]))
        load = os.getloadavg()
    result = {"assignment": args.assignment, "students": run.students, "corpus_files": run.corpus_files,
              "pairs": len(run.pairs), "flagged": len(run.flagged), "seconds": [round(t, 2) for t in times],
              "median_s": round(statistics.median(times), 2), "cpu_s": [round(c, 2) for c in cpu], "jobs": args.jobs,
              "cpus": os.cpu_count(), "load_avg_1_5_15": [round(x, 2) for x in load]}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
