"""Benchmark grading speed (numbers for the notes; not a test).

usage: python scripts/bench.py [ASSIGNMENT] [--repeat N] [--backends inprocess,process,docker] [--batch N]

For the reference submission: seconds to grade with each backend (first and warm), the overhead
of `process` over `inprocess` and of `docker` over `process`, and the worker's start-to-first-answer
time (for docker: a cold container, and one taken from the warm pool). With --batch N: the
throughput of `grade_batch` on N copies of the reference with -j 1 and -j 2 for process and docker.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dlgrade.config import load_assignment
from dlgrade.grade import GradeOptions, _spec, grade_batch, grade_one
from dlgrade.release import reference_submission
from dlgrade.sandbox import get_backend
from dlgrade.validate import materialise


def _docker_ready() -> bool:
    try:
        get_backend("docker").shutdown()
        return True
    except Exception as exc:  # no engine or no image: say so and go on without docker
        print(f"(docker skipped: {str(exc).splitlines()[0]})")
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("assignment", nargs="?", default="lstm_lm_vit")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", default="inprocess,process,docker")
    ap.add_argument("--batch", type=int, default=0, help="also time batches of N reference copies with -j 1 and -j 2")
    args = ap.parse_args()
    cfg = load_assignment(args.assignment)
    tmp = Path(tempfile.mkdtemp(prefix="dlgrade-bench-"))
    sub = materialise(reference_submission(cfg), tmp / "reference")
    spec = _spec(cfg, reference_submission(cfg), tmp, "cpu")
    names = [n for n in args.backends.split(",") if n and (n != "docker" or _docker_ready())]
    times: dict[str, list[float]] = {}
    for name in names:
        backend = get_backend(name)
        try:
            for i in range(args.repeat + 1):
                t = time.perf_counter()
                r = grade_one(cfg, backend, sub, 1234, tmp / f"out-{name}")
                times.setdefault(name if i else f"{name} (first)", []).append(time.perf_counter() - t)
                assert r.score == r.max_score, f"{name}: reference scored {r.score}/{r.max_score}"
            spawn = []
            for _ in range(5):
                if name == "docker":
                    time.sleep(4)  # let the warm container finish importing torch, as during a real batch
                t = time.perf_counter()
                w = backend.start(spec)
                w.request({"op": "ping"}, 30)
                spawn.append(time.perf_counter() - t)
                w.close()
            times[f"{name} worker start to first answer" + (" (warm pool)" if name == "docker" else "")] = spawn
        finally:
            backend.shutdown()
        if name == "docker":
            cold = get_backend("docker", warm=False)
            try:
                spawn = []
                for _ in range(3):
                    t = time.perf_counter()
                    w = cold.start(spec)
                    w.request({"op": "ping"}, 60)
                    spawn.append(time.perf_counter() - t)
                    w.close()
                times["docker container start to first answer (cold)"] = spawn
            finally:
                cold.shutdown()
    if args.batch:
        subs = tmp / "batch"
        for i in range(args.batch):
            materialise(reference_submission(cfg), subs / f"student{i:02d}")
        for name in [n for n in ("process", "docker") if n in names]:
            for jobs in (1, 2):
                t = time.perf_counter()
                res = grade_batch(cfg, subs, tmp / f"batch-{name}-{jobs}", GradeOptions(sandbox=name, seed=1, jobs=jobs, force=True))
                seconds = time.perf_counter() - t
                assert all(r["score"] == r["max_score"] for r in res.rows)
                times[f"batch of {args.batch}, {name}, -j {jobs} (s per submission)"] = [seconds / args.batch]
    print(f"{'what':58s} {'median s':>9s} {'min s':>7s}  n")
    for k, v in times.items():
        print(f"{k:58s} {statistics.median(v):9.3f} {min(v):7.3f}  {len(v)}")
    med = {k: statistics.median(v) for k, v in times.items()}
    if "process" in med and "inprocess" in med:
        print(f"overhead of process over inprocess per submission: {med['process'] - med['inprocess']:.3f} s")
    if "docker" in med and "process" in med:
        print(f"overhead of docker over process per submission: {med['docker'] - med['process']:.3f} s")


if __name__ == "__main__":
    main()
