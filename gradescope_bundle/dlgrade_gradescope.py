"""Grade the one submission of a Gradescope run: ``python -I -m dlgrade_gradescope ROOT OUT``.

``run_autograder`` calls this (as root) with ROOT = /autograder; setup.sh installed it next to
the ``dlgrade`` package in the bundle's venv. It grades ``ROOT/submission`` with the ``process``
sandbox (the worker runs as ``DLGRADE_WORKER_USER``) under the limits of ``ROOT/source/bundle.json``,
adds who submitted (``submission_metadata.json``), bounds the size of the results and writes OUT.
It exits 0 whenever OUT was written; ``run_autograder`` moves OUT into place.

The engine writes the student's results test by test into ``<folder of OUT>/grading/``. When the
run is stopped before it ends (the whole-run time limit, the container's OOM killer, a crash),
``run_autograder`` calls ``python -I -m dlgrade_gradescope --finish WHY ROOT OUT``, which turns
what was finished into the final results: every finished test as graded, every other test 0 with
why it did not run. It imports no torch (a second or so) and exits 1 when nothing was finished.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from dlgrade.results import SubmissionResult, TestResult, read_results, to_gradescope, write_json_atomic

WORK = "grading"   # under OUT's folder (run_autograder's root-only scratch): the engine's test-by-test results
WHY = {"timeout": "the autograder's time limit ({limit:g} s for the whole run) was reached",
       "killed": "the autograder was killed (usually: the container ran out of memory)",
       "failed": "the autograder stopped on an error"}


def _metadata(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / "submission_metadata.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _who(meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A student id for the results and what extra_data keeps of the metadata (no e-mail addresses)."""
    from dlgrade.intake import student_id

    keep = _kept(meta)
    ids = "-".join(str(u["id"]) for u in keep["users"] if u["id"] is not None)
    return student_id(Path(ids or "submission")), keep


def _kept(meta: dict[str, Any]) -> dict[str, Any]:
    """What extra_data keeps of the metadata: the submission and the students' ids and names, no e-mail addresses."""
    users = [u for u in meta.get("users", []) if isinstance(u, dict)]
    return {"submission_id": meta.get("id"), "created_at": meta.get("created_at"),
            "users": [{"id": u.get("id"), "name": u.get("name")} for u in users]}


def _seed(meta: dict[str, Any]) -> int:
    """The same Gradescope submission regrades with the same inputs; a new submission gets new ones."""
    if meta.get("id") is None:
        from dlgrade.grade import new_seed

        return new_seed()
    return int.from_bytes(hashlib.sha256(f"dlgrade:{meta['id']}".encode()).digest()[:4], "big") % 2**31


def fit(data: dict[str, Any], limit: int) -> dict[str, Any]:
    """Bound results.json to ``limit`` bytes: drop per-test details first, then cut the texts students read."""
    def size() -> int:
        return len(json.dumps(data))

    extra = data.setdefault("extra_data", {})
    steps = [lambda: [t.pop("extra", None) for t in extra.get("tests", [])],
             lambda: [t.pop("output", None) for t in extra.get("tests", [])],
             lambda: extra.pop("tests", None),
             lambda: [t.update(output=t["output"][:2000] + "\n[... truncated ...]") for t in data.get("tests", [])
                      if len(t.get("output", "")) > 2000],
             lambda: extra.update(grader_errors=[e[-2000:] for e in extra.get("grader_errors", [])]),
             lambda: data.update(output=str(data.get("output", ""))[:4000] + "\n[... truncated ...]")]
    for step in steps:
        if size() <= limit:
            break
        step()
        extra["truncated"] = True
    return data


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--finish":
        return finish(argv[1], Path(argv[2]), Path(argv[3]))
    root, out = Path(argv[0]), Path(argv[1])
    try:  # the grader is the last process the container's OOM killer should pick (workers volunteer first)
        Path("/proc/self/oom_score_adj").write_text("-500")
    except OSError:
        pass
    from dlgrade.config import load_assignment
    from dlgrade.grade import grade_one
    from dlgrade.sandbox import get_backend

    source = root / "source"
    bundle = json.loads((source / "bundle.json").read_text())
    meta = _metadata(root)
    sid, who = _who(meta)
    cfg = load_assignment(bundle["assignment"], root=source).with_limits(**bundle["limits"])
    os.environ.setdefault("DLGRADE_WORKER_USER", bundle["worker_user"])
    scratch = out.parent / WORK
    shutil.rmtree(scratch, ignore_errors=True)
    # a root-owned copy (symlinks kept as links, which intake ignores), named after the student
    submission = scratch / "in" / sid
    if (root / "submission").is_dir():
        shutil.copytree(root / "submission", submission, symlinks=True)
    else:
        submission.mkdir(parents=True)
    backend = get_backend("process")
    try:
        grade_one(cfg, backend, submission, _seed(meta), scratch / "out")
    finally:
        backend.shutdown()
    data = read_results(scratch / "out" / sid / "results.json")
    data.setdefault("extra_data", {})["gradescope"] = who
    write_json_atomic(out, fit(data, int(bundle.get("results_max_bytes", 200_000))))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def stopped(data: dict[str, Any], why: str) -> dict[str, Any]:
    """Final results from a cut-off run's test-by-test file: its finished tests, and every test it had not run yet
    (``extra_data.pending``) at 0 points with ``why``. Plain data in, plain data out (results.json is ours)."""
    extra = data.get("extra_data", {})
    if extra.get("complete", True):
        return data  # the engine had finished: only moving the file was left
    done = [TestResult(**t) for t in extra.get("tests", [])]
    finished = {t.nodeid for t in done}
    rest = [replace(TestResult(**t), output=f"Not run: {why} before this test ran.")
            for t in extra.get("pending", []) if t.get("nodeid") not in finished]
    tests = sorted(done + rest, key=lambda t: int(t.number) if t.number.isdigit() else 0)
    score, max_score = sum(t.score for t in tests), sum(t.max_score for t in tests)
    student, seed = str(extra.get("student", "submission")), int(extra.get("seed", 0))
    output = (f"{student}: {score:g} / {max_score:g} points (input seed {seed}).\n- Grading was stopped: {why}. "
              f"The {len(done)} test(s) finished before that are graded; the {len(rest)} not run score 0.")
    result = SubmissionResult(student=student, assignment=str(extra.get("assignment", "")), seed=seed, tests=tuple(tests),
                              execution_time=float(data.get("execution_time", 0.0)), output=output,
                              warnings=tuple(extra.get("warnings", [])), leftovers=tuple(extra.get("leftovers", [])),
                              status="stopped", reason=why)
    return to_gradescope(result)


def finish(kind: str, root: Path, out: Path) -> int:
    """``--finish WHY ROOT OUT``: write OUT from what the stopped engine finished; 1 when it finished nothing."""
    bundle = json.loads((root / "source" / "bundle.json").read_text())
    found = sorted((out.parent / WORK / "out").glob("*/results.json"))
    try:
        data = read_results(found[0])
    except (IndexError, OSError, ValueError):
        print("dlgrade: no test had finished; nothing to report", file=sys.stderr)
        return 1
    why = WHY.get(kind, WHY["failed"]).format(limit=float(bundle.get("run_timeout_s", 0)))
    data = stopped(data, why)
    data.setdefault("extra_data", {})["gradescope"] = _kept(_metadata(root))
    write_json_atomic(out, fit(data, int(bundle.get("results_max_bytes", 200_000))))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:  # run_autograder writes the fallback results; the trace goes to Gradescope's log
        traceback.print_exc()
        sys.exit(1)
