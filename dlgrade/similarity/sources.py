"""What is compared: one document per student, one per corpus file, and the release's code as boilerplate.

A student's document is the files that ``assignment.toml`` asks for (``submit``), read by
:func:`dlgrade.intake.read_submission` exactly as grading reads them, joined in ``submit`` order. A corpus
is any tree of ``.py`` and ``.ipynb`` files; each file is one document. A notebook contributes the code
that grading extracts from it (:func:`dlgrade.notebook.extract`, the student's own lines); its outputs and
markdown never count. Nothing here executes any of the code.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dlgrade import notebook
from dlgrade.config import AssignmentConfig
from dlgrade.intake import MAX_FILE_BYTES, find_submissions, read_submission
from dlgrade.release import skeleton_files

MAX_NOTEBOOK_BYTES = notebook.MAX_NOTEBOOK_BYTES
MAX_CORPUS_FILES = 20000
_SKIP_PARTS = {"__pycache__", ".git", ".ipynb_checkpoints", "__MACOSX"}


@dataclass(frozen=True)
class Document:
    """Code to compare: ``text`` is the files joined; ``files`` maps each part back to its own line numbers."""

    name: str                              # the student id, or ``<corpus folder>/<path in it>``
    kind: str                              # "student" or "corpus"
    text: str
    files: tuple[tuple[str, int], ...]     # (file name, the line of ``text`` where it starts, 1-based)

    def locate(self, line: int) -> tuple[str, int]:
        """(file name, line in that file) of a 1-based line of ``text``."""
        current = self.files[0] if self.files else ("", 1)
        for entry in self.files:
            if entry[1] > line:
                break
            current = entry
        return current[0], line - current[1] + 1


def join_files(name: str, kind: str, parts: list[tuple[str, str]]) -> Document:
    """One document from (file name, source) parts; each part starts on a fresh line."""
    text, files, line = "", [], 1
    for fname, source in parts:
        if not source.strip():
            continue
        if not source.endswith("\n"):
            source += "\n"
        files.append((fname, line))
        text += source
        line += source.count("\n")
    return Document(name, kind, text, tuple(files))


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").replace("\r\n", "\n")


def notebook_code(data: bytes, filename: str, settings: notebook.Settings | None = None) -> str:
    """The student's code of a notebook as grading extracts it (:func:`dlgrade.notebook.extract`), without the code the
    grader adds to the module (stand-ins, prelude, globals), which would match in every notebook. Nothing runs."""
    got = notebook.extract(data, filename, settings)
    if not got.readable:
        raise ValueError("; ".join(got.problems) or f"{filename} could not be read")
    return got.student_code()


def student_documents(cfg: AssignmentConfig, path: Path) -> tuple[list[Document], list[str]]:
    """One document per submission under ``path`` (as ``dlgrade grade`` finds them), and what could not be read."""
    docs: list[Document] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for sub in find_submissions(Path(path), cfg):
        got = read_submission(sub, cfg)
        name = got.student
        if name in seen:  # "alice" and "alice.zip": keep both, told apart
            seen[name] += 1
            name = f"{name}~{seen[name]}"
        else:
            seen[name] = 1
        texts = {f: _decode(data) for f, data in got.files.items()}
        for ex in got.notebooks.values():  # a notebook: its own code, not the module the worker gets
            texts[ex.module_file] = ex.student_code() if ex.readable else ""
        parts = [(f, texts[f]) for f in sorted(texts, key=_submit_order(cfg))]
        docs.append(join_files(name, "student", parts))
        if not got.files:
            problems.append(f"{name}: none of the submitted files were found ({'; '.join(got.problems)})")
    return docs, problems


def _submit_order(cfg: AssignmentConfig):  # type: ignore[no-untyped-def]
    order = {(name[:-6] + ".py" if name.endswith(".ipynb") else name): i for i, name in enumerate(cfg.submit)}
    return lambda f: (order.get(f, len(order)), f)


def corpus_documents(folders: list[Path]) -> tuple[list[Document], list[str]]:
    """One document per ``.py`` or ``.ipynb`` file in each corpus folder (at any depth)."""
    docs: list[Document] = []
    problems: list[str] = []
    labels: set[str] = set()
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            raise FileNotFoundError(f"no such corpus folder: {folder}")
        files = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.suffix in (".py", ".ipynb"))
        base = folder.parent if folder.is_file() else folder
        for p in files:
            rel = p.relative_to(base)
            if not p.is_file() or p.is_symlink() or _SKIP_PARTS & set(rel.parts):
                continue
            if len(docs) >= MAX_CORPUS_FILES:
                problems.append(f"{folder}: more than {MAX_CORPUS_FILES} corpus files; the rest were ignored")
                break
            label = PurePosixPath(folder.name, *rel.parts).as_posix() if base is folder else rel.as_posix()
            while label in labels:
                label += "~"
            limit = MAX_NOTEBOOK_BYTES if p.suffix == ".ipynb" else MAX_FILE_BYTES
            if p.stat().st_size > limit:
                problems.append(f"{label} is larger than {limit // (1024 * 1024)} MiB and was ignored")
                continue
            data = p.read_bytes()
            try:
                text = notebook_code(data, label) if p.suffix == ".ipynb" else _decode(data)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            labels.add(label)
            docs.append(join_files(label, "corpus", [(rel.as_posix(), text)]))
    return docs, problems


def boilerplate_sources(cfg: AssignmentConfig) -> list[tuple[str, str]]:
    """The release's code, which never counts: every released file, solutions stripped, in three forms.

    Each file as released; the submitted files' skeletons joined in ``submit`` order, as a student's
    document joins them (so the seams between files are given code too); and each Python file re-printed
    from its syntax tree, so that a student who ran a formatter over the given code does not make it count.
    """
    released = skeleton_files(cfg)
    out: list[tuple[str, str]] = []
    for rel, data in sorted(released.items()):
        if rel.endswith(".py"):
            out.append((rel, _decode(data)))
            try:
                out.append((rel, ast.unparse(ast.parse(_decode(data))) + "\n"))
            except (SyntaxError, ValueError):  # a skeleton stub that does not parse: its released form still counts
                pass
        elif rel.endswith(".ipynb"):
            try:
                out.append((rel, notebook_code(data, rel, notebook.settings(cfg))))
            except ValueError:
                continue
    joined = join_files("skeleton", "boilerplate", [(f, _decode(released[f])) for f in cfg.submit if f in released])
    out.append(("skeleton", joined.text))
    return out
