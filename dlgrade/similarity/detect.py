"""The detector: copydetect's winnowed fingerprints over normalised tokens (docs/similarity.md says why).

copydetect lexes the code with pygments and replaces every variable, attribute and argument name by
``V``, function names by ``F``, class names by ``O`` and strings by ``S``; whitespace and comments are
dropped. Fingerprints are the hashes of every ``noise`` characters of that normalised text (a window of
1: every k-gram is kept, so the result does not depend on the per-process hash seed's choice of
minima). Renaming, reformatting, comments and reordering whole functions therefore leave most
fingerprints in place.

Two things are done around the library, not inside it:

- boilerplate is removed here, from the fingerprint index, instead of by ``CodeFingerprint``'s
  ``boilerplate`` argument: copydetect 0.5.0 removes it with ``np.intersect1d(..., assume_unique=True)``
  on a list with repeats, which also drops repeated fingerprints that are not boilerplate;
- the table that maps positions of the normalised text back to the source is repaired where a class
  name was recorded with its own length instead of the running offset (upstream ``filter_code``), so
  that highlights and matched line numbers land on the right lines.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlgrade.similarity.sources import Document

DEFAULT_NOISE = 25   # characters of normalised code (copydetect's default noise threshold)


def _copydetect() -> Any:
    import copydetect  # imports matplotlib too (the library's own report draws with it)
    return copydetect


@dataclass
class Fingerprint:
    document: Document
    code: Any            # copydetect.CodeFingerprint, boilerplate removed
    own: np.ndarray      # per character of the normalised code: not part of any boilerplate fingerprint
    lines: np.ndarray    # line start offsets of the document's text
    positions: np.ndarray   # copydetect's hash_idx as two arrays: every kept fingerprint's position ...
    hashes: np.ndarray      # ... and its hash; plus the distinct hashes, sorted:
    distinct: np.ndarray


def _repair_offsets(fp: Any) -> None:
    """Make copydetect's (normalised index, removed so far) table non-decreasing again (see the module docstring)."""
    off = fp.offsets
    if len(off) < 2:
        return
    total = len(fp.raw_code) - len(fp.filtered_code)
    values = off[:, 1].copy()
    for i in range(1, len(values)):
        if values[i] < values[i - 1]:
            following = values[i + 1] if i + 1 < len(values) else total
            values[i] = min(max(following - values[i], values[i - 1]), following)
    off[:, 1] = values


def boilerplate_hashes(sources: list[tuple[str, str]], noise: int = DEFAULT_NOISE) -> set[int]:
    """Every fingerprint of the given code (skeleton and given files)."""
    cd = _copydetect()
    found: set[int] = set()
    for name, text in sources:
        fp = cd.CodeFingerprint(name, noise, 1, fp=io.StringIO(text), language="python")
        found.update(int(h) for h in fp.hashes)
    return found


def fingerprint(doc: Document, boilerplate: set[int], noise: int = DEFAULT_NOISE) -> Fingerprint:
    cd = _copydetect()
    fp = cd.CodeFingerprint(doc.name, noise, 1, fp=io.StringIO(doc.text), language="python")
    own = np.ones(len(fp.filtered_code), dtype=bool)
    if boilerplate:
        kept = {}
        for h, idx in fp.hash_idx.items():
            if int(h) in boilerplate:
                for i in idx:
                    own[i:i + noise] = False
            else:
                kept[h] = idx
        fp.hash_idx, fp.hashes = kept, set(kept)
    covered = np.zeros(len(fp.filtered_code), dtype=bool)
    for idx in fp.hash_idx.values():
        for i in idx:
            covered[i:i + noise] = True
    fp.token_coverage = int(np.count_nonzero(covered & own))
    _repair_offsets(fp)
    starts = np.concatenate([[0], np.flatnonzero(np.frombuffer(doc.text.encode("utf-32-le"), dtype=np.uint32) == 10) + 1])
    pairs = [(int(i), int(h)) for h, idx in fp.hash_idx.items() for i in idx]
    positions = np.array([p for p, _ in pairs], dtype=np.int64)
    hashes = np.array([h for _, h in pairs], dtype=np.int64)
    return Fingerprint(doc, fp, own, starts, positions, hashes, np.unique(hashes))


@dataclass(frozen=True)
class Match:
    """How much of ``a`` is found in ``b`` and the other way round, and where."""

    a_share: float          # matched part of a's own (non-boilerplate) code, 0..1
    b_share: float
    tokens: int             # matched normalised characters of a's own code
    a_slices: np.ndarray    # (2, n) start/end character offsets in a's text
    b_slices: np.ndarray


Matches = dict[tuple[str, str], tuple[Fingerprint, Fingerprint, Match]]   # (student, other) -> what the pages show


def quick_overlap(a: Fingerprint, b: Fingerprint) -> int:
    """Shared distinct fingerprints (a cheap test before the full comparison)."""
    return int(np.intersect1d(a.distinct, b.distinct, assume_unique=True).size)


