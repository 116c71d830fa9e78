"""Spread fingerprinting and comparisons over CPU cores, in processes forked from this one.

copydetect hashes k-grams with Python's ``hash()``, whose seed is drawn when an interpreter starts: a
fingerprint made in one interpreter means nothing in another. Forked workers keep the parent's seed
(and its fingerprints, handed over in ``_SHARED`` at fork time, without pickling), so the work is
split across forked processes only; where ``fork`` is not available, or ``jobs`` is 1, it runs here.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_SHARED: dict[str, Any] = {}


def shared(key: str) -> Any:
    """What the parent put in ``_SHARED`` before forking (in the parent itself too)."""
    return _SHARED[key]


def _chunk(fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
    return [fn(x) for x in items]


def fork_map(fn: Callable[[T], R], items: Sequence[T], jobs: int, share: dict[str, Any] | None = None) -> list[R]:
    """``[fn(x) for x in items]``, in up to ``jobs`` forked processes; ``share`` is visible to ``fn`` through :func:`shared`."""
    _SHARED.clear()
    _SHARED.update(share or {})
    try:
        if jobs <= 1 or len(items) < 2 * jobs or "fork" not in multiprocessing.get_all_start_methods():
            return _chunk(fn, items)
        size = max(1, len(items) // (jobs * 8))
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            return [r for part in pool.map(_chunk, [fn] * len(chunks), chunks) for r in part]
    finally:
        _SHARED.clear()
