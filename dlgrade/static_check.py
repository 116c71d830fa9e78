"""Static (AST) checks of the handout's rules, on the trusted side; the code is parsed, never run.

A rule applies where the handout puts it (``Rule.scope``): inside the named classes and functions of a
file, and inside whatever other functions and classes of the same file they call, followed transitively
(``LayerNorm.forward`` calling a helper ``_moments`` checks the helper too). Code outside the scope may use
the API freely: a course's given ``nn.LayerNorm`` in a classifier head is not the student's LayerNorm.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase

from dlgrade.config import Rule

MAX_SOURCE = 5_000_000
_Def = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


@dataclass(frozen=True)
class Violation:
    rule: Rule
    api: str            # what the code used (full dotted name, or the module imported)
    file: str
    line: int
    where: str = ""     # the enclosing class or function ("LayerNorm.forward"), if any
    location: str = ""  # where the student sees the line, if not "line N" of the file ("cell 4, line 2" of a notebook)

    @property
    def parts(self) -> tuple[str, ...]:
        return self.rule.parts

    def message(self) -> str:
        inside = f" (in {self.where})" if self.where else ""
        at = self.location or f"line {self.line}"
        if self.rule.kind == "imports":
            allowed = ", ".join(self.rule.apis)
            text = f"{self.file} {at}{inside} imports {self.api}; the handout allows only {allowed} there"
        else:
            scope = f" in {', '.join(self.rule.scope)}" if self.rule.scope else ""
            text = f"{self.file} {at}{inside} uses {self.api}, which the handout forbids{scope}"
        return text + (f" ({self.rule.why})" if self.rule.why else "")


def _dotted(node: ast.AST) -> str | None:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
        return ".".join(reversed(names))
    return None


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> full dotted name for every import (``import torch.nn as nn`` -> nn: torch.nn)."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


# public spellings of the same objects: torch.nn.X is also torch.nn.modules.<file>.X; F.x is also torch.functional.x
_ALIAS_PREFIXES = (("torch.nn.modules.", "torch.nn."), ("torch.functional.", "torch.nn.functional."),
                   ("torch._C._nn.", "torch.nn.functional."), ("torch.ops.aten.", "torch."))


def _spellings(full: str) -> set[str]:
    names = {full}
    for prefix, canonical in _ALIAS_PREFIXES:
        if full.startswith(prefix):
            rest = full[len(prefix):]
            if prefix == "torch.nn.modules.":  # torch.nn.modules.normalization.LayerNorm
                rest = rest.rsplit(".", 1)[-1]
            elif prefix == "torch.ops.aten.":  # torch.ops.aten.native_layer_norm.default
                rest = rest.split(".", 1)[0]
            names.add(canonical + rest)
    return names


def _matches(full: str, rule: Rule) -> str | None:
    """The banned pattern ``full`` hits (None: allowed)."""
    for name in _spellings(full):
        if any(fnmatchcase(name, a) for a in rule.allow):
            return None
        for pattern in rule.apis:
            if fnmatchcase(name, pattern):
                return pattern
    return None


def _top_level(tree: ast.Module) -> dict[str, _Def]:
    """Top-level classes and functions; the last definition of a name wins (as when the file runs)."""
    out: dict[str, _Def] = {}
    for node in tree.body:
        if isinstance(node, _Def):
            out[node.name] = node
    return out


def _scope_nodes(tree: ast.Module, scope: tuple[str, ...]) -> list[ast.AST]:
    """The nodes a rule looks at: the scope's definitions plus what they call in the same file, transitively."""
    if not scope:
        return [tree]
    defs = _top_level(tree)
    todo: list[_Def] = []
    for qualname in scope:
        head, _, method = qualname.partition(".")
        node = defs.get(head)
        if node is None:
            continue
        if method and isinstance(node, ast.ClassDef):
            todo += [n for n in node.body if isinstance(n, _Def) and n.name == method]
        elif not method:
            todo.append(node)
    seen: list[_Def] = []
    while todo:
        node = todo.pop()
        if any(node is s for s in seen):
            continue
        seen.append(node)
        owner = next((c for c in defs.values() if isinstance(c, ast.ClassDef) and node in c.body), None)
        for sub in ast.walk(node):
            if isinstance(sub, ast.Name) and sub.id in defs:
                todo.append(defs[sub.id])
            elif (owner is not None and isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                  and sub.value.id == "self"):  # self.helper() inside a method: the same class's helper
                todo += [n for n in owner.body if isinstance(n, _Def) and n.name == sub.attr]
    return list(seen)


