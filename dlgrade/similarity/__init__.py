"""Similarity: which submissions match each other or a known public solution (for instructors only).

Entry point: :func:`check_similarity`. It reads the submissions through :mod:`dlgrade.intake` (the
submitted files only, notebooks as grading extracts them), fingerprints them with copydetect (see
:mod:`dlgrade.similarity.detect`), removes the release's skeleton and given code as boilerplate, and
compares every pair of students and every student with every corpus file. It never runs student code
and never writes into a student's results. Output, in ``out`` (``RESULTS/similarity/`` under
``dlgrade grade --similarity``)::

    pairs.csv          every pair compared, ranked (both shares, matched characters, matched lines, flagged)
    index.html         the top pairs, linking their side-by-side pages
    pairs/NNN.html     side-by-side code of one pair, the matched parts highlighted
    similarity.json    what the instructor's class summary shows (counts, the flagged pairs, links)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from dlgrade.config import AssignmentConfig
from dlgrade.similarity import detect
from dlgrade.similarity.pool import fork_map, shared
from dlgrade.similarity.sources import Document, boilerplate_sources, corpus_documents, student_documents

__all__ = ["Pair", "SimilarityOptions", "SimilarityRun", "check_similarity", "compare_documents"]


@dataclass(frozen=True)
class SimilarityOptions:
    corpus: tuple[Path, ...] = ()
    threshold: float = 0.7      # a pair is flagged when either share reaches it ...
    min_match: int = 100        # ... and at least this many normalised characters match (a small function's worth)
    top: int = 20               # side-by-side pages for this many of the highest-ranked pairs
    noise: int = detect.DEFAULT_NOISE
    jobs: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))   # processes (forked: see pool.py)


@dataclass(frozen=True)
class Pair:
    student: str
    other: str
    other_kind: str             # "student" or "corpus"
    student_share: float        # how much of the student's own code is found in the other
    other_share: float          # how much of the other's own code is found in the student's
    matched: int                # matched normalised characters (in the student's code)
    student_lines: str          # "vit_solution.py:12-40,52-60; lstm_solution.py:5-9"
    other_lines: str
    matched_line_count: int
    flagged: bool

    @property
    def score(self) -> float:
        return max(self.student_share, self.other_share)


@dataclass(frozen=True)
class SimilarityRun:
    folder: Path
    csv: Path
    index: Path
    pairs: tuple[Pair, ...]                       # ranked, highest score first
    pages: dict[tuple[str, str], str] = field(default_factory=dict)   # (student, other) -> page path relative to folder
    students: int = 0
    corpus_files: int = 0
    problems: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def flagged(self) -> tuple[Pair, ...]:
        return tuple(p for p in self.pairs if p.flagged)


def compare_documents(students: list[Document], corpus: list[Document], boilerplate: list[tuple[str, str]],
                      options: SimilarityOptions) -> tuple[list[Pair], detect.Matches]:
    """Every student pair and every (student, corpus file) pair, ranked; and the matches behind the top pairs."""
    bp = detect.boilerplate_hashes(boilerplate, options.noise)
    fps = fork_map(_fingerprint, students + corpus, options.jobs, {"boilerplate": bp, "noise": options.noise})
    n = len(students)
    todo = [(i, j) for i in range(n) for j in range(i + 1, n)] + [(i, j) for i in range(n) for j in range(n, len(fps))]
    pairs = fork_map(_compare, todo, options.jobs, {"fps": fps, "options": options})
    order = sorted(range(len(todo)), key=lambda k: (-pairs[k].score, -pairs[k].matched, pairs[k].student, pairs[k].other))
    top: detect.Matches = {}
    for k in order[:options.top]:
        if pairs[k].matched > 0:
            a, b = fps[todo[k][0]], fps[todo[k][1]]
            top[(pairs[k].student, pairs[k].other)] = (a, b, detect.compare(a, b))
    return [pairs[k] for k in order], top


def _fingerprint(doc: Document) -> detect.Fingerprint:
    return detect.fingerprint(doc, shared("boilerplate"), shared("noise"))


def _compare(ij: tuple[int, int]) -> Pair:
    fps, options = shared("fps"), shared("options")
    a, b = fps[ij[0]], fps[ij[1]]
    return _pair(a, b, detect.compare(a, b) if detect.quick_overlap(a, b) else None, options)


def _pair(a: detect.Fingerprint, b: detect.Fingerprint, m: detect.Match | None, options: SimilarityOptions) -> Pair:
    if m is None or m.tokens == 0:
        return Pair(a.document.name, b.document.name, b.document.kind, 0.0, 0.0, 0, "", "", 0, False)
    la, lb = detect.matched_lines(a, m.a_slices), detect.matched_lines(b, m.b_slices)
    flagged = max(m.a_share, m.b_share) >= options.threshold and m.tokens >= options.min_match
    return Pair(a.document.name, b.document.name, b.document.kind, round(m.a_share, 4), round(m.b_share, 4), m.tokens,
                detect.format_lines(la), detect.format_lines(lb), detect.count_lines(la), flagged)


def check_similarity(cfg: AssignmentConfig, submissions: Path, out: Path, options: SimilarityOptions | None = None) -> SimilarityRun:
    """Compare the submissions under ``submissions`` with each other and with the corpus; write ``out`` (module docstring)."""
    from dlgrade.similarity.output import write_outputs

    started = time.perf_counter()
    options = options or SimilarityOptions()
    if not 0.0 <= options.threshold <= 1.0:
        raise ValueError(f"--threshold must be between 0 and 1 (got {options.threshold:g})")
    students, problems = student_documents(cfg, Path(submissions))
    corpus, corpus_problems = corpus_documents(list(options.corpus))
    pairs, top = compare_documents(students, corpus, boilerplate_sources(cfg), options)
    run = SimilarityRun(folder=Path(out), csv=Path(out) / "pairs.csv", index=Path(out) / "index.html", pairs=tuple(pairs),
                        students=len(students), corpus_files=len(corpus), problems=tuple(problems + corpus_problems))
    return write_outputs(cfg, run, top, options, started)
