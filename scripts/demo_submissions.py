"""Materialise a small class of example submissions for `make demo`.

usage: python scripts/demo_submissions.py ASSIGNMENT OUT_DIR
       python scripts/demo_submissions.py --check RESULTS_DIR   (after grading: what the hostile students achieved)

The class: the reference (full marks), the blank skeleton (zero), a few catalogued bugs
(partial credit with specific feedback) and a few hostile submissions from the platform's
fixtures (contained, valid results). One student submits a zip, as many do.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from dlgrade.bugs import bug_submission, load_bugs, materialise
from dlgrade.config import load_assignment
from dlgrade.release import reference_submission, skeleton_files, write_zip
from dlgrade.tomlcompat import tomllib

BUGS = 3
HOSTILE = ("infinite_loop", "syntax_error", "reads_hidden_tests", "reads_reference_solution", "writes_results_json",
           "opens_network_socket", "os_exit_at_import", "no_files")
DEMO_RESULTS = "dist/demo/results"   # where `make demo` grades (the {OUT} a hostile student tries to write into)
CLOSED_PORT = "9"                    # {PORT}: nothing listens there, so a connection attempt shows as blocked


def hostile_submission(cfg, entry: dict) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """The reference with the fixture's patches (tests/fixtures/<id>/hostile.toml: content, prepend, find/replace),
    and its placeholders filled in as the platform's tests fill them, so the attempts are real."""
    placeholders = {"ROOT": str(cfg.root), "OUT": str((cfg.root / DEMO_RESULTS).resolve()), "PORT": CLOSED_PORT}

    def fill(text: str) -> str:
        for key, value in placeholders.items():
            text = text.replace("{" + key + "}", value)
        return text

    files = reference_submission(cfg)
    names = entry["file"] if isinstance(entry["file"], list) else [entry["file"]]
    for name in names:
        if entry.get("delete"):
            files.pop(name, None)
            continue
        text = files[name].decode()
        if "content" in entry:
            text = fill(entry["content"])
        if "prepend" in entry:
            text = fill(entry["prepend"]) + "\n" + text
        if "find" in entry:
            if entry["find"] not in text:
                raise ValueError(f"hostile fixture {entry['name']}: its find text is not in {name}")
            text = text.replace(entry["find"], fill(entry.get("replace", "")), 1)
        files[name] = text.encode()
    return files


def check(results: Path) -> int:
    """What each hostile student's attempts came to, from what it printed (student_output.txt); 1 if one worked."""
    worked = 0
    for folder in sorted(results.glob("hostile_*")):
        out = folder / "student_output.txt"
        lines = out.read_text(errors="replace").splitlines() if out.is_file() else []
        blocked = sum(line.startswith("HOSTILE-BLOCKED") for line in lines)
        success = [line for line in lines if line.startswith("HOSTILE-SUCCESS")]
        worked += bool(success)
        data = json.loads((folder / "results.json").read_text())
        verdict = "ATTACK WORKED: " + success[0][:200] if success else f"{blocked} attempt(s) blocked, none worked"
        print(f"  {folder.name}: {data['score']:g}/{data['extra_data']['max_score']:g}; {verdict}")
    return 1 if worked else 0


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
    # a text file that a student named .zip: not graded, and the class summary and exit status say so
    (out / "zoe_not_really_a.zip").write_text("my homework is attached to the e-mail\n")
    print(f"{len(students) + 1} example submissions in {out}")


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        print("Hostile demo students (their attempts print HOSTILE-BLOCKED or HOSTILE-SUCCESS):")
        sys.exit(check(Path(sys.argv[2])))
    main(sys.argv[1], Path(sys.argv[2]))
