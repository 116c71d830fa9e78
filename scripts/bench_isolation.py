"""What the process sandbox's isolation costs per submission (numbers, not a test; docs/security.md quotes them).

usage: python scripts/bench_isolation.py [--assignment lstm_lm_vit] [--repeat 12] [--docker] [--out FILE]

Three configurations (five with an assignment's preload and --docker), measured in this one process and
interleaved round by round (so that a change of load on a shared machine hits them alike):

  inprocess     no sandbox at all: the floor
  process       full isolation, as `dlgrade grade` runs it as root: mount, network, IPC and UTS namespaces, the
                allow-listed view (tmpfs root, read-only binds, pivot_root), a PID namespace per worker under a tiny
                init, a uid of its own, rlimits, seccomp
  process-nons  DLGRADE_NAMESPACES=0 (ProcessBackend(namespaces=False)): no namespace, no view, no PID namespace:
                a uid of its own, rlimits, Landlock and seccomp, as on Gradescope; the sandbox as it was before the
                view and the PID namespace (plus Landlock, a few system calls)
  no-preload    process, without the assignment's [worker] preload (only for assignments that have one): each
                worker imports those modules itself, as every worker did before preload existed
  docker        with --docker: one container per submission from the warm pool of one. Each docker measurement
                starts after --docker-pause seconds (default 8), which a real batch gives the next container
                while it grades the current submission: the container has started, imported torch and the
                preload and run torch's lazy initialisation. Back to back (--docker-pause 0) every use but the
                first waits for a container that has only just been started

Two measurements each, median seconds over the rounds:

  worker        one worker's life as a submission sees it: start (fork from the zygote, confine), the hello, the
                import of a submission module, one request (ping), close (which kills and sweeps what it left)
  submission    grading one submission with grade_one (the blank skeleton: the whole hidden suite, each test
                failing fast, so the sandbox's share is as large as it gets)

The overhead of a sandbox is its median minus inprocess's. Needs root (the process sandbox isolates as root).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("inprocess", "process", "process-nons")


def _backend(config: str, preload: tuple[str, ...]) -> Any:
    from dlgrade.sandbox.inprocess import InProcessBackend
    from dlgrade.sandbox.process import ProcessBackend

    if config == "inprocess":
        return InProcessBackend()
    if config == "docker":
        from dlgrade.sandbox import get_backend
        return get_backend("docker", preload=preload)
    return ProcessBackend(namespaces=config != "process-nons", preload=() if config == "no-preload" else preload)


def worker_life(backend: Any, spec: Any, module: str) -> float:
    """Seconds for start, hello, import, one call and close of one worker."""
    started = time.perf_counter()
    worker = backend.start(spec, timeout=60.0)
    reply = worker.request({"op": "import", "module": module}, 60.0)
    assert reply.get("ok") is not None, reply
    assert worker.request({"op": "ping"}, 60.0)["ok"]
    worker.close()
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--assignment", default="lstm_lm_vit")
    ap.add_argument("--repeat", type=int, default=12, help="rounds (each measures every configuration once; default 12)")
    ap.add_argument("--docker", action="store_true", help="measure the docker sandbox too (needs the engine and the image)")
    ap.add_argument("--docker-pause", type=float, default=8.0,
                    help="seconds before each docker measurement, for the warm container to get ready (default 8)")
    ap.add_argument("--out", help="write the numbers as JSON here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the process sandbox isolates only as root (or rootless, which is another measurement)")
    sys.path.insert(0, str(ROOT))
    from dlgrade.config import load_assignment
    from dlgrade.grade import _spec, grade_one
    from dlgrade.release import skeleton_files
    from dlgrade.validate import materialise

    cfg = load_assignment(args.assignment, ROOT)
    blank = {rel: data for rel, data in skeleton_files(cfg).items() if rel in cfg.submit}
    work = Path(tempfile.mkdtemp(prefix="dlgrade-bench-isolation-"))
    folder = materialise(blank, work / "class" / "blank")
    spec = _spec(cfg, blank, work / "out", "cpu")
    configs = CONFIGS + (("no-preload",) if cfg.preload else ()) + (("docker",) if args.docker else ())
    backends = {c: _backend(c, cfg.preload) for c in configs}
    times: dict[str, dict[str, list[float]]] = {c: {"worker": [], "submission": []} for c in configs}
    load = [os.getloadavg()[0]]
    try:
        for config, backend in backends.items():  # warm up: zygotes started, the reference's outputs computed
            worker_life(backend, spec, cfg.modules[0])
            grade_one(cfg, backend, folder, 1, work / "out" / config)
        for i in range(args.repeat):
            for config in configs if i % 2 == 0 else reversed(configs):
                backend = backends[config]
                pause = args.docker_pause if config == "docker" else 0.0
                time.sleep(pause)
                times[config]["worker"].append(worker_life(backend, spec, cfg.modules[0]))
                time.sleep(pause)
                started = time.perf_counter()
                result = grade_one(cfg, backend, folder, 1, work / "out" / config)
                times[config]["submission"].append(time.perf_counter() - started)
                assert result.status == "graded" and result.score == 0, (config, result.status, result.score)
            load.append(os.getloadavg()[0])
    finally:
        for backend in backends.values():
            backend.shutdown()
    medians = {c: {k: statistics.median(v) for k, v in m.items()} for c, m in times.items()}
    floor = medians["inprocess"]
    print(f"{args.assignment}: {args.repeat} rounds, load average {min(load):.1f}-{max(load):.1f} on {os.cpu_count()} CPUs"
          + (f", docker measured {args.docker_pause:g} s after its previous use" if args.docker else ""))
    print(f"{'configuration':<14} {'worker life (s)':>16} {'overhead':>9} {'submission (s)':>15} {'overhead':>9}")
    for config in configs:
        m = medians[config]
        print(f"{config:<14} {m['worker']:>16.3f} {m['worker'] - floor['worker']:>+9.3f} "
              f"{m['submission']:>15.3f} {m['submission'] - floor['submission']:>+9.3f}")
    full, nons = medians["process"], medians["process-nons"]
    print(f"the view and the PID namespace (process vs process-nons): {full['worker'] - nons['worker']:+.3f} s per worker, "
          f"{full['submission'] - nons['submission']:+.3f} s per submission")
    if cfg.preload:
        none = medians["no-preload"]
        print(f"the zygote's preload of {', '.join(cfg.preload)} (process vs no-preload): "
              f"{full['worker'] - none['worker']:+.3f} s per worker, {full['submission'] - none['submission']:+.3f} s per submission")
    if args.out:
        Path(args.out).write_text(json.dumps({"assignment": args.assignment, "repeat": args.repeat, "preload": list(cfg.preload),
                                              "docker_pause": args.docker_pause if args.docker else None, "load": load,
                                              "cpus": os.cpu_count(), "medians": medians, "times": times}, indent=1))


if __name__ == "__main__":
    main()
