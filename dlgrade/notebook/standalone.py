"""Build an importable module from a notebook's code cells, without running anything of the notebook.

This file is self-contained (standard library only, no dlgrade imports): the grader uses it on its trusted
side, and the released public tests carry a verbatim copy, so that a student can test a notebook in Colab
or locally without dlgrade. ``load_notebook_module(path, name)`` is the entry point for that use.

The rules (docs/notebooks.md has the full list, with the reasons):

- cells are read top to bottom, each code cell statement by statement (its top level, after IPython syntax
  is removed: ``!shell`` and ``%magic`` lines become ``pass``, ``%%`` cell magics drop the whole cell except
  ``%%time``, ``%%timeit``, ``%%capture`` and ``%%prun``, whose body is Python);
- kept: imports, ``def``, ``class``, simple constants (literals, containers and arithmetic of literals and
  of names already kept, attribute reads such as ``torch.float32``, calls of a few pure builtins and of
  ``math`` functions), and ``try`` blocks made only of such statements; everything else is dropped;
- a failing import binds a stand-in that raises a clear error only when the code uses it; a kept constant
  that fails binds the same kind of stand-in; ``tqdm`` imports always bind a silent pass-through progress bar;
- a definition that a later one of the same name replaces is dropped (the last definition wins), unless
  something between the two reads it while being defined (a subclass, a default argument);
- a cell that cannot be parsed is left out; the other cells are kept.
"""

from __future__ import annotations

import ast
import builtins
import json
import linecache
import re
import sys
import types
from dataclasses import dataclass, field

NB_PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})   # %% magics whose body is Python
_NB_FUTURES = frozenset({"nested_scopes", "generators", "division", "absolute_import", "with_statement",
                         "print_function", "unicode_literals", "generator_stop", "annotations"})
NB_PURE_CALLS = frozenset({"int", "float", "str", "bool", "tuple", "list", "dict", "set", "frozenset", "range", "len",
                           "min", "max", "abs", "round"})
_NB_MAGIC = re.compile(r"^(?P<indent>[ \t]*)(?:[!%]|\?)")
_NB_HELP = re.compile(r"^(?P<indent>[ \t]*)[\w.]+\?{1,2}[ \t]*$")
_NB_ASSIGN_MAGIC = re.compile(r"^(?P<indent>[ \t]*)(?P<target>[A-Za-z_][\w.]*(?:[ \t]*,[ \t]*[A-Za-z_][\w.]*)*)[ \t]*=[ \t]*[!%]")
_NB_DEF = re.compile(r"^(?:async[ \t]+)?(?:def|class)[ \t]+(\w+)", re.M)


@dataclass(frozen=True)
class NbStatement:
    """One top-level statement of a code cell (or a whole dropped cell), and what became of it."""

    cell: int                  # position of the cell in the notebook, counting every cell from 1
    line: int                  # first line in the cell (1-based; 0 for a whole cell)
    kind: str                  # "import", "def", "class", "constant", "try", or what was dropped ("a for loop" ...)
    names: tuple[str, ...]     # the names it binds (kept or not)
    kept: bool
    why: str = ""              # why a statement that binds names was dropped

    @property
    def where(self) -> str:
        return f"cell {self.cell}, line {self.line}" if self.line else f"cell {self.cell}"


@dataclass(frozen=True)
class NbUnparsable:
    cell: int
    line: int
    message: str
    names: tuple[str, ...]     # the classes and functions the cell seems to define


@dataclass(frozen=True)
class NbBuilt:
    source: str
    line_map: tuple[tuple[int, int] | None, ...]   # module line - 1 -> (cell, line in cell); None: generated code
    statements: tuple[NbStatement, ...]
    unparsable: tuple[NbUnparsable, ...]
    defined: tuple[str, ...]                       # names the module binds (kept statements, prelude, given)

    def locate(self, line: int) -> tuple[int, int] | None:
        return self.line_map[line - 1] if 0 < line <= len(self.line_map) else None


