"""Grade the one submission of a Gradescope run: ``python -I -m dlgrade_gradescope ROOT OUT``.

``run_autograder`` calls this (as root) with ROOT = /autograder; setup.sh installed it next to
the ``dlgrade`` package in the bundle's venv. It grades ``ROOT/submission`` with the ``process``
sandbox (the worker runs as ``DLGRADE_WORKER_USER``) under the limits of ``ROOT/source/bundle.json``,
adds who submitted (``submission_metadata.json``), bounds the size of the results and writes OUT.
It exits 0 whenever OUT was written; ``run_autograder`` moves OUT into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from dlgrade.config import load_assignment
from dlgrade.grade import grade_one, new_seed
from dlgrade.intake import student_id
from dlgrade.results import read_results, write_json_atomic
from dlgrade.sandbox import get_backend


def _metadata(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / "submission_metadata.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _who(meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A student id for the results and what extra_data keeps of the metadata (no e-mail addresses)."""
    users = [u for u in meta.get("users", []) if isinstance(u, dict)]
    keep = {"submission_id": meta.get("id"), "created_at": meta.get("created_at"),
            "users": [{"id": u.get("id"), "name": u.get("name")} for u in users]}
    ids = "-".join(str(u.get("id")) for u in users if u.get("id") is not None)
    return student_id(Path(ids or "submission")), keep


def _seed(meta: dict[str, Any]) -> int:
    """The same Gradescope submission regrades with the same inputs; a new submission gets new ones."""
    if meta.get("id") is None:
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
    root, out = Path(argv[0]), Path(argv[1])
    try:  # the grader is the last process the container's OOM killer should pick (workers volunteer first)
        Path("/proc/self/oom_score_adj").write_text("-500")
    except OSError:
        pass
    source = root / "source"
    bundle = json.loads((source / "bundle.json").read_text())
    meta = _metadata(root)
    sid, who = _who(meta)
    cfg = load_assignment(bundle["assignment"], root=source).with_limits(**bundle["limits"])
    os.environ.setdefault("DLGRADE_WORKER_USER", bundle["worker_user"])
    scratch = Path(tempfile.mkdtemp(prefix="dlgrade-", dir=out.parent))
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


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception:  # run_autograder writes the fallback results; the trace goes to Gradescope's log
        traceback.print_exc()
        sys.exit(1)
