"""Inline SVG plots, built as element trees (every text node and attribute is escaped by the serializer).

Each function takes plain numbers from a results file and returns one ``<svg>`` element as a
string, or ``None`` when the data cannot make a meaningful picture. Output is deterministic:
coordinates are rounded to 0.1 px and nothing depends on time or randomness.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

MAX_HEATMAP = 32
MAX_POINTS = 400          # a curve is thinned to at most this many vertices
# a small perceptual ramp (dark blue -> teal -> yellow), interpolated linearly
_RAMP = ((0.0, (68, 1, 84)), (0.25, (59, 82, 139)), (0.5, (33, 145, 140)), (0.75, (94, 201, 98)), (1.0, (253, 231, 37)))


def _f(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _svg(width: int, height: int, label: str) -> ET.Element:
    return ET.Element("svg", {"xmlns": "http://www.w3.org/2000/svg", "viewBox": f"0 0 {width} {height}", "width": str(width),
                              "height": str(height), "role": "img", "aria-label": label, "class": "plot"})


def _text(parent: ET.Element, x: float, y: float, text: str, **attrs: str) -> None:
    el = ET.SubElement(parent, "text", {"x": _f(x), "y": _f(y), "font-size": "11", **attrs})
    el.text = text


def _finite(values: Any) -> list[float]:
    if not isinstance(values, list):
        return []
    return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def _num(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def training_curve(extra: dict[str, Any]) -> str | None:
    """Training loss per logged step; for a perplexity threshold also ln(threshold) as a dashed line.

    Reads ``train_losses``, ``log_every`` and, when present, ``metric``/``value``/``threshold``/``better``.
    The final metric is drawn as a second, small gauge under the curve.
    """
    losses = _finite(extra.get("train_losses"))
    if len(losses) < 2:
        return None
    every = extra.get("log_every", 1)
    every = every if isinstance(every, int) and not isinstance(every, bool) and every > 0 else 1
    if len(losses) > MAX_POINTS:  # keep the first and last point, thin evenly in between
        stride = math.ceil(len(losses) / MAX_POINTS)
        idx = list(range(0, len(losses), stride))
        idx = idx if idx[-1] == len(losses) - 1 else [*idx, len(losses) - 1]
    else:
        idx = list(range(len(losses)))
    metric, value, threshold = extra.get("metric"), _finite([extra.get("value")]), _finite([extra.get("threshold")])
    loss_line = None
    if isinstance(metric, str) and "perplexity" in metric and threshold and threshold[0] > 0:
        loss_line = math.log(threshold[0])
    lo = min(losses + ([loss_line] if loss_line is not None else []))
    hi = max(losses + ([loss_line] if loss_line is not None else []))
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    W, H, L, R, T, B = 560, 230, 52, 16, 22, 40
    gauge = bool(value and threshold and isinstance(metric, str))
    svg = _svg(W, H + (44 if gauge else 0), "training loss curve")
    x_of = lambda i: L + (W - L - R) * i / (len(losses) - 1)  # noqa: E731
    y_of = lambda v: T + (H - T - B) * (hi - v) / (hi - lo)  # noqa: E731
    ET.SubElement(svg, "rect", {"x": str(L), "y": str(T), "width": str(W - L - R), "height": str(H - T - B), "class": "frame",
                                "fill": "none", "stroke": "#bbb"})
    for v in _ticks(lo, hi):
        ET.SubElement(svg, "line", {"x1": str(L - 4), "x2": str(L), "y1": _f(y_of(v)), "y2": _f(y_of(v)), "stroke": "#888"})
        _text(svg, L - 6, y_of(v) + 4, _num(v), **{"text-anchor": "end"})
    steps = (len(losses) - 1) * every
    for k in range(5):
        i = (len(losses) - 1) * k / 4
        _text(svg, x_of(i), H - B + 15, str(round(i * every)), **{"text-anchor": "middle"})
    _text(svg, L + (W - L - R) / 2, H - 8, f"training step (0 to {steps})", **{"text-anchor": "middle"})
    _text(svg, 12, T + (H - T - B) / 2, "training loss", transform=f"rotate(-90 12 {_f(T + (H - T - B) / 2)})",
          **{"text-anchor": "middle"})
    points = " ".join(f"{_f(x_of(i))},{_f(y_of(losses[i]))}" for i in idx)
    ET.SubElement(svg, "polyline", {"points": points, "fill": "none", "stroke": "#1f5fbf", "stroke-width": "1.6", "class": "curve"})
    if loss_line is not None:
        y = y_of(loss_line)
        ET.SubElement(svg, "line", {"x1": str(L), "x2": str(W - R), "y1": _f(y), "y2": _f(y), "stroke": "#c0392b",
                                    "stroke-dasharray": "6 4", "class": "threshold"})
        _text(svg, W - R - 4, y - 5, f"ln(threshold {threshold[0]:.3g}) = {loss_line:.3g}", fill="#c0392b",
              **{"text-anchor": "end"})
    if gauge:
        _gauge(svg, str(metric), value[0], threshold[0], str(extra.get("better", "higher")), H + 4, W, L, R)
    return ET.tostring(svg, encoding="unicode")


def _gauge(svg: ET.Element, metric: str, value: float, threshold: float, better: str, top: float, W: int, L: int, R: int) -> None:
    """A bar from 0 to the larger of value and threshold, with the threshold marked and the passing side shaded."""
    lower = better == "lower"
    passed = value <= threshold if lower else value >= threshold
    span = max(abs(value), abs(threshold)) * 1.15 or 1.0
    width = W - L - R
    x_of = lambda v: L + width * min(max(v / span, 0.0), 1.0)  # noqa: E731
    tx = x_of(threshold)
    ok = (L, tx - L) if lower else (tx, L + width - tx)
    ET.SubElement(svg, "rect", {"x": _f(ok[0]), "y": _f(top + 14), "width": _f(ok[1]), "height": "10", "fill": "#e3f4e1",
                                "class": "pass-region"})
    ET.SubElement(svg, "rect", {"x": str(L), "y": _f(top + 14), "width": _f(x_of(value) - L), "height": "10",
                                "fill": "#2e8540" if passed else "#c0392b", "class": "metric-bar"})
    ET.SubElement(svg, "line", {"x1": _f(tx), "x2": _f(tx), "y1": _f(top + 10), "y2": _f(top + 28), "stroke": "#222",
                                "stroke-width": "2", "class": "threshold"})
    verdict = "meets" if passed else "misses"
    _text(svg, L, top + 8, f"{metric}: {value:.4g} {verdict} the threshold {threshold:.4g} ({better} is better)")


def _colour(t: float) -> str:
    t = min(max(t, 0.0), 1.0)
    for (a, ca), (b, cb) in zip(_RAMP, _RAMP[1:], strict=False):
        if t <= b:
            w = (t - a) / (b - a)
            return "#" + "".join(f"{round(x + (y - x) * w):02x}" for x, y in zip(ca, cb, strict=True))
    return "#fde725"


def heatmap(spec: Any) -> str | None:
    """One matrix (at most 32 x 32) as coloured cells with a value tooltip each, axis labels and a colour scale."""
    if not isinstance(spec, dict) or not isinstance(spec.get("matrix"), list):
        return None
    rows = [r for r in spec["matrix"][:MAX_HEATMAP] if isinstance(r, list)]
    grid = [[float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else math.nan
             for v in r[:MAX_HEATMAP]] for r in rows]
    n_cols = max((len(r) for r in grid), default=0)
    values = [v for r in grid for v in r if not math.isnan(v)]
    if not grid or n_cols == 0 or not values:
        return None
    lo, hi = min(values), max(values)
    span = hi - lo or 1.0
    cell = max(8, min(22, 320 // max(len(grid), n_cols)))
    L, T = 46, 26
    W, H = L + cell * n_cols + 70, T + cell * len(grid) + 34
    title = str(spec.get("title", ""))[:200]
    svg = _svg(W, H, title or "heatmap")
    _text(svg, L, 15, title, **{"font-weight": "bold"})
    for i, row in enumerate(grid):
        for j, v in enumerate(row):
            rect = ET.SubElement(svg, "rect", {"x": str(L + j * cell), "y": str(T + i * cell), "width": str(cell),
                                               "height": str(cell), "fill": "#ddd" if math.isnan(v) else _colour((v - lo) / span)})
            tip = ET.SubElement(rect, "title")
            tip.text = f"[{i}, {j}] = {'not a number' if math.isnan(v) else f'{v:.4g}'}"
    _text(svg, L + cell * n_cols / 2, H - 8, str(spec.get("xlabel", ""))[:80], **{"text-anchor": "middle"})
    ylabel, cy = str(spec.get("ylabel", ""))[:80], T + cell * len(grid) / 2
    _text(svg, 14, cy, ylabel, transform=f"rotate(-90 14 {_f(cy)})", **{"text-anchor": "middle"})
    sx, sh = L + cell * n_cols + 14, cell * len(grid)
    for k in range(20):  # colour scale, high at the top
        ET.SubElement(svg, "rect", {"x": str(sx), "y": _f(T + sh * k / 20), "width": "12", "height": _f(sh / 20 + 0.5),
                                    "fill": _colour(1 - k / 19)})
    _text(svg, sx + 16, T + 9, _num(hi))
    _text(svg, sx + 16, T + sh, _num(lo))
    return ET.tostring(svg, encoding="unicode")


def histogram(percentages: Sequence[float], bins: int = 10) -> str | None:
    """Counts of total scores (in percent of the maximum) in equal bins; 100 % falls in the last bin."""
    if not percentages:
        return None
    counts = [0] * bins
    for p in percentages:
        counts[min(int(max(p, 0.0) * bins / 100), bins - 1)] += 1
    W, H, L, B, T = 560, 210, 36, 36, 14
    bw = (W - L - 10) / bins
    top = max(counts)
    svg = _svg(W, H, "histogram of total scores")
    for k, c in enumerate(counts):
        h = (H - T - B) * c / top
        bar = ET.SubElement(svg, "rect", {"x": _f(L + k * bw + 2), "y": _f(H - B - h), "width": _f(bw - 4), "height": _f(h),
                                          "fill": "#1f5fbf", "class": "hist-bar"})
        tip = ET.SubElement(bar, "title")
        tip.text = f"{c} student(s) with {k * 100 // bins}-{(k + 1) * 100 // bins} %"
        if c:
            _text(svg, L + (k + 0.5) * bw, H - B - h - 3, str(c), **{"text-anchor": "middle"})
        _text(svg, L + k * bw, H - B + 14, f"{k * 100 // bins}", **{"text-anchor": "middle"})
    _text(svg, W - 10, H - B + 14, "100", **{"text-anchor": "end"})
    _text(svg, L + (W - L) / 2, H - 6, "total score (% of the maximum)", **{"text-anchor": "middle"})
    ET.SubElement(svg, "line", {"x1": str(L), "x2": str(W - 10), "y1": str(H - B), "y2": str(H - B), "stroke": "#888"})
    return ET.tostring(svg, encoding="unicode")
