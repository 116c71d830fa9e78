"""Notebook intake: the graded module of a submitted ``.ipynb``, built on the trusted side; nothing in it runs.

``extract(data, filename, settings)`` reads a notebook with nbformat (older formats are converted), builds the
graded module from its code cells with :mod:`dlgrade.notebook.standalone` (the same rules as the released
public tests), checks that it defines what the assignment asks for, and collects what the trusted side needs
besides: where each module line came from (cell, line), the written answers, the cells' text outputs.
``settings(cfg)`` reads ``assignment.toml``'s ``[notebook]`` and ``[notebooks."<name>.ipynb"]`` tables
(docs/notebooks.md).
"""

from __future__ import annotations

import ast
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from dlgrade.config import AssignmentConfig
from dlgrade.errors import ConfigError
from dlgrade.notebook.standalone import NbBuilt, nb_build_module, nb_cells
from dlgrade.static_check import Violation

MAX_NOTEBOOK_BYTES = 64 * 1024 * 1024     # notebooks full of image outputs are routinely tens of MB
MAX_OUTPUT_CHARS = 200_000                 # text output kept per cell (its end, where final results are printed)
GLOBALS_IMPORTS = ("import math", "import os", "import numpy", "import numpy as np", "import torch",
                   # the device the worker grades on (cpu, or cuda with --device cuda / --gpus); cpu outside the grader
                   "worker_device = torch.device(os.environ.get('DLGRADE_DEVICE', 'cpu'))")
HEADER = ("# The graded module, built by dlgrade from the code cells of {name}: imports, definitions and simple\n"
          "# constants are kept, everything else is not run (docs/notebooks.md). '# --- cell N ---' marks each cell.")


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class NotebookSpec:
    """What ``assignment.toml`` says about one submitted notebook."""

    name: str                                   # the submit entry, e.g. "hw4_rnn.ipynb"
    provides: tuple[str, ...] = ()              # names the graded module must define
    accept: tuple[str, ...] = ()                # other file names graded as this notebook (glob patterns)
    globals: dict[str, str] = field(default_factory=dict)   # name -> Python expression, evaluated in the worker
    prelude: tuple[str, ...] = ()               # files of assignments/<id>/ run in the module before the cells
    prelude_source: str = ""                    # the prelude files and the globals, as the module runs them
    questions: dict[str, str] = field(default_factory=dict)  # question id -> the label that finds its cell

    @property
    def module_file(self) -> str:
        """The file the worker imports: ``hw4_rnn.ipynb`` -> ``hw4_rnn.py``."""
        return PurePosixPath(self.name).with_suffix(".py").as_posix()


@dataclass(frozen=True)
class Settings:
    notebooks: dict[str, NotebookSpec] = field(default_factory=dict)   # every .ipynb entry of submit

    def spec(self, name: str) -> NotebookSpec:
        return self.notebooks.get(name) or NotebookSpec(name)


_NOTEBOOK_KEYS = {"provides", "accept", "globals", "prelude", "questions"}
_SHARED_KEYS = {"globals", "prelude"}


