"""Reference notebooks written as percent-format Python (``# %%`` cells), and the notebooks built from them.

``reference_solutions/<id>/<stem>.py`` holds the notebook ``<stem>.ipynb`` as plain text that diffs and
reviews well and that the trusted side can import as the reference module:

    # %% [markdown]
    # ## Problem 2: attention
    # %%
    class AttentionHead(nn.Module):
        def forward(self, x, attn_mask):
            # BEGIN SOLUTION
            ...
            # END SOLUTION

A line ``# %%`` (optionally followed by a title, and ``tags=["a", "b"]``) starts a code cell; ``# %% [markdown]``
and ``# %% [raw]`` start text cells, whose lines lose their leading ``# ``. Lines before the first marker that
are only comments are a file header and not part of the notebook. Solution regions work as in ``.py`` files, in
code cells and in markdown cells (a written reference answer; its stub text defaults to ``_Your answer here._``).
Built notebooks are byte-reproducible: fixed cell ids, sorted keys, no outputs, no timestamps.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from dlgrade.markers import MarkerError, keep_solutions, strip_solutions

_CELL = re.compile(r"^# %%(?!%)(?P<rest>.*)$")
_KIND = re.compile(r"^\s*\[(?P<kind>markdown|md|raw)\]")
_TAGS = re.compile(r"tags\s*=\s*(?P<tags>\[[^\]]*\])")
_BEGIN = re.compile(r"^#?\s*# BEGIN SOLUTION(?:\s+stub:\s*(?P<stub>.+))?\s*$")
_END = re.compile(r"^#?\s*# END SOLUTION\s*$")
ANSWER_STUB = "_Your answer here._"
METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"}}


@dataclass(frozen=True)
class PercentCell:
    kind: str                 # "code", "markdown" or "raw"
    source: str               # for text cells, without the leading "# "
    line: int                 # where the cell's marker is in the percent file (1-based; 0: no marker)
    tags: tuple[str, ...] = ()


def _uncomment(line: str) -> str:
    if line.startswith("# "):
        return line[2:]
    return line[1:] if line.startswith("#") else line


def parse(text: str, filename: str = "<notebook source>") -> list[PercentCell]:
    """The cells of a percent-format source, in order."""
    cells: list[PercentCell] = []
    kind, line0, tags, body = "code", 0, (), []  # type: tuple[str, int, tuple[str, ...], list[str]]

    def flush() -> None:
        lines = [_uncomment(x) if kind != "code" else x for x in body]
        while lines and not lines[0].strip():
            lines.pop(0)
        while lines and not lines[-1].strip():
            lines.pop()
        if line0 == 0 and all(not x.strip() or x.lstrip().startswith("#") for x in body):
            return  # a comment header before the first cell
        if lines or line0:
            cells.append(PercentCell(kind, "\n".join(lines), line0, tags))

    for number, line in enumerate(text.splitlines(), 1):
        m = _CELL.match(line)
        if not m:
            body.append(line)
            continue
        flush()
        rest = m.group("rest")
        k = _KIND.match(rest)
        kind = {"md": "markdown"}.get(k.group("kind"), k.group("kind")) if k else "code"
        t = _TAGS.search(rest)
        try:
            tags = tuple(str(x) for x in json.loads(t.group("tags"))) if t else ()
        except ValueError:
            raise MarkerError(f"{filename}:{number}: tags must be a JSON list of strings") from None
        line0, body = number, []
    flush()
    return cells


def _text_solutions(source: str, keep: bool, where: str) -> str:
    """Solution regions of a markdown cell: kept (reference) or replaced by their stub text (skeleton)."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        begin, end = _BEGIN.match("# " + line), _END.match("# " + line)
        if begin:
            if inside:
                raise MarkerError(f"{where}: BEGIN SOLUTION inside another region")
            inside = True
            if not keep:
                out.append((begin.group("stub") or ANSWER_STUB).strip())
        elif end:
            if not inside:
                raise MarkerError(f"{where}: END SOLUTION without BEGIN")
            inside = False
        elif keep or not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: a solution region is not closed")
    return "\n".join(out)


def _lines(source: str) -> list[str]:
    lines = source.split("\n")
    return [x + "\n" for x in lines[:-1]] + [lines[-1]] if source else []


def build(cells: list[PercentCell]) -> bytes:
    """A notebook (format 4.5) of the cells, byte-reproducible."""
    out = []
    for i, c in enumerate(cells, 1):
        cell: dict[str, object] = {"cell_type": c.kind, "id": f"cell-{i:03d}", "metadata": {"tags": list(c.tags)} if c.tags else {},
                                   "source": _lines(c.source)}
        if c.kind == "code":
            cell.update(execution_count=None, outputs=[])
        out.append(cell)
    nb = {"cells": out, "metadata": METADATA, "nbformat": 4, "nbformat_minor": 5}
    return (json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode()


def _convert(text: str, filename: str, keep: bool) -> bytes:
    cells = []
    for c in parse(text, filename):
        where = f"{filename} (cell at line {c.line})"
        if c.kind == "code":
            source = keep_solutions(c.source) if keep else strip_solutions(c.source + "\n", where).rstrip("\n")
        else:
            source = _text_solutions(c.source, keep, where)
        cells.append(PercentCell(c.kind, source, c.line, c.tags))
    return build(cells)


def skeleton_notebook(text: str, filename: str = "<notebook source>") -> bytes:
    """The student's notebook: solution regions replaced by TODO stubs (code) or the answer stub (markdown)."""
    return _convert(text, filename, keep=False)


def reference_notebook(text: str, filename: str = "<notebook source>") -> bytes:
    """The complete notebook (markers removed): what a perfect student submits."""
    return _convert(text, filename, keep=True)
