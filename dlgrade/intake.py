"""Intake: find the students of a batch and read each submission's files into memory.

A submission is a folder or a zip holding the files the assignment asks for, at any depth
(students zip their whole project folder). Nothing is extracted to disk, so hostile archive
paths cannot escape; sizes are capped to stop archive bombs.

Notebooks (``.ipynb`` entries of ``submit``) are found the same way, and also under the names Colab
and file managers give copies (``Copy of hw4_rnn.ipynb``, ``hw4_rnn (1).ipynb``, ``hw4_rnn - Copy.ipynb``)
or under any name an ``accept`` pattern allows. Each is reduced on the trusted side to its graded module
(:func:`dlgrade.notebook.extract`), which the worker gets as ``<stem>.py``; nothing in a notebook runs here.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from dlgrade import notebook
from dlgrade.config import AssignmentConfig

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_NOTEBOOK_BYTES = notebook.MAX_NOTEBOOK_BYTES
MAX_ARCHIVE_MEMBERS = 5000
_JUNK = ("__MACOSX/", "/.", ".ipynb_checkpoints/")
# "Copy of X.ipynb" (Colab, Google Drive), "X (1).ipynb" (browser downloads), "X - Copy.ipynb" (Windows)
_COPY_NAME = re.compile(r"^(?:copy of\s+)*(?P<stem>.+?)(?:\s*\(\d+\)|\s+-\s+copy)*$", re.I)
_HOW = {0: "", 1: "a copy's name of it", 2: "it matches the assignment's accept patterns"}


@dataclass(frozen=True)
class SubmissionFiles:
    student: str
    files: dict[str, bytes]          # what the worker gets: .py files as submitted, a notebook as its graded <stem>.py
    problems: tuple[str, ...]        # what the student should hear about (missing or duplicate files)
    notebooks: dict[str, notebook.Extracted] = field(default_factory=dict)   # notebook entry -> extraction (trusted side)
    originals: dict[str, bytes] = field(default_factory=dict)                # notebook entry -> the file as submitted


def student_id(path: Path) -> str:
    name = path.name[:-4] if path.suffix == ".zip" else path.name
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", name).strip("._") or "student"


def copy_stem(filename: str) -> str | None:
    """The notebook a file name stands for, lower case (``Copy of HW4 (2).ipynb`` -> ``hw4``); None: not a notebook."""
    name = PurePosixPath(filename).name
    if not name.lower().endswith(".ipynb"):
        return None
    m = _COPY_NAME.match(name[:-6].strip())
    return (m.group("stem") if m else name[:-6]).strip().lower()


class _Matcher:
    """Which submit entry a file found in a submission is a candidate for, and how good a match it is."""

    def __init__(self, cfg: AssignmentConfig, settings: notebook.Settings | None) -> None:
        self.exact = {PurePosixPath(f).name: f for f in cfg.submit}
        self.notebooks = [f for f in cfg.submit if f.endswith(".ipynb")]
        self.copies = {copy_stem(f): f for f in self.notebooks}
        self.accept = {f: settings.spec(f).accept for f in self.notebooks} if settings else {}

    def __call__(self, rel: str) -> tuple[str, int] | None:
        name = PurePosixPath(rel).name
        if name in self.exact:
            return self.exact[name], 0
        if not self.notebooks or not name.lower().endswith(".ipynb"):
            return None
        stem = copy_stem(name)
        if stem in self.copies:
            return self.copies[stem], 1  # type: ignore[index]
        for entry, patterns in self.accept.items():
            if any(fnmatchcase(name.lower(), p.lower()) for p in patterns):
                return entry, 2
        return None


def find_submissions(path: Path, cfg: AssignmentConfig) -> list[Path]:
    """One submission (folder or zip holding the files) or a folder of them (one entry per student)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such submission or folder: {path}")
    if path.is_file():
        return [path]
    if any((path / f).is_file() for f in cfg.submit):
        return [path]
    stems = {copy_stem(f) for f in cfg.submit if f.endswith(".ipynb")}
    if stems and any(p.is_file() and copy_stem(p.name) in stems for p in path.iterdir()):
        return [path]  # one student's folder holding "Copy of hw4_rnn.ipynb"
    entries = sorted(p for p in path.iterdir() if not p.name.startswith(".") and (p.is_dir() or p.suffix == ".zip"))
    if entries:
        return entries
    return [path]  # an empty or unrecognisable single submission: graded, and told what is missing