@dataclass
class _NbPiece:
    stmt: NbStatement
    text: str
    lines: list[int]           # line in the cell of each line of text
    binds: set[str] = field(default_factory=set)
    reads: set[str] = field(default_factory=set)
    wrap: str = ""             # "import" (rebind a stand-in on failure), "constant", or "" (verbatim)
    imported: str = ""         # for an import: what it imports (named by the stand-in's message)
    superseded_by: _NbPiece | None = None


# ----------------------------------------------------------------------------- reading notebooks


def nb_cells(data: object) -> list[tuple[int, str, str]]:
    """(cell number, cell type, source) of each cell of a notebook's JSON (format 4, or 3's worksheets)."""
    if not isinstance(data, dict):
        raise ValueError("the file is JSON but not a notebook (no cells)")
    cells = data.get("cells")
    if cells is None and isinstance(data.get("worksheets"), list):  # format 3
        cells = [c for w in data["worksheets"] if isinstance(w, dict) for c in w.get("cells", [])]
    if not isinstance(cells, list):
        raise ValueError("the file is JSON but not a notebook (no list of cells)")
    out = []
    for number, cell in enumerate(cells, 1):
        if not isinstance(cell, dict):
            raise ValueError(f"cell {number} is not a JSON object")
        kind = str(cell.get("cell_type", ""))
        source = cell.get("source", cell.get("input", ""))
        if isinstance(source, list):
            source = "".join(s if isinstance(s, str) else "" for s in source)
        if kind == "heading":  # format 3
            kind = "markdown"
        out.append((number, kind, source if isinstance(source, str) else ""))
    return out


