"""Solution-region markers: the reference with and without the solutions."""

from __future__ import annotations

import re

_BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION(?:\s+stub:\s*(?P<stub>.+))?\s*$")
_END = re.compile(r"^\s*# END SOLUTION\s*$")
_DEF = re.compile(r"^\s*def\s+(\w+)")


class MarkerError(ValueError):
    pass


def strip_solutions(text: str, filename: str = "<file>") -> str:
    """The skeleton of a reference file."""
    out: list[str] = []
    in_region = False
    current_def = "this function"
    for lineno, line in enumerate(text.splitlines(keepends=True), 1):
        begin, end = _BEGIN.match(line), _END.match(line)
        if begin:
            if in_region:
                raise MarkerError(f"{filename}:{lineno}: BEGIN SOLUTION inside another region")
            in_region = True
            indent = begin.group("indent")
            stub = begin.group("stub") or f'raise NotImplementedError("{current_def}: your code here")'
            out.append(f"{indent}# TODO: your code here\n{indent}{stub}\n")
            continue
        if end:
            if not in_region:
                raise MarkerError(f"{filename}:{lineno}: END SOLUTION without BEGIN")
            in_region = False
            continue
        if not in_region:
            m = _DEF.match(line)
            if m:
                current_def = m.group(1)
            out.append(line)
    if in_region:
        raise MarkerError(f"{filename}: a solution region is not closed")
    return "".join(out)


def keep_solutions(text: str) -> str:
    """The reference with the markers removed (what a perfect student would submit)."""
    return "".join(line for line in text.splitlines(keepends=True) if not (_BEGIN.match(line) or _END.match(line)))
