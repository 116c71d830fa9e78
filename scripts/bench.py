"""Benchmark grading speed (numbers for the notes; not a test).

usage: python scripts/bench.py [ASSIGNMENT] [--repeat N]

Measures, for the reference submission: seconds to grade with each backend (first and warm),
the overhead of `process` over `inprocess`, and the worker's spawn-to-first-answer time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dlgrade.config import load_assignment
from dlgrade.grade import _spec, grade_one
from dlgrade.release import reference_submission
from dlgrade.sandbox import get_backend
from dlgrade.validate import materialise


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("assignment", nargs="?", default="lstm_lm_vit")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    cfg = load_assignment(args.assignment)
    tmp = Path(tempfile.mkdtemp(prefix="dlgrade-bench-"))
    sub = materialise(reference_submission(cfg), tmp / "reference")
    times: dict[str, list[float]] = {}
    for name in ("inprocess", "process"):
        backend = get_backend(name)
        try:
            for i in range(args.repeat + 1):
                t = time.perf_counter()
                r = grade_one(cfg, backend, sub, 1234, tmp / f"out-{name}")
                times.setdefault(name if i else f"{name} (first)", []).append(time.perf_counter() - t)
                assert r.score == r.max_score, f"{name}: reference scored {r.score}/{r.max_score}"
            spawn = []
            for _ in range(5):
                t = time.perf_counter()
                w = backend.start(_spec(cfg, reference_submission(cfg), tmp, "cpu"))
                w.request({"op": "ping"}, 30)
                spawn.append(time.perf_counter() - t)
                w.close()
            times[f"{name} worker spawn to first answer"] = spawn
        finally:
            backend.shutdown()
    print(f"{'what':45s} {'median s':>9s} {'min s':>7s}  n")
    for k, v in times.items():
        print(f"{k:45s} {statistics.median(v):9.3f} {min(v):7.3f}  {len(v)}")
    over = statistics.median(times["process"]) - statistics.median(times["inprocess"])
    print(f"overhead of process over inprocess per submission: {over:.3f} s")


if __name__ == "__main__":
    main()
