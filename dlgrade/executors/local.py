"""The ``local`` executor: the whole class on this machine, with ``-j N`` sandboxed workers at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dlgrade.config import AssignmentConfig
from dlgrade.grade import BatchResult, GradeOptions, grade_batch


def grade_local(cfg: AssignmentConfig, path: Path, out: Path, opts: GradeOptions,
                progress: Callable[[str, float, float], None] | None = None) -> BatchResult:
    """Grade every submission under ``path`` into ``out`` (students with complete results are skipped unless
    ``opts.force``), then write ``out/grades.csv``."""
    return grade_batch(cfg, path, out, opts, progress)