def _nb_clean(source: str) -> tuple[str | None, list[tuple[int, str]], str, ast.Module | None]:
    """The cell as plain Python (None: a cell magic drops it), the IPython lines removed, the cell magic, and the
    parsed cell when it needed no change."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    lines = source.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    magic = ""
    if first is not None and lines[first].lstrip().startswith("%%"):
        magic = lines[first].strip()
        name = magic[2:].split()[0] if magic[2:].split() else ""
        if name not in NB_PYTHON_CELL_MAGICS:
            return None, [], magic, None
        lines[first] = ""
    text = "\n".join(lines)
    try:
        return text, [], magic, ast.parse(text)   # plain Python: nothing to remove (a "%" inside a string stays)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pass
    removed: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        assign = _NB_ASSIGN_MAGIC.match(line)
        magic_line = _NB_MAGIC.match(line) or _NB_HELP.match(line)
        if assign or magic_line:
            removed.append((i + 1, line.strip()))
            if assign:
                names = [n.strip() for n in assign.group("target").split(",")]
                lines[i] = assign.group("indent") + ", ".join(names) + " = " + ", ".join("None" for _ in names)
            else:
                lines[i] = (magic_line.group("indent") if magic_line else "") + "pass"
            j = i
            while line.rstrip().endswith("\\") and j + 1 < len(lines):  # a magic continued on the next lines
                j += 1
                line = lines[j]
                lines[j] = ""
            i = j
        i += 1
    return "\n".join(lines), removed, magic, None


# ----------------------------------------------------------------------------- classifying statements


def _nb_reads(node: ast.AST) -> set[str]:
    """Names read while the statement runs at the top level: not inside function or lambda bodies."""
    out: set[str] = set()
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo += n.decorator_list + [n.args] + ([n.returns] if n.returns else [])
            continue
        if isinstance(n, ast.Lambda):
            todo += n.args.defaults + [d for d in n.args.kw_defaults if d is not None]
            continue
        if isinstance(n, ast.arguments):
            todo += n.defaults + [d for d in n.kw_defaults if d is not None]
            todo += [a.annotation for a in n.posonlyargs + n.args + n.kwonlyargs + [n.vararg, n.kwarg]
                     if a is not None and a.annotation is not None]
            continue
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            out.add(n.id)
        todo += list(ast.iter_child_nodes(n))
    return out


def _nb_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_nb_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _nb_literal(k) for k in node.keys) and all(_nb_literal(v) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        return _nb_literal(node.operand)
    if isinstance(node, ast.BinOp):
        return _nb_literal(node.left) and _nb_literal(node.right)
    return False


class _NbSimple:
    """Is an expression a simple constant: no calls into code, every name it reads already bound?"""

    def __init__(self, defined: set[str], student: set[str], aliases: dict[str, str]) -> None:
        self.defined, self.student, self.aliases = defined, student, aliases

    def __call__(self, node: ast.AST | None) -> bool:
        if node is None or isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Name):
            return node.id in self.defined or hasattr(builtins, node.id)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return all(self(e) for e in node.elts)
        if isinstance(node, ast.Dict):
            return all(self(k) for k in node.keys) and all(self(v) for v in node.values)
        if isinstance(node, ast.Starred):
            return self(node.value)
        if isinstance(node, ast.UnaryOp):
            return self(node.operand)
        if isinstance(node, ast.BinOp):
            return self(node.left) and self(node.right)
        if isinstance(node, ast.BoolOp):
            return all(self(v) for v in node.values)
        if isinstance(node, ast.Compare):
            return self(node.left) and all(self(c) for c in node.comparators)
        if isinstance(node, ast.IfExp):
            return self(node.test) and self(node.body) and self(node.orelse)
        if isinstance(node, ast.Attribute):
            return self(node.value)
        if isinstance(node, ast.Subscript):
            return self(node.value) and self(node.slice)
        if isinstance(node, ast.Slice):
            return self(node.lower) and self(node.upper) and self(node.step)
        if isinstance(node, ast.JoinedStr):
            return all(self(v) for v in node.values)
        if isinstance(node, ast.FormattedValue):
            return self(node.value) and self(node.format_spec)
        if isinstance(node, ast.Lambda):
            return all(self(d) for d in node.args.defaults + node.args.kw_defaults)
        if isinstance(node, ast.Call):
            f = node.func
            pure = (isinstance(f, ast.Name) and f.id in NB_PURE_CALLS and f.id not in self.student) or (
                isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and self.aliases.get(f.value.id) == "math")
            return pure and all(self(a) for a in node.args) and all(self(k.value) for k in node.keywords)
        return False


def _nb_targets(target: ast.AST) -> list[str] | None:
    """The names an assignment target binds (None: not only plain names, e.g. ``x.attr`` or ``d[k]``)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        names: list[str] = []
        for e in target.elts:
            inner = _nb_targets(e.value if isinstance(e, ast.Starred) else e)
            if inner is None:
                return None
            names += inner
        return names
    return None


def _nb_import_names(node: ast.Import | ast.ImportFrom) -> list[tuple[str, str, ast.stmt]]:
    """(bound name, what is imported, a one-name import statement) for each name of an import."""
    out: list[tuple[str, str, ast.stmt]] = []
    for a in node.names:
        if isinstance(node, ast.Import):
            bound = a.asname or a.name.split(".")[0]
            out.append((bound, a.name, ast.Import(names=[a])))
        else:
            module = "." * node.level + (node.module or "")
            out.append((a.asname or a.name, f"{module}.{a.name}" if a.name != "*" else module,
                        ast.ImportFrom(module=node.module, names=[a], level=node.level)))
    return out


_NB_DROPPED = {ast.For: "a for loop", ast.AsyncFor: "a for loop", ast.While: "a while loop", ast.If: "an if block",
               ast.With: "a with block", ast.AsyncWith: "a with block", ast.Try: "a try block", ast.Delete: "a del statement",
               ast.Assert: "an assert", ast.Raise: "a raise", ast.Return: "a return", ast.Global: "a global statement"}