def _strings(value: Any, origin: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{origin}: {key} must be a string or a list of strings, got {value!r}")
    return tuple(value)


def _table(value: Any, origin: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{origin}: must be a table of strings")
    return {str(k): v for k, v in value.items()}


def _globals(value: Any, origin: str) -> dict[str, str]:
    out = _table(value, origin)
    for name, expr in out.items():
        if not name.isidentifier():
            raise ConfigError(f"{origin}: {name!r} is not a Python name")
        try:
            ast.parse(expr, mode="eval")
        except SyntaxError as exc:
            raise ConfigError(f"{origin}: {name} = {expr!r} is not a Python expression ({exc.msg})") from None
    return out


def prelude_source(files: Iterable[tuple[str, str]], globals_: Mapping[str, str]) -> str:
    """The code the graded module runs before the cells: prelude files, then the globals (public: it is released)."""
    parts = [f"# --- supplied by the assignment: {name} ---\n{text.rstrip()}" for name, text in files]
    if globals_:
        body = "\n".join(f"    {imp}" for imp in GLOBALS_IMPORTS)
        items = "\n".join(f"        {name!r}: ({expr})," for name, expr in globals_.items())
        parts.append("# --- supplied by the assignment: [notebook.globals] ---\n"
                     f"def _nb_globals():\n{body}\n    return {{\n{items}\n    }}\n\n\n"
                     "globals().update(_nb_globals())\ndel _nb_globals")
    return "\n".join(parts) + ("\n" if parts else "")


def settings(cfg: AssignmentConfig) -> Settings:
    """The notebook settings of an assignment; a bad entry raises ConfigError naming the table."""
    raw = cfg.raw
    where = str(cfg.assignment_dir / "assignment.toml")
    shared = raw.get("notebook", {})
    if not isinstance(shared, dict) or set(shared) - _SHARED_KEYS:
        raise ConfigError(f"{where} [notebook]: a table with {', '.join(sorted(_SHARED_KEYS))}")
    tables = raw.get("notebooks", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{where} [notebooks]: must hold one table per notebook, [notebooks.\"name.ipynb\"]")
    names = [f for f in cfg.submit if f.endswith(".ipynb")]
    stray = [n for n in tables if n not in names]
    if stray:
        raise ConfigError(f"{where} [notebooks]: {stray} are not notebooks listed in submit ({', '.join(names) or 'none'})")
    shared_globals = _globals(shared.get("globals", {}), f"{where} [notebook.globals]")
    shared_prelude = _strings(shared.get("prelude", []), f"{where} [notebook]", "prelude")
    out: dict[str, NotebookSpec] = {}
    for name in names:
        origin = f'{where} [notebooks."{name}"]'
        table = tables.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{origin}: must be a table")
        unknown = set(table) - _NOTEBOOK_KEYS
        if unknown:
            raise ConfigError(f"{origin}: unknown keys {sorted(unknown)} (known: {', '.join(sorted(_NOTEBOOK_KEYS))})")
        provides = _strings(table.get("provides", []), origin, "provides")
        bad = [p for p in provides if not p.isidentifier()]
        if bad:
            raise ConfigError(f"{origin}: provides must list Python names, got {bad}")
        globals_ = {**shared_globals, **_globals(table.get("globals", {}), f"{origin}.globals")}
        prelude = shared_prelude + _strings(table.get("prelude", []), origin, "prelude")
        files = []
        for rel in prelude:
            path = cfg.assignment_dir / rel
            if not path.is_file():
                raise ConfigError(f"{origin}: prelude file {rel} does not exist in {cfg.assignment_dir}")
            text = path.read_text()
            try:
                ast.parse(text)
            except SyntaxError as exc:
                raise ConfigError(f"{origin}: prelude file {rel} does not parse: {exc}") from None
            files.append((rel, text))
        out[name] = NotebookSpec(name=name, provides=provides, accept=_strings(table.get("accept", []), origin, "accept"),
                                 globals=globals_, prelude=prelude, prelude_source=prelude_source(files, globals_),
                                 questions=_table(table.get("questions", {}), f"{origin}.questions"))
    return Settings(out)


# ----------------------------------------------------------------------------- the extraction


@dataclass(frozen=True)
class CellOutput:
    cell: int                       # the cell's number (every cell counted from 1)
    execution_count: int | None     # Jupyter's In [n], if the cell was run
    text: str                       # its text outputs: streams, text/plain results, errors (end kept if long)
    printed: str = ""               # the same without error tracebacks (they quote source lines): streams and text/plain


@dataclass(frozen=True)
class Extracted:
    """A submitted notebook as the trusted side keeps it. ``source`` is what the worker imports."""

    notebook: str                   # the submit entry ("hw4_rnn.ipynb")
    module_file: str                # the worker's file ("hw4_rnn.py")
    source: str
    line_map: tuple[tuple[int, int] | None, ...] = ()   # module line - 1 -> (cell, line in cell); None: not the student's
    problems: tuple[str, ...] = ()  # for the student
    kept: tuple[str, ...] = ()      # for the instructor: what was graded, per statement
    dropped: tuple[str, ...] = ()   # for the instructor: what was not run, and why
    notes: tuple[str, ...] = ()     # for the instructor: format warnings
    answers: dict[str, str] = field(default_factory=dict)                   # question id -> text of its cells
    answer_cells: dict[str, tuple[int, ...]] = field(default_factory=dict)  # question id -> cell numbers
    outputs: tuple[CellOutput, ...] = ()
    defined: tuple[str, ...] = ()
    readable: bool = True           # False: the notebook could not be read; the module only raises ImportError
    seconds: float = 0.0

    def locate(self, line: int) -> str | None:
        """``"cell N, line M"`` for a line of the graded module (None: generated code, not the student's)."""
        at = self.line_map[line - 1] if 0 < line <= len(self.line_map) else None
        return f"cell {at[0]}, line {at[1]}" if at else None

    def student_code(self) -> str:
        """The graded module without the code the grader added (stand-ins, prelude, globals): e.g. for comparisons."""
        lines = self.source.split("\n")
        return "\n".join(line for k, line in enumerate(lines) if k < len(self.line_map) and self.line_map[k] is not None)

    def output_text(self, cell: int | None = None) -> str:
        """The text outputs of one cell, or of every cell (each headed by its number), as saved in the notebook."""
        chosen = [o for o in self.outputs if cell is None or o.cell == cell]
        if cell is not None:
            return chosen[0].text if chosen else ""
        return "\n".join(f"[cell {o.cell}]\n{o.text}" for o in chosen)

    def summary(self) -> dict[str, Any]:
        """Plain data for the instructor's report (graded/notebooks.json)."""
        return {"notebook": self.notebook, "module": self.module_file, "readable": self.readable,
                "problems": list(self.problems), "kept": list(self.kept), "dropped": list(self.dropped),
                "notes": list(self.notes), "answers": self.answers,
                "answer_cells": {k: list(v) for k, v in self.answer_cells.items()}, "seconds": round(self.seconds, 4)}


def _stub(notebook: str, module_file: str, problem: str, started: float, notes: tuple[str, ...] = ()) -> Extracted:
    """An unreadable notebook: the worker's module fails to import with the same message (every part scores 0)."""
    source = f"# {notebook} could not be graded (see the message)\nraise ImportError({problem!r})\n"
    return Extracted(notebook, module_file, source, (None, None), (problem,), notes=notes, readable=False,
                     seconds=time.monotonic() - started)


def _decode(data: bytes, name: str) -> tuple[dict[str, Any] | None, str]:
    """The notebook's JSON, or why it is not one (a message for the student)."""
    if not data.strip():
        return None, f"{name} is empty"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None, f"{name} could not be read: it is not a text file (a notebook is UTF-8 JSON)"
    try:
        value = json.loads(text)
    except RecursionError:
        return None, f"{name} could not be read: its JSON is nested too deeply"
    except ValueError as exc:
        try:
            ast.parse(text)
            looks_python = bool(re.search(r"^\s*(import|from|def|class)\s", text, re.M))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            looks_python = False
        if looks_python:
            return None, (f"{name} could not be read: it is a Python script renamed to .ipynb, not a notebook. Submit the "
                          "notebook itself (Jupyter: File > Download as > Notebook; Colab: File > Download > .ipynb)")
        err = exc if isinstance(exc, json.JSONDecodeError) else None
        at = f" (line {err.lineno}, column {err.colno}: {err.msg})" if err else ""
        return None, (f"{name} could not be read: it is not valid notebook JSON{at}; the file may be cut off or edited by "
                      "hand. Download it again from Jupyter or Colab and resubmit")
    if not isinstance(value, dict) or not ("cells" in value or "worksheets" in value):
        return None, f"{name} could not be read: it is JSON but not a notebook (no cells)"
    return value, ""


def _read(value: dict[str, Any], name: str) -> tuple[Any, str, tuple[str, ...]]:
    """(the notebook as nbformat 4, a problem, instructor notes); older formats are converted."""
    major = value.get("nbformat")
    try:
        import nbformat  # about 0.1 s to import: paid only by assignments with notebooks
    except ImportError:  # an environment with only what grading needs (the Gradescope bundle): read the JSON as it is
        if major in (3, 4):
            return value, "", (f"{name} was read as plain JSON (nbformat is not installed here)",)
        return None, f"{name} could not be read: it declares notebook format {major!r}, which this grader does not read", ()

    if not isinstance(major, int) or major not in nbformat.versions:
        return None, f"{name} could not be read: it declares notebook format {major!r}, which this grader does not read", ()
    notes: tuple[str, ...] = ()
    try:
        nb = nbformat.versions[major].to_notebook_json(value, minor=value.get("nbformat_minor", 0))
        if major != 4:
            nb = nbformat.convert(nb, 4)
            notes = (f"{name} was in notebook format {major}; it was converted to format 4",)
    except Exception as exc:  # nbformat raises many kinds on malformed input
        if major == 4 and isinstance(value.get("cells"), list):
            return value, "", (f"{name} does not follow the notebook format ({type(exc).__name__}: {str(exc)[:200]}); "
                               "its cells were read as they are",)
        return None, (f"{name} could not be read: it is in notebook format {major} and could not be converted "
                      f"({type(exc).__name__}: {str(exc)[:200]}). Open it in Jupyter, save it (which writes format 4) "
                      "and resubmit"), ()
    try:
        nbformat.validate(nb)
    except Exception as exc:
        notes += (f"{name} does not fully follow the notebook format ({str(exc).splitlines()[0][:200]}); "
                  "its cells were read anyway",)
    return nb, "", notes


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def cell_outputs(nb: Any) -> tuple[CellOutput, ...]:
    """The text outputs of each code cell that has any (streams, text/plain results, errors), read, never run."""
    out = []
    cells = nb.get("cells", []) if isinstance(nb, dict) else []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code" or not isinstance(cell.get("outputs"), list):
            continue
        chunks: list[tuple[str, bool]] = []   # (text, is an error)
        for o in cell["outputs"]:
            if not isinstance(o, dict):
                continue
            kind = o.get("output_type")
            if kind == "stream":
                chunks.append((_text(o.get("text")), False))
            elif kind in ("execute_result", "display_data") and isinstance(o.get("data"), dict):
                chunks.append((_text(o["data"].get("text/plain")) + "\n", False))
            elif kind == "error":
                chunks.append((f"{o.get('ename', '')}: {o.get('evalue', '')}\n" + "\n".join(
                    t for t in o.get("traceback", []) if isinstance(t, str)) + "\n", True))
        text = _clip_output(_ANSI.sub("", "".join(c for c, _ in chunks)))
        if text.strip():
            count = cell.get("execution_count")
            printed = _clip_output(_ANSI.sub("", "".join(c for c, error in chunks if not error)))
            out.append(CellOutput(number, count if isinstance(count, int) else None, text, printed))
    return tuple(out)


def _clip_output(text: str) -> str:
    if len(text) > MAX_OUTPUT_CHARS:
        return "[... the beginning of this output was cut ...]\n" + text[-MAX_OUTPUT_CHARS:]
    return text


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _labelled(source: str, label: str) -> bool:
    """Does a line of the cell start with the label (after markdown decoration: ``#``, ``*``, ``_``, ``>``)?"""
    for line in source.split("\n"):
        text = _norm(line).lstrip("#*_> ")
        if text.startswith(label) and not text[len(label):len(label) + 1].isalnum():
            return True
    return False


def find_answers(cells: list[tuple[int, str, str]], questions: Mapping[str, str]) -> tuple[dict[str, str], dict[str, tuple[int, ...]]]:
    """Each question's answer: the first markdown/raw cell with a line starting with the question's label (a heading
    or a bold label, ``## Problem 1(a)`` or ``**Question 1**``), and the markdown/raw cells after it, up to the next
    code cell or the next cell labelled with another question."""
    labels = {q: _norm(label) for q, label in questions.items() if label.strip()}
    answers: dict[str, str] = {}
    where: dict[str, tuple[int, ...]] = {}
    for q, label in labels.items():
        start = next((i for i, (_, kind, src) in enumerate(cells) if kind in ("markdown", "raw") and _labelled(src, label)), None)
        if start is None:
            answers[q], where[q] = "", ()
            continue
        chosen = [cells[start]]
        for n, kind, src in cells[start + 1:]:
            if kind not in ("markdown", "raw") or any(_labelled(src, other) for o, other in labels.items() if o != q):
                break
            chosen.append((n, kind, src))
        answers[q] = "\n\n".join(src.strip() for _, _, src in chosen)
        where[q] = tuple(n for n, _, _ in chosen)
    return answers, where


def _missing(built: NbBuilt, spec: NotebookSpec) -> str:
    missing = [p for p in spec.provides if p not in built.defined]
    if not missing:
        return ""
    hints = []
    for name in missing:
        bad = next((u for u in built.unparsable if name in u.names), None)
        dropped = next((s for s in built.statements if not s.kept and name in s.names), None)
        if bad is not None:
            hints.append(f"{name} is in cell {bad.cell}, which cannot be parsed")
        elif dropped is not None and dropped.kind in ("def", "class", "constant"):
            hints.append(f"{name} at {dropped.where} was not kept: {dropped.why}")
        elif dropped is not None:
            hints.append(f"{name} is bound at {dropped.where} by {dropped.kind}, which the grader does not run")
    hint = f" ({'; '.join(hints)})" if hints else ""
    return (f"{spec.name} does not define {', '.join(missing)}; each must be defined in a code cell, at the top level of "
            f"the cell (not inside an if block, a loop or a function){hint}")


def extract(data: bytes, filename: str, settings: Settings | None = None) -> Extracted:
    """The graded module of a notebook submitted as ``filename`` (a submit entry). Never runs the notebook."""
    started = time.monotonic()
    spec = (settings or Settings()).spec(filename)
    module_file = spec.module_file
    if len(data) > MAX_NOTEBOOK_BYTES:
        return _stub(filename, module_file, f"{filename} is larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB and was not read; "
                     "clear the outputs of the cells (Edit > Clear all outputs) and resubmit", started)
    value, problem = _decode(data, filename)
    if value is None:
        return _stub(filename, module_file, problem, started)
    nb, problem, notes = _read(value, filename)
    if nb is None:
        return _stub(filename, module_file, problem, started, notes)
    try:
        cells = nb_cells(nb)
    except ValueError as exc:
        return _stub(filename, module_file, f"{filename} could not be read: {exc}", started, notes)
    if not any(kind == "code" and src.strip() for _, kind, src in cells):
        return _stub(filename, module_file, f"{filename} has no code: none of its {len(cells)} cells is a code cell with "
                     "something in it", started, notes)
    built = nb_build_module(cells, spec.prelude_source, tuple(spec.globals), HEADER.format(name=filename))
    problems = [f"{filename} cell {u.cell}, line {u.line} cannot be parsed ({u.message}); the cell was not graded"
                + (f", so {', '.join(u.names)} from it {'is' if len(u.names) == 1 else 'are'} missing" if u.names else "")
                for u in built.unparsable]
    missing = _missing(built, spec)
    if missing:
        problems.append(missing)
    answers, answer_cells = find_answers(cells, spec.questions)
    kept = tuple(f"{s.where}: {s.kind} {', '.join(s.names)}".rstrip() for s in built.statements if s.kept)
    dropped = tuple(f"{s.where}: {s.kind} {', '.join(s.names)}, {s.why}" if s.why else
                    f"{s.where}: {s.kind}" + (f", binding {', '.join(s.names)}" if s.names else "")
                    for s in built.statements if not s.kept)
    return Extracted(filename, module_file, built.source, built.line_map, tuple(problems), kept, dropped, notes, answers,
                     answer_cells, cell_outputs(nb), built.defined, True, time.monotonic() - started)


# ----------------------------------------------------------------------------- messages, checks and reports


def map_locations(text: str, notebooks: Mapping[str, Extracted]) -> str:
    """Rewrite ``<module>.py, line K`` (worker tracebacks, syntax errors) into the notebook's cell and line."""
    if not notebooks or not text:
        return text
    by_file = {PurePosixPath(e.module_file).name: e for e in notebooks.values()}

    def one(m: re.Match[str]) -> str:
        ex = by_file.get(PurePosixPath(m.group("file")).name)
        if ex is None:
            return m.group(0)
        at = ex.locate(int(m.group("line")))
        return f"{ex.notebook}, {at}" if at else f"{ex.notebook} (code the grader added, line {m.group('line')})"

    def student_frame(line: str) -> bool:  # a traceback line inside code the grader added is noise to the student
        m = re.fullmatch(r"\s*(?P<file>[\w./-]+\.py), line (?P<line>\d+)(, in .*)?", line)
        ex = by_file.get(PurePosixPath(m.group("file")).name) if m else None
        return ex is None or m is None or ex.locate(int(m.group("line"))) is not None

    text = "\n".join(line for line in text.split("\n") if student_frame(line))
    text = re.sub(r"(?P<file>[\w./-]+\.py)\"?,? line (?P<line>\d+)", one, text)
    for e in notebooks.values():  # "hw4_rnn.py defines no 'RNN'" names the notebook the student knows
        text = re.sub(rf"(?<![\w./-]){re.escape(PurePosixPath(e.module_file).name)}\b", e.notebook, text)
    return text


def check_sources(notebooks: Mapping[str, Extracted]) -> dict[str, bytes]:
    """The graded modules under their notebooks' names, for the static checks of rules naming the notebook."""
    return {name: e.source.encode() for name, e in notebooks.items() if e.readable}


def locate_violations(violations: Iterable[Violation], notebooks: Mapping[str, Extracted]) -> list[Violation]:
    """Static-check findings in notebooks point at a cell and line; findings in code the grader added are dropped."""
    out = []
    for v in violations:
        ex = notebooks.get(v.file)
        if ex is None:
            out.append(v)
            continue
        at = ex.locate(v.line)
        if at is not None:
            out.append(replace(v, location=at))
    return out


def write_graded(notebooks: Mapping[str, Extracted], out_dir: Path) -> None:
    """For the instructor: ``out_dir/graded/<module>.py`` (what was graded) and ``graded/notebooks.json``."""
    if not notebooks:
        return
    folder = out_dir / "graded"
    folder.mkdir(parents=True, exist_ok=True)
    for e in notebooks.values():
        (folder / PurePosixPath(e.module_file).name).write_text(e.source)
    (folder / "notebooks.json").write_text(json.dumps([e.summary() for e in notebooks.values()], indent=1) + "\n")
