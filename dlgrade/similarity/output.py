"""The similarity run's files: the ranked CSV, side-by-side pages, an index page and the summary's JSON.

Pages are jinja2 templates (``reports/similarity*.html.j2``) rendered with autoescaping on; the only
markup that passes unescaped is the highlighted code, which copydetect escapes itself before adding
its ``<span>`` marks. Everything is written for the course staff: nothing goes into a student's
results folder or report.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
from markupsafe import Markup

from dlgrade.config import AssignmentConfig, find_root
from dlgrade.similarity import detect

if TYPE_CHECKING:
    from dlgrade.similarity import Pair, SimilarityOptions, SimilarityRun

CSV_COLUMNS = ("rank", "student", "other", "other_kind", "student_share", "other_share", "matched_chars", "matched_lines",
               "student_lines", "other_lines", "flagged", "page")
SUMMARY_PAIRS = 50   # the most flagged pairs similarity.json lists for the class summary


def templates_dir() -> Path:
    env = os.environ.get("DLGRADE_ROOT")
    for c in ([Path(env) / "reports"] if env else []) + [Path(__file__).resolve().parents[2] / "reports"]:
        if (c / "similarity.html.j2").is_file():
            return c
    return find_root() / "reports"


def _env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["pct"] = lambda x: f"{100 * float(x):.0f} %"
    return env


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_csv(pairs: tuple[Pair, ...], pages: dict[tuple[str, str], str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for rank, p in enumerate(pairs, 1):
            w.writerow([rank, p.student, p.other, p.other_kind, f"{p.student_share:.4f}", f"{p.other_share:.4f}", p.matched,
                        p.matched_line_count, p.student_lines, p.other_lines, "yes" if p.flagged else "no",
                        pages.get((p.student, p.other), "")])
    return path


def write_outputs(cfg: AssignmentConfig, run: SimilarityRun, top: detect.Matches, options: SimilarityOptions,
                  started: float) -> SimilarityRun:
    folder = run.folder
    if (folder / "pairs").is_dir():
        shutil.rmtree(folder / "pairs")  # pages of an earlier run would be stale
    env = _env()
    page = env.get_template("similarity_pair.html.j2")
    pages: dict[tuple[str, str], str] = {}
    ranked = {(p.student, p.other): (rank, p) for rank, p in enumerate(run.pairs, 1)}
    for key, (a, b, m) in top.items():
        rank, pair = ranked[key]
        rel = f"pairs/{rank:03d}.html"
        _write_text(folder / rel, page.render(title=cfg.title or cfg.id, pair=pair, rank=rank,
                                              left=Markup(detect.highlight(a, m.a_slices, "highlight-red")),
                                              right=Markup(detect.highlight(b, m.b_slices, "highlight-green"))))
        pages[key] = rel
    write_csv(run.pairs, pages, run.csv)
    run = replace(run, pages=pages, seconds=time.perf_counter() - started)
    listed = [(rank, p) for rank, p in enumerate(run.pairs, 1) if (p.student, p.other) in pages or p.flagged]
    listed = listed[:max(options.top, SUMMARY_PAIRS)]
    _write_text(run.index, env.get_template("similarity.html.j2").render(
        title=cfg.title or cfg.id, run=run, pairs=listed, pages=pages, options=options, csv_name=run.csv.name))
    summary = {
        "assignment": cfg.id, "threshold": options.threshold, "min_match": options.min_match, "noise": options.noise,
        "students": run.students, "corpus_files": run.corpus_files, "compared": len(run.pairs),
        "flagged_count": len(run.flagged), "csv": run.csv.name, "index": run.index.name, "seconds": round(run.seconds, 3),
        "problems": list(run.problems),
        "flagged": [{**asdict(p), "score": p.score, "page": pages.get((p.student, p.other), "")}
                    for p in run.flagged[:SUMMARY_PAIRS]],
    }
    _write_text(folder / "similarity.json", json.dumps(summary, indent=1) + "\n")
    return run