def _own_slices(fp: Fingerprint, slices: np.ndarray) -> np.ndarray:
    """The parts of the slices that are the document's own code (characters of the given code cut away)."""
    inside = np.zeros(len(fp.own) + 2, dtype=np.int8)
    for s, e in slices.T:
        inside[s + 1:e + 1] = 1
    inside[1:-1] &= fp.own
    edges = np.diff(inside)
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)]).astype(np.int64)


def _to_source(fp: Fingerprint, slices: np.ndarray) -> np.ndarray:
    """Positions in the normalised code -> positions in the document's text (as copydetect's compare_files maps them)."""
    off = fp.code.offsets
    if len(off) == 0 or slices.size == 0:
        return slices
    return slices + off[:, 1][np.clip(np.searchsorted(off[:, 0], slices), 0, off.shape[0] - 1)]


def shared_positions(a: Fingerprint, b: Fingerprint) -> tuple[np.ndarray, np.ndarray]:
    """Where each document has a fingerprint the other has: what copydetect's ``find_fingerprint_overlap`` returns
    (in another order), found with sorted arrays instead of a Python loop over the shared hashes (20 times faster)."""
    def found(x: Fingerprint, y: Fingerprint) -> np.ndarray:
        if y.distinct.size == 0:
            return x.positions[:0]
        at = np.minimum(np.searchsorted(y.distinct, x.hashes), y.distinct.size - 1)
        return x.positions[y.distinct[at] == x.hashes]
    return found(a, b), found(b, a)


def compare(a: Fingerprint, b: Fingerprint) -> Match:
    """copydetect's comparison (shared fingerprints -> copied slices), counting only each side's own characters."""
    from copydetect.utils import get_copied_slices

    idx_a, idx_b = shared_positions(a, b)
    sa = np.asarray(get_copied_slices(idx_a, a.code.k), dtype=np.int64).reshape(2, -1)
    sb = np.asarray(get_copied_slices(idx_b, b.code.k), dtype=np.int64).reshape(2, -1)
    if sa.size == 0:
        empty = np.zeros((2, 0), dtype=np.int64)
        return Match(0.0, 0.0, 0, empty, empty)
    sa, sb = _own_slices(a, sa), _own_slices(b, sb)
    own_a, own_b = int((sa[1] - sa[0]).sum()), int((sb[1] - sb[0]).sum())
    share_a = own_a / a.code.token_coverage if a.code.token_coverage else 0.0
    share_b = own_b / b.code.token_coverage if b.code.token_coverage else 0.0
    return Match(float(share_a), float(share_b), own_a, _to_source(a, sa), _to_source(b, sb))


def matched_lines(fp: Fingerprint, slices: np.ndarray) -> list[tuple[str, int, int]]:
    """(file, first line, last line) ranges of the document that the slices cover, merged, in order."""
    if slices.size == 0:
        return []
    starts = np.searchsorted(fp.lines, slices[0], side="right")          # 1-based line of each start
    ends = np.searchsorted(fp.lines, np.maximum(slices[1] - 1, slices[0]), side="right")
    ranges: list[list[int]] = []
    for s, e in sorted(zip(starts.tolist(), ends.tolist(), strict=True)):
        if ranges and s <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], e)
        else:
            ranges.append([s, e])
    out: list[tuple[str, int, int]] = []
    for s, e in ranges:
        fname, first = fp.document.locate(s)
        ename, last = fp.document.locate(e)
        if ename != fname:  # a range that runs over a file boundary: split it
            out.append((fname, first, first + (_file_end(fp.document, fname) - s)))
            out.append((ename, 1, last))
        else:
            out.append((fname, first, last))
    return out


def _file_end(doc: Document, fname: str) -> int:
    starts = [line for _, line in doc.files]
    i = [name for name, _ in doc.files].index(fname)
    return starts[i + 1] - 1 if i + 1 < len(starts) else doc.text.count("\n")


def format_lines(ranges: list[tuple[str, int, int]]) -> str:
    """``a.py:3-9,14-20; b.py:2`` (the files in document order)."""
    per_file: dict[str, list[str]] = {}
    for fname, s, e in ranges:
        per_file.setdefault(fname, []).append(str(s) if s == e else f"{s}-{e}")
    return "; ".join(f"{f}:{','.join(r)}" for f, r in per_file.items())


def count_lines(ranges: list[tuple[str, int, int]]) -> int:
    return sum(e - s + 1 for _, s, e in ranges)


def highlight(fp: Fingerprint, slices: np.ndarray, css_class: str, context: int = 8) -> str:
    """HTML-escaped code with the matched parts in ``<span class=...>``, by copydetect's own ``highlight_overlap``.

    Only ``context`` lines around each matched part are kept (copydetect's truncated view); the rest is ``...``.
    """
    from copydetect.utils import highlight_overlap
    from markupsafe import escape

    if slices.size == 0:
        return str(escape(fp.document.text))
    html, _ = highlight_overlap(fp.document.text, slices, f"<span class='{css_class}'>", "</span>", truncate=context,
                                escape_html=True)
    return str(html)