def _pick(candidates: dict[str, list[tuple[str, bytes, int]]], cfg: AssignmentConfig) -> SubmissionFiles:
    files: dict[str, bytes] = {}
    problems: list[str] = []
    for name in cfg.submit:
        # an exact name wins over a copy's name; a file at the asked-for path (models/naive/RNN.py) over one found
        # elsewhere by its name alone; then the shallowest, then the first in sorted order
        found = sorted(candidates.get(name, []), key=lambda c: (c[2], not ("/" + c[0]).endswith("/" + name),
                                                                 c[0].count("/"), c[0]))
        if not found:
            problems.append(f"{name} is missing from the submission")
            continue
        graded, rank = found[0][0], found[0][2]
        same = [c for c in found if c[2] == rank]
        others = ", ".join(c[0] for c in found[1:] if c[2] != rank)
        if rank:
            problems.append(f"{name} was not found; graded {graded} instead ({_HOW[rank]})"
                            + (f"; not graded: {', '.join(c[0] for c in found[1:])}" if len(found) > 1 else ""))
        else:
            if len(same) > 1:
                problems.append(f"{name} appears {len(same)} times; graded {graded}")
            if others:
                problems.append(f"{name}: graded {graded}; other notebooks found and not graded: {others}")
        files[name] = found[0][1]
    return SubmissionFiles("", files, tuple(problems))


def _limit(rel: str) -> int:
    return MAX_NOTEBOOK_BYTES if rel.lower().endswith(".ipynb") else MAX_FILE_BYTES


def _too_big(rel: str) -> str:
    limit = _limit(rel)
    size = f"{limit // 2**20} MiB" if limit >= 2**20 and rel.lower().endswith(".ipynb") else f"{limit // 1024} KiB"
    return f"{rel} is larger than {size} and was ignored"


def read_submission(path: Path, cfg: AssignmentConfig) -> SubmissionFiles:
    # submitted files are found by their file name at any depth (submit names may hold folders)
    settings = notebook.settings(cfg) if any(f.endswith(".ipynb") for f in cfg.submit) else None
    match = _Matcher(cfg, settings)
    candidates: dict[str, list[tuple[str, bytes, int]]] = {}
    problems: list[str] = []

    def add(rel: str, size: int, read: Callable[[], bytes]) -> None:
        if any(j in "/" + rel for j in _JUNK):
            return
        got = match(rel)
        if got is None:
            return
        if size > _limit(rel):
            problems.append(_too_big(rel))
            return
        candidates.setdefault(got[0], []).append((rel, read()[:_limit(rel)], got[1]))

    if path.is_file():
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist()[:MAX_ARCHIVE_MEMBERS]:
                    if not info.is_dir():
                        add(info.filename, info.file_size, lambda info=info: zf.read(info))  # type: ignore[misc]
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
            problems.append(f"the zip file could not be read ({exc})")
    else:
        found = sorted(path.rglob("*.py"))
        if settings is not None:
            found = sorted(found + [p for p in path.rglob("*") if p.suffix.lower() == ".ipynb"])
        for p in found[:MAX_ARCHIVE_MEMBERS]:
            if p.is_file() and not p.is_symlink():
                add(p.relative_to(path).as_posix(), p.stat().st_size, p.read_bytes)
    picked = _pick(candidates, cfg)
    files, notebooks, originals = dict(picked.files), {}, {}
    nb_problems: list[str] = []
    for name in [f for f in cfg.submit if f.endswith(".ipynb") and f in files]:
        originals[name] = files.pop(name)
        ex = notebook.extract(originals[name], name, settings)
        notebooks[name] = ex
        files[ex.module_file] = ex.source.encode()
        nb_problems += ex.problems
    return SubmissionFiles(student_id(path), files, tuple(problems) + picked.problems + tuple(nb_problems),
                           notebooks, originals)
