"""Static (AST) detection of forbidden APIs, on the trusted side; the code is parsed, never run."""

from __future__ import annotations

import ast
from dataclasses import dataclass

from dlgrade.config import Forbidden

MAX_SOURCE = 1_000_000


@dataclass(frozen=True)
class Violation:
    api: str
    file: str
    line: int
    parts: tuple[str, ...]

    def message(self) -> str:
        return f"{self.file} line {self.line} uses {self.api}, which this assignment forbids"


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


def _equivalents(api: str) -> set[str]:
    """torch.nn.X is also reachable as torch.nn.modules...X; accept the public spellings."""
    names = {api}
    if api.startswith("torch.nn.functional."):
        names.add("torch.functional." + api.rsplit(".", 1)[1])
    return names


def check_source(source: str, filename: str, forbidden: list[Forbidden]) -> list[Violation]:
    if len(source) > MAX_SOURCE:
        return []
    try:
        tree = ast.parse(source, filename)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []  # the worker reports the syntax error itself
    aliases = _aliases(tree)
    found: list[Violation] = []
    rules = [f for f in forbidden if filename in f.files]
    for node in ast.walk(tree):
        full: str | None = None
        if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(getattr(node, "ctx", None), ast.Load):
            dotted = _dotted(node)
            if dotted:
                head, _, rest = dotted.partition(".")
                full = aliases.get(head, head) + ("." + rest if rest else "")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                for rule in rules:
                    if f"{node.module}.{a.name}" in _equivalents(rule.api):
                        found.append(Violation(rule.api, filename, node.lineno, rule.parts))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            for rule in rules:  # getattr(torch, "layer_norm") and friends
                if node.value == rule.api.rsplit(".", 1)[1] and len(node.value) > 3:
                    found.append(Violation(rule.api, filename, node.lineno, rule.parts))
        if full is None:
            continue
        for rule in rules:
            if full in _equivalents(rule.api):
                found.append(Violation(rule.api, filename, getattr(node, "lineno", 0), rule.parts))
    unique = {(v.api, v.line): v for v in found}
    return sorted(unique.values(), key=lambda v: (v.file, v.line))


def check_files(files: dict[str, bytes], forbidden: list[Forbidden]) -> list[Violation]:
    out: list[Violation] = []
    for name, data in sorted(files.items()):
        if name.endswith(".py") and any(name in f.files for f in forbidden):
            out += check_source(data.decode("utf-8", "replace"), name, forbidden)
    return out