def _nb_describe(node: ast.stmt) -> str:
    """What a dropped statement is, in a few words."""
    if isinstance(node, ast.Expr):
        value = node.value
        if isinstance(value, ast.Await):
            value = value.value
        if isinstance(value, ast.Call):
            f = value.func
            name = f.id if isinstance(f, ast.Name) else (f.attr if isinstance(f, ast.Attribute) else "")
            return f"a call of {name}()" if name else "a call"
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return "a string"
        return "an expression"
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        return "an assignment that runs code"
    if sys.version_info >= (3, 10) and isinstance(node, ast.Match):
        return "a match block"
    for typ, text in _NB_DROPPED.items():
        if isinstance(node, typ):
            return text
    return type(node).__name__.lower()


def _nb_segment(lines: list[str], node: ast.stmt) -> tuple[str, int]:
    """The statement's text exactly (columns are UTF-8 byte offsets), and its first line."""
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    end = node.end_lineno or node.lineno
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Try)):
        return "\n".join(lines[start - 1:end]), start  # compound statements own their lines
    chunk = [line.encode() for line in lines[node.lineno - 1:end]]
    end_col = node.end_col_offset if node.end_col_offset is not None else len(chunk[-1])
    chunk[-1] = chunk[-1][:end_col]
    chunk[0] = chunk[0][node.col_offset:]
    return "\n".join(c.decode("utf-8", "replace") for c in chunk), node.lineno


