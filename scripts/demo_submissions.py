"""Materialise a small class of example submissions for `make demo`.

usage: python scripts/demo_submissions.py ASSIGNMENT OUT_DIR

The class: the reference (full marks), the blank skeleton (zero), a few catalogued bugs
(partial credit with specific feedback) and a few hostile submissions from the platform's
fixtures (contained, valid results). One student submits a zip, as many do.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from dlgrade.bugs import bug_submission, load_bugs, materialise
from dlgrade.config import load_assignment
from dlgrade.release import reference_submission, skeleton_files, write_zip
from dlgrade.tomlcompat import tomllib

BUGS = 3
HOSTILE = ("infinite_loop", "syntax_error", "reads_hidden_tests", "os_exit_at_import")


def hostile_submission(cfg, entry: dict) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    files = reference_submission(cfg)
    text = files[entry["file"]].decode()
    if "content" in entry:
        text = entry["content"]
    elif "prepend" in entry:
        text = entry["prepend"] + "\n" + text
    elif "find" in entry:
        text = text.replace(entry["find"], entry["replace"], 1)
    files[entry["file"]] = text.replace("{OUT}", "/nonexistent").encode()
    return files


def main(assignment: str, out: Path) -> None:
    cfg = load_assignment(assignment)
    if out.exists():
        shutil.rmtree(out)
    students: dict[str, dict[str, bytes]] = {
        "alice_reference": reference_submission(cfg),
        "bob_blank_skeleton": {k: v for k, v in skeleton_files(cfg).items() if k in cfg.submit},
    }
    for bug in load_bugs(cfg)[:BUGS]:
        students[f"bug_{bug.name}"] = bug_submission(cfg, bug)
    fixtures = cfg.root / "tests" / "fixtures" / assignment / "hostile.toml"
    if fixtures.is_file():
        entries = {e["name"]: e for e in tomllib.loads(fixtures.read_text()).get("fixture", [])}
        for name in HOSTILE:
            if name in entries:
                students[f"hostile_{name}"] = hostile_submission(cfg, entries[name])
    for i, (student, files) in enumerate(sorted(students.items())):
        if i == 0:  # one student hands in a zip of a project folder
            write_zip(files, out / f"{student}.zip", prefix="my_homework/")
        else:
            materialise(files, out / student)
    print(f"{len(students)} example submissions in {out}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
