"""Collect the graded files into one zip (paths kept), ready to upload (written by `dlgrade release`).

    python collect_submission.py                     # in the assignment folder: submission.zip
    python collect_submission.py --name 2024-20000   # the zip named by your student id: 2024-20000.zip
    python collect_submission.py --allow-incomplete  # zip what there is, missing files and all

It refuses (exit status 1) when a graded file is missing or does not parse, or when no file
has been worked on yet (every TODO still has its stub), unless you pass --allow-incomplete. It
warns about every function that still raises NotImplementedError and every file whose TODOs
all still hold their stubs. The zip is the same bytes for the same files (sorted entries, fixed
timestamps), so you can tell whether anything changed since your last upload.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import zipfile
from pathlib import Path

# @dlgrade:settings  (the lines up to the next blank line are written by `dlgrade release`)
ASSIGNMENT = "example"
FILES = ("example.py",)
OPTIONAL = ()  # files of parts your instructor turned off: not needed

TODO = "# TODO: your code here"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def unfinished_functions(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, function) of every `raise NotImplementedError` left in a function."""
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.Raise) and node.exc is not None:
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                    found.append((node.lineno, func.name))
    return sorted(set(found))


def all_todos_stubbed(text: str) -> bool:
    """True when the file has TODOs and each is still followed by its stub, with nothing written after a `pass` stub."""
    lines = text.splitlines()
    todos = [i for i, line in enumerate(lines) if line.strip() == TODO]
    if not todos:
        return False
    for i in todos:
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if not (nxt == "pass" or nxt.startswith("raise NotImplementedError")):
            return False
        after = lines[i + 2] if i + 2 < len(lines) else ""
        indent = len(lines[i + 1]) - len(lines[i + 1].lstrip())
        if nxt == "pass" and after.strip() and not after.strip().startswith("#") and len(after) - len(after.lstrip()) >= indent:
            return False  # code written right after a `pass` stub (the release leaves a blank line there)
    return True


def check(folder: Path) -> tuple[list[str], list[str], list[str]]:
    """(present files, problems that block the zip, warnings)."""
    present, problems, warnings = [], [], []
    untouched = []
    for rel in FILES:
        path = folder / rel
        if not path.is_file():
            if rel not in OPTIONAL:
                problems.append(f"{rel}: missing")
            continue
        present.append(rel)
        if rel.endswith(".ipynb"):
            try:
                json.loads(path.read_text(encoding="utf-8-sig"))["cells"]
            except (ValueError, KeyError, TypeError) as error:
                problems.append(f"{rel}: is not a readable notebook ({type(error).__name__}); save it again from Jupyter or Colab")
            continue
        text = path.read_text(encoding="utf-8")
        try:
            tree = ast.parse(text, filename=rel)
        except SyntaxError as error:
            problems.append(f"{rel}: does not parse (line {error.lineno}: {error.msg})")
            continue
        if all_todos_stubbed(text):
            untouched.append(rel)
            warnings.append(f"{rel}: every TODO still holds its stub (nothing written here yet?)")
        for lineno, name in unfinished_functions(tree):
            warnings.append(f"{rel}, line {lineno}: {name}() still raises NotImplementedError")
    if present and len(untouched) == len(present):
        problems.append("nothing written yet: every file is still the release skeleton (only NotImplementedError / pass stubs)")
    return present, problems, warnings


def write_zip(folder: Path, files: list[str], out: Path) -> None:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted(files):
            info = zipfile.ZipInfo(rel, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, (folder / rel).read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Zip the graded files of {ASSIGNMENT}.")
    parser.add_argument("--folder", default=Path(__file__).resolve().parent, type=Path, help="the assignment folder (default: here)")
    parser.add_argument("--out", default=None, type=Path, help="the zip to write (default: <folder>/submission.zip)")
    parser.add_argument("--name", default=None, help="name the zip after your student id: <folder>/<NAME>.zip")
    parser.add_argument("--allow-incomplete", action="store_true", help="zip what there is even if files are missing or unfinished")
    args = parser.parse_args(argv)
    folder = args.folder.resolve()
    out = args.out or folder / f"{args.name or 'submission'}.zip"

    present, problems, warnings = check(folder)
    for message in warnings:
        print(f"warning: {message}")
    for message in problems:
        print(f"{'warning' if args.allow_incomplete else 'error'}: {message}")
    if problems and not args.allow_incomplete:
        print(
            f"Not writing {out.name}: fix the problems above, or run with --allow-incomplete to submit what there is "
            "(a missing file costs only the points of the tests that need it).",
            file=sys.stderr,
        )
        return 1
    zipped = present
    write_zip(folder, zipped, out)
    for rel in sorted(zipped):
        print(f"  {rel}  ({(folder / rel).stat().st_size} bytes)")
    left = len(FILES) - len(zipped)
    print(f"Wrote {out} with {len(zipped)} of {len(FILES)} files" + (f" ({left} missing)" if left else "") + ". Upload it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