class _NbBuilder:
    def __init__(self, given: set[str]) -> None:
        self.defined = set(given) | {"__name__", "__file__", "__doc__"}
        self.student: set[str] = set()      # names bound by the student's kept statements
        self.aliases: dict[str, str] = {}    # imported name -> module
        self.statements: list[NbStatement] = []
        self.pieces: list[_NbPiece] = []
        self.futures: list[str] = []
        self.unparsable: list[NbUnparsable] = []

    def dropped(self, cell: int, line: int, kind: str, names: tuple[str, ...] = (), why: str = "") -> None:
        self.statements.append(NbStatement(cell, line, kind, names, False, why))

    def keep(self, piece: _NbPiece) -> None:
        self.pieces.append(piece)
        self.statements.append(piece.stmt)
        self.defined |= piece.binds
        self.student |= piece.binds

    def cell(self, number: int, source: str) -> None:
        text, removed, magic, parsed = _nb_clean(source)
        if text is None:
            self.dropped(number, 0, f"a {magic.split()[0]} cell")
            return
        for line, what in removed:
            kind = "a shell command" if what.lstrip().startswith("!") or "= !" in what or "=!" in what else "an IPython magic"
            self.dropped(number, line, f"{kind} ({what[:60]})")
        try:
            tree = parsed or ast.parse(text)
            lines = text.split("\n")
            for node in tree.body:
                self.statement(number, lines, node)
        except SyntaxError as exc:
            names = tuple(dict.fromkeys(_NB_DEF.findall(text)))
            self.unparsable.append(NbUnparsable(number, exc.lineno or 0, exc.msg or "invalid syntax", names))
        except (ValueError, RecursionError, MemoryError) as exc:
            self.unparsable.append(NbUnparsable(number, 0, f"{type(exc).__name__}: {exc}"[:200],
                                                tuple(dict.fromkeys(_NB_DEF.findall(text)))))

    def statement(self, cell: int, lines: list[str], node: ast.stmt) -> None:
        simple = _NbSimple(self.defined, self.student, self.aliases)
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            self.futures.append(ast.unparse(node))
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for k, (bound, what, one) in enumerate(_nb_import_names(node)):  # (no zip(strict=...): Python 3.9 runs this too)
                alias = node.names[k]
                text = ast.unparse(one)
                bound_names: tuple[str, ...] = () if bound == "*" else (bound,)
                line = getattr(alias, "lineno", None) or node.lineno  # the alias's own line (3.10+)
                wrap = "tqdm" if what.split(".")[0] == "tqdm" and bound_names else "import"  # progress bars: silent
                self.keep(_NbPiece(NbStatement(cell, line, "import", bound_names, True), text, [line],
                                   binds=set(bound_names), wrap=wrap, imported=what))
                if bound != "*":
                    self.aliases[bound] = what
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            text, start = _nb_segment(lines, node)
            kind = "class" if isinstance(node, ast.ClassDef) else "def"
            self.keep(_NbPiece(NbStatement(cell, start, kind, (node.name,), True), text,
                               list(range(start, start + text.count("\n") + 1)), {node.name}, _nb_reads(node)))
            return
        names = self.constant_names(node, simple)
        if names is not None:
            text, start = _nb_segment(lines, node)
            value = getattr(node, "value", None)
            wrap = "" if value is not None and _nb_literal(value) and not isinstance(node, ast.AugAssign) else "constant"
            reads = _nb_reads(node) | (set(names) if isinstance(node, ast.AugAssign) else set())
            self.keep(_NbPiece(NbStatement(cell, start, "constant", tuple(names), True), text,
                               list(range(start, start + text.count("\n") + 1)), set(names), reads, wrap))
            return
        if isinstance(node, ast.Try):
            if self.keepable_try(node, simple):
                text, start = _nb_segment(lines, node)
                binds = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                for sub in ast.walk(node):
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                        binds.add(sub.name)
                    elif isinstance(sub, (ast.Import, ast.ImportFrom)):
                        binds |= {b for b, _, _ in _nb_import_names(sub) if b != "*"}
                self.keep(_NbPiece(NbStatement(cell, start, "try", tuple(sorted(binds)), True), text,
                                   list(range(start, start + text.count("\n") + 1)), binds, _nb_reads(node)))
                return
            inner = [s for s in node.body if isinstance(s, (ast.Import, ast.ImportFrom))]
            self.dropped(cell, node.lineno, "a try block" + (" (its imports are kept)" if inner else ""))
            for sub in inner:
                self.statement(cell, lines, sub)
            return
        if isinstance(node, ast.Pass) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            return  # nothing to run, nothing to report
        self.dropped(cell, node.lineno, _nb_describe(node), self.bound_names(node))

    def constant_names(self, node: ast.stmt, simple: _NbSimple) -> list[str] | None:
        if isinstance(node, ast.Assign):
            names: list[str] = []
            for t in node.targets:
                got = _nb_targets(t)
                if got is None:
                    return None
                names += got
            return names if simple(node.value) else None
        if isinstance(node, ast.AnnAssign):
            if isinstance(node.target, ast.Name) and node.value is not None and simple(node.value) and simple(node.annotation):
                return [node.target.id]
            return None
        if isinstance(node, ast.AugAssign):
            if isinstance(node.target, ast.Name) and node.target.id in self.student and simple(node.value):
                return [node.target.id]
        return None

    def keepable_try(self, node: ast.Try, simple: _NbSimple) -> bool:
        body = node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        if any(h.type is not None and not simple(h.type) for h in node.handlers):
            return False
        if any(isinstance(s, (ast.Import, ast.ImportFrom)) for h in node.handlers for s in ast.walk(h)):
            return False  # "except ImportError: !pip install x; import x" fails again: its body imports are kept instead
        for s in body:
            if isinstance(s, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Pass)):
                continue
            if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant):
                continue
            if isinstance(s, ast.Try) and self.keepable_try(s, simple):
                continue
            if self.constant_names(s, simple) is not None:
                continue
            return False
        return True

    @staticmethod
    def bound_names(node: ast.stmt) -> tuple[str, ...]:
        names = [n.id if isinstance(n, ast.Name) else n.name for n in ast.walk(node)
                 if (isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
                 or isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        return tuple(dict.fromkeys(names))

    def supersede(self) -> None:
        """Drop a definition that a later one of the same name replaces, unless read in between while defining."""
        nearest: dict[str, tuple[bool, _NbPiece]] = {}   # name -> (read?, the nearest later piece reading or binding it)
        for piece in reversed(self.pieces):
            if piece.stmt.kind in ("def", "class", "constant") and len(piece.binds) == 1:
                read, later = nearest.get(next(iter(piece.binds)), (True, piece))
                if not read:  # rebound before anything reads it while being defined
                    piece.superseded_by = later
            for name in piece.binds:
                nearest[name] = (name in piece.reads, piece)
            for name in piece.reads:
                nearest[name] = (True, piece)


_NB_HELPERS = '''\
class _NbUnavailable:
    """Stands for what the grader cannot provide: a failed import, or a constant that could not be computed."""

    def __init__(self, name, where, error):
        object.__setattr__(self, "_nb_why", f"{name} is not available in the grader (your notebook binds it at "
                           f"{where}; {type(error).__name__}: {error}); graded code must not use it")

    def _nb_fail(self, *args, **kwargs):
        raise ModuleNotFoundError(object.__getattribute__(self, "_nb_why"))

    def __getattr__(self, attr):
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)
        self._nb_fail()

    __call__ = __getitem__ = __iter__ = __enter__ = _nb_fail

    def __mro_entries__(self, bases):
        # a class built on something unavailable is still defined; making one of its objects fails clearly
        why = object.__getattribute__(self, "_nb_why")

        class _NbUnavailableBase:
            def __init__(self, *args, **kwargs):
                raise ModuleNotFoundError(why)

        return (_NbUnavailableBase,)

    def __repr__(self):
        return "<not available in the grader>"


class _NbProgress:
    """tqdm's progress bars in graded code: iterates, and shows nothing (tqdm may be absent or need widgets)."""

    def __init__(self, iterable=None, *args, **kwargs):
        self.iterable, self.n = iterable, 0

    def __iter__(self):
        return iter(self.iterable if self.iterable is not None else ())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return lambda *args, **kwargs: None


class _NbTqdm:
    tqdm = _NbProgress

    def __call__(self, *args, **kwargs):
        return _NbProgress(*args, **kwargs)

    def trange(self, *args, **kwargs):
        return _NbProgress(range(*args))

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self


def _nb_progress(imported):
    return _NbTqdm().trange if imported.rsplit(".", 1)[-1] == "trange" else _NbTqdm()


def _nb_unavailable(imported, where, error):
    return _NbUnavailable(imported, where, error)
'''


def _nb_render(kept: list[_NbPiece], futures: list[str], prelude: str, header: str
               ) -> tuple[str, list[tuple[int, int] | None], list[_NbPiece | None]]:
    out: list[str] = []
    where: list[tuple[int, int] | None] = []
    owner: list[_NbPiece | None] = []

    def emit(text: str, piece: _NbPiece | None = None, origin: list[int] | None = None) -> None:
        for k, line in enumerate(text.split("\n")):
            out.append(line)
            where.append((piece.stmt.cell, origin[min(k, len(origin) - 1)]) if piece and origin else None)
            owner.append(piece)

    emit(header or "# Built from the notebook's code cells: imports, definitions and simple constants (nothing else runs).")
    for future in dict.fromkeys(futures):
        emit(future)
    if any(p.wrap for p in kept):
        emit(_NB_HELPERS.rstrip("\n"))
    if prelude.strip():
        emit(prelude.rstrip("\n"))
    last_cell = 0
    for p in kept:
        if p.stmt.cell != last_cell:
            emit(f"\n# --- cell {p.stmt.cell} ---")
            last_cell = p.stmt.cell
        if not p.wrap:
            emit(p.text, p, p.lines)
            continue
        if p.wrap == "tqdm":  # the import as written stays for the checks of imports, but never runs
            emit(f"{next(iter(p.binds))} = _nb_progress({p.imported!r})  # tqdm shows nothing in the grader", p, p.lines)
            emit(f"if False:\n    {p.text}", p, p.lines)
            continue
        first = p.lines[:1]
        emit("try:", p, first)
        emit("\n".join("    " + line for line in p.text.split("\n")), p, p.lines)
        emit("except Exception as _nb_error:", p, first)
        loc = f"cell {p.stmt.cell}, line {p.lines[0]}"
        bind = [f"    {n} = _nb_unavailable({(p.imported or n)!r}, {loc!r}, _nb_error)" for n in sorted(p.binds)]
        emit("\n".join(bind or ["    pass"]), p, first)
    return "\n".join(out) + "\n", where, owner


def nb_build_module(cells: list[tuple[int, str, str]], prelude: str = "", given: tuple[str, ...] = (),
                    header: str = "") -> NbBuilt:
    """The module made of the kept statements of the code cells (``prelude`` runs first; ``given`` are names it binds)."""
    builder = _NbBuilder(set(given) | _nb_bound_by(prelude))
    for number, kind, source in cells:
        if kind == "code" and source.strip():
            builder.cell(number, source)
    builder.supersede()
    kept = [p for p in builder.pieces if p.superseded_by is None]
    futures = [f for f in builder.futures if all(a in _NB_FUTURES
                                                  for a in re.findall(r"\w+", f.split(" import ", 1)[1]))]
    failed: dict[int, str] = {}   # id of a piece that does not compile (a yield in a class body ...) -> why
    while True:
        source, where, owner = _nb_render(kept, futures, prelude, header)
        try:  # compiling runs nothing; a statement the compiler rejects is left out like an unparsable cell
            compile(source, "<notebook>", "exec", dont_inherit=True)
            break
        except SyntaxError as exc:
            bad = owner[exc.lineno - 1] if exc.lineno and 0 < exc.lineno <= len(owner) else None
            if bad is None:
                raise ValueError(f"the prelude or the notebook's __future__ imports do not compile: {exc}") from None
            failed[id(bad)] = exc.msg or "invalid syntax"
            loc = where[exc.lineno - 1] if exc.lineno else None
            builder.unparsable.append(NbUnparsable(bad.stmt.cell, loc[1] if loc else bad.stmt.line,
                                                   failed[id(bad)], tuple(sorted(bad.binds))))
            kept.remove(bad)
    statements = []
    by_statement = {id(p.stmt): p for p in builder.pieces}
    for s in sorted(builder.statements, key=lambda s: (s.cell, s.line)):
        piece = by_statement.get(id(s))
        if piece is not None and piece.superseded_by is not None:
            later = piece.superseded_by.stmt
            s = NbStatement(s.cell, s.line, s.kind, s.names, False, f"replaced by the {later.kind} at {later.where}")
        elif piece is not None and id(piece) in failed:
            s = NbStatement(s.cell, s.line, s.kind, s.names, False, f"it cannot be compiled ({failed[id(piece)]})")
        statements.append(s)
    defined = set(given) | _nb_bound_by(prelude) | {n for p in kept for n in p.binds}
    return NbBuilt(source, tuple(where), tuple(statements), tuple(builder.unparsable), tuple(sorted(defined)))


def _nb_bound_by(source: str) -> set[str]:
    """Top-level names a (trusted) prelude binds."""
    if not source.strip():
        return set()
    tree = ast.parse(source)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {b for b, _, _ in _nb_import_names(node) if b != "*"}
        else:
            names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def load_notebook_module(path: str, name: str, prelude: str = "") -> types.ModuleType:
    """Import the graded part of the notebook at ``path`` as the module ``name`` (the grader's rules).

    ``prelude`` is Python source run in the module first: the names an assignment supplies because the
    cells that define them are not run (``device = torch.device("cpu")``).
    """
    with open(path, encoding="utf-8-sig") as f:
        data = json.load(f)
    built = nb_build_module(nb_cells(data), prelude)
    filename = f"{path} (graded part)"
    linecache.cache[filename] = (len(built.source), None, built.source.splitlines(True), filename)
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module
    try:
        exec(compile(built.source, filename, "exec", dont_inherit=True), module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
