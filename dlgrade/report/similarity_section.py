"""The class summary's similarity section: read from ``RESULTS/similarity/similarity.json`` when a run left one.

``dlgrade similarity`` (or ``dlgrade grade --similarity``) writes that file; this module only reads it
and never imports the similarity stage. Anything unexpected in the file hides the section instead of
breaking the summary. The section is for instructors: student reports never show it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE = Path("similarity") / "similarity.json"


@dataclass(frozen=True)
class FlaggedPair:
    student: str
    other: str
    corpus: bool
    student_share: float
    other_share: float
    href: str | None        # the side-by-side page, relative to the summary


@dataclass(frozen=True)
class SimilaritySection:
    index_href: str
    csv_href: str
    threshold: float
    students: int
    corpus_files: int
    compared: int
    flagged_count: int
    flagged: tuple[FlaggedPair, ...]


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def read_similarity(results_dir: Path, summary_dir: Path) -> SimilaritySection | None:
    """The section for the summary written in ``summary_dir``, or None when there is no (readable) similarity run."""
    path = Path(results_dir) / FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        folder = path.parent
        flagged = []
        for p in data["flagged"]:
            page = str(p.get("page") or "")
            href = _rel(folder / page, summary_dir) if page and ".." not in Path(page).parts and not Path(page).is_absolute() else None
            flagged.append(FlaggedPair(str(p["student"]), str(p["other"]), p.get("other_kind") == "corpus",
                                       _num(p["student_share"]), _num(p["other_share"]), href))
        return SimilaritySection(index_href=_rel(folder / "index.html", summary_dir), csv_href=_rel(folder / "pairs.csv", summary_dir),
                                 threshold=_num(data["threshold"]), students=int(_num(data["students"])),
                                 corpus_files=int(_num(data["corpus_files"])), compared=int(_num(data["compared"])),
                                 flagged_count=int(_num(data["flagged_count"])), flagged=tuple(flagged))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
