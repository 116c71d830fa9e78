"""Intake: find the students of a batch and read each submission's files into memory.

A submission is a folder or a zip holding the files the assignment asks for, at any depth
(students zip their whole project folder). Nothing is extracted to disk, so hostile archive
paths cannot escape; sizes are capped to stop archive bombs.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dlgrade.config import AssignmentConfig

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_ARCHIVE_MEMBERS = 5000
_JUNK = ("__MACOSX/", "/.", ".ipynb_checkpoints/")


@dataclass(frozen=True)
class SubmissionFiles:
    student: str
    files: dict[str, bytes]          # submitted name -> content (only the files the assignment asks for)
    problems: tuple[str, ...]        # what the student should hear about (missing or duplicate files)


def student_id(path: Path) -> str:
    name = path.name[:-4] if path.suffix == ".zip" else path.name
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", name).strip("._") or "student"


def _is_submission(path: Path, cfg: AssignmentConfig) -> bool:
    if path.is_file():
        return path.suffix == ".zip"
    wanted = {PurePosixPath(f).name for f in cfg.submit}
    return any(p.name in wanted for p in path.rglob("*.py"))


def find_submissions(path: Path, cfg: AssignmentConfig) -> list[Path]:
    """One submission (folder or zip holding the files) or a folder of them (one entry per student)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such submission or folder: {path}")
    if path.is_file():
        return [path]
    if any((path / f).is_file() for f in cfg.submit):
        return [path]
    entries = sorted(p for p in path.iterdir() if not p.name.startswith(".") and (p.is_dir() or p.suffix == ".zip"))
    if entries:
        return entries
    return [path]  # an empty or unrecognisable single submission: graded, and told what is missing


def _pick(candidates: dict[str, list[tuple[str, bytes]]], cfg: AssignmentConfig) -> SubmissionFiles:
    files: dict[str, bytes] = {}
    problems: list[str] = []
    for name in cfg.submit:
        # a file at the asked-for path (models/naive/RNN.py) wins over one found elsewhere by its name alone
        found = sorted(candidates.get(name, []), key=lambda c: (not ("/" + c[0]).endswith("/" + name), c[0].count("/"), c[0]))
        if not found:
            problems.append(f"{name} is missing from the submission")
            continue
        if len(found) > 1:
            problems.append(f"{name} appears {len(found)} times; graded {found[0][0]}")
        files[name] = found[0][1]
    return SubmissionFiles("", files, tuple(problems))


def read_submission(path: Path, cfg: AssignmentConfig) -> SubmissionFiles:
    # submitted files are found by their file name at any depth (submit names may hold folders)
    wanted = {PurePosixPath(f).name: f for f in cfg.submit}
    candidates: dict[str, list[tuple[str, bytes]]] = {}
    problems: list[str] = []

    def add(rel: str, read: object) -> None:
        name = PurePosixPath(rel).name
        if name not in wanted or any(j in "/" + rel for j in _JUNK):
            return
        data = read()  # type: ignore[operator]
        candidates.setdefault(wanted[name], []).append((rel, data))

    if path.is_file():
        try:
            with zipfile.ZipFile(path) as zf:
                members = zf.infolist()[:MAX_ARCHIVE_MEMBERS]
                for info in members:
                    if info.is_dir():
                        continue
                    if info.file_size > MAX_FILE_BYTES:
                        problems.append(f"{info.filename} is larger than {MAX_FILE_BYTES // 1024} KiB and was ignored")
                        continue
                    add(info.filename, lambda info=info: zf.read(info)[:MAX_FILE_BYTES])
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
            problems.append(f"the zip file could not be read ({exc})")
    else:
        for p in sorted(path.rglob("*.py"))[:MAX_ARCHIVE_MEMBERS]:
            if p.is_file() and not p.is_symlink():
                if p.stat().st_size > MAX_FILE_BYTES:
                    problems.append(f"{p.relative_to(path)} is larger than {MAX_FILE_BYTES // 1024} KiB and was ignored")
                    continue
                add(str(p.relative_to(path)), p.read_bytes)
    picked = _pick(candidates, cfg)
    return SubmissionFiles(student_id(path), picked.files, tuple(problems) + picked.problems)