def _enclosing(tree: ast.Module) -> dict[int, str]:
    """Line -> the innermost top-level class/function (and method) holding it."""
    out: dict[int, str] = {}
    for node in tree.body:
        if not isinstance(node, _Def):
            continue
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            out[line] = node.name
        if isinstance(node, ast.ClassDef):
            for m in node.body:
                if isinstance(m, _Def):
                    for line in range(m.lineno, (m.end_lineno or m.lineno) + 1):
                        out[line] = f"{node.name}.{m.name}"
    return out


def _walk(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    seen: set[int] = set()
    for root in nodes:
        for node in ast.walk(root):
            if id(node) not in seen:
                seen.add(id(node))
                yield node


def _forbidden_uses(tree: ast.Module, nodes: list[ast.AST], rule: Rule, aliases: dict[str, str]) -> Iterator[tuple[str, int]]:
    inner = {id(n.value) for n in _walk(nodes) if isinstance(n, ast.Attribute)}  # only whole chains count
    short = {a.rsplit(".", 1)[-1] for a in rule.apis if "*" not in a.rsplit(".", 1)[-1]}
    # "*.backward": an attribute (or keyword argument) of that name on anything, e.g. loss.backward()
    attrs = {a[2:] for a in rule.apis if a.startswith("*.") and "*" not in a[2:]}
    for node in _walk(nodes):
        if attrs and isinstance(node, ast.Attribute) and node.attr in attrs:
            yield f".{node.attr}", node.lineno
            continue
        if attrs and isinstance(node, ast.keyword) and node.arg in attrs:
            yield f"{node.arg}=", getattr(node, "lineno", 0) or 0
            continue
        if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(getattr(node, "ctx", None), ast.Load):
            if id(node) in inner:
                continue
            dotted = _dotted(node)
            if not dotted:
                continue
            head, _, rest = dotted.partition(".")
            if head not in aliases:
                continue  # a local name (the student's own LayerNorm class), not an import
            full = aliases[head] + ("." + rest if rest else "")
            if _matches(full, rule):
                yield full, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if _matches(full, rule):
                    yield full, node.lineno
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) > 3:
            if node.value in short:  # getattr(torch, "layer_norm") and friends
                yield node.value, node.lineno


def _import_uses(nodes: list[ast.AST], rule: Rule) -> Iterator[tuple[str, int]]:
    def allowed(module: str) -> bool:
        return any(module == a or module.startswith(a + ".") for a in rule.apis)

    for node in _walk(nodes):
        if isinstance(node, ast.Import):
            for a in node.names:
                if not allowed(a.name):
                    yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            if node.level or not allowed(module):
                yield module, node.lineno
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _dotted(node.func) in ("__import__", "importlib.import_module")):
            if not allowed(node.args[0].value):
                yield node.args[0].value, node.lineno


def check_source(source: str, filename: str, rules: Iterable[Rule]) -> list[Violation]:
    rules = [r for r in rules if r.applies_to(filename)]
    if not rules or len(source) > MAX_SOURCE:
        return []
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []  # the worker reports the syntax error itself
    aliases = _aliases(tree)
    enclosing = _enclosing(tree)
    found: dict[tuple[str, int, str], Violation] = {}
    for rule in rules:
        nodes = _scope_nodes(tree, rule.scope)
        uses = _import_uses(nodes, rule) if rule.kind == "imports" else _forbidden_uses(tree, nodes, rule, aliases)
        for api, line in uses:
            found.setdefault((rule.origin, line, api), Violation(rule, api, filename, line, enclosing.get(line, "")))
    return sorted(found.values(), key=lambda v: (v.file, v.line, v.api))


def check_files(files: dict[str, bytes], rules: Iterable[Rule]) -> list[Violation]:
    rules = list(rules)
    out: list[Violation] = []
    for name, data in sorted(files.items()):
        if name.endswith((".py", ".ipynb")) and any(r.applies_to(name) for r in rules):  # a notebook: its graded module
            out += check_source(data.decode("utf-8", "replace"), name, rules)
    return out
