"""Calibrate: measure every threshold test on the reference and on the bad models it must reject.

For each ``[thresholds.<name>]`` of an assignment and each seed, the reference, each catalogued bug listed
in ``bad`` and each ``variants`` entry (the reference trained with other model arguments) are graded for
real (the hidden suite, the chosen sandbox), running only the threshold test marked
``@pytest.mark.threshold("<name>")``; the metric is what that test records. The suggested threshold lies
midway between the worst reference run and the best run of a ``required_bad`` model, and must separate
them on every seed. ``graders/<id>/CALIBRATION.md`` records the table (with ``--write``), followed by
``graders/<id>/calibration_notes.md`` when there is one.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dlgrade.bugs import bug_submission, load_bugs, materialise
from dlgrade.config import AssignmentConfig, Threshold
from dlgrade.errors import ConfigError
from dlgrade.grade import grade_one
from dlgrade.release import reference_submission
from dlgrade.results import TestResult
from dlgrade.sandbox import get_backend


@dataclass(frozen=True)
class Column:
    label: str
    files: dict[str, bytes]
    cfg: AssignmentConfig


@dataclass(frozen=True)
class ThresholdReport:
    name: str
    threshold: Threshold
    values: dict[str, list[float]]      # column label -> metric per seed
    seconds: list[float]                # the reference's test time per seed
    suggested: float
    separated: bool                     # the suggested threshold separates reference and required bad models
    current_ok: bool                    # the threshold of assignment.toml does too
    unmeasured: tuple[str, ...] = ()    # runs whose test failed before measuring, and why

    @property
    def reference_measured(self) -> bool:
        return not any(u.startswith("reference at") for u in self.unmeasured)

    def markdown(self, seeds: list[int]) -> list[str]:
        th = self.threshold
        better = "lower" if th.direction == "lower" else "higher"
        lines = [f"## {self.name}: {th.metric} ({better} is better)", "",
                 f"Budget: recipe {th.recipe}, {th.steps} steps, batch {th.batch_size}, lr {th.lr}, options {th.options}, "
                 f"model {th.model_args}, data {th.data_args}.", "",
                 "| seed | " + " | ".join(self.values) + " | reference seconds |", "|" + "---|" * (len(self.values) + 2)]
        for i, seed in enumerate(seeds):
            lines.append(f"| {seed} | " + " | ".join(f"{v[i]:.3f}" for v in self.values.values()) + f" | {self.seconds[i]:.2f} |")
        ref = self.values["reference"]
        bad = "; ".join(f"`{n}`: {min(self.values[n]):.3f} to {max(self.values[n]):.3f}" for n in th.required_bad)
        lines += ["", f"Reference: {min(ref):.3f} to {max(ref):.3f} (median {statistics.median(ref):.3f}); {bad}. "
                  f"Midway between the worst reference run and the best run of a required bad model: **{self.suggested:.2f}**"
                  + ("" if self.separated else " (NOT SEPARATED)") + f"; assignment.toml has {th.threshold:g}"
                  + (" (separates them on every seed)." if self.current_ok else " (does NOT separate them on every seed).")
                  + f" Reference test time: median {statistics.median(self.seconds):.2f} s.", ""]
        return lines


def _columns(cfg: AssignmentConfig, th: Threshold) -> list[Column]:
    bugs = {b.name: b for b in load_bugs(cfg)}
    unknown = [n for n in th.bad if n not in bugs]
    if unknown:
        raise ConfigError(f"[thresholds.{th.name}] bad: {unknown} are not bugs of graders/{cfg.id}/bugs.toml")
    missing = [n for n in th.required_bad if n not in th.bad and n not in th.variants]
    if missing:
        raise ConfigError(f"[thresholds.{th.name}] required_bad: {missing} are neither in bad nor in variants")
    cols = [Column("reference", reference_submission(cfg), cfg)]
    cols += [Column(n, bug_submission(cfg, bugs[n]), cfg) for n in th.bad]
    for label, overrides in th.variants.items():
        changed = replace(th, model_args={**th.model_args, **overrides})
        cols.append(Column(label, reference_submission(cfg), replace(cfg, thresholds={**cfg.thresholds, th.name: changed})))
    return cols


def _metric(tests: tuple[TestResult, ...], direction: str) -> tuple[float, float, str]:
    """(metric, seconds, why not measured) of the threshold test; a run that failed before measuring (it diverged,
    it crashed) counts as the worst value, and says why."""
    worst = math.inf if direction == "lower" else 0.0
    for t in tests:
        value = t.extra.get("value")
        if isinstance(value, (int, float)):
            return float(value), t.seconds, ""
        return worst, t.seconds, t.output.splitlines()[0][:300] if t.output else "no metric recorded"
    return worst, 0.0, "the threshold test did not run"


def calibrate(cfg: AssignmentConfig, seeds: list[int], out: Path, names: list[str] | None = None,
              sandbox: str = "process", progress: bool = True) -> list[ThresholdReport]:
    names = names or list(cfg.thresholds)
    unknown = [n for n in names if n not in cfg.thresholds]
    if unknown:
        raise ConfigError(f"{cfg.id} has no thresholds {unknown} (known: {', '.join(cfg.thresholds) or 'none'})")
    backend = get_backend(sandbox, preload=cfg.preload)
    reports = []
    try:
        for name in names:
            th = cfg.thresholds[name]
            columns = _columns(cfg, th)
            values: dict[str, list[float]] = {c.label: [] for c in columns}
            seconds: list[float] = []
            unmeasured: list[str] = []
            for seed in seeds:
                for c in columns:
                    folder = materialise(c.files, out / "submissions" / name / c.label.replace(" ", "_").replace(",", ""))
                    r = grade_one(c.cfg, backend, folder, seed, out / "results" / f"{name}-{seed}", only_thresholds=(name,))
                    value, sec, why = _metric(r.tests, th.direction)
                    values[c.label].append(value)
                    if why:
                        unmeasured.append(f"{c.label} at seed {seed}: {why}")
                    if c.label == "reference":
                        seconds.append(sec)
                if progress:
                    print(f"{cfg.id} {name} seed {seed}: " + ", ".join(f"{k} {v[-1]:.3f}" for k, v in values.items()), flush=True)
            ref, bad = values["reference"], [v for n in th.required_bad for v in values[n]]
            lower = th.direction == "lower"
            worst_ref = max(ref) if lower else min(ref)
            best_bad = (min(bad) if lower else max(bad)) if bad else (math.inf if lower else -math.inf)
            suggested = round((worst_ref + best_bad) / 2, 2) if math.isfinite(best_bad) else worst_ref
            separated = (worst_ref < suggested < best_bad) if lower else (best_bad < suggested < worst_ref)
            current = (all(th.passes(v) for v in ref) and not any(th.passes(v) for v in bad))
            reports.append(ThresholdReport(name, th, values, seconds, suggested, separated, current, tuple(unmeasured)))
    finally:
        backend.shutdown()
    return reports


def write_calibration(cfg: AssignmentConfig, seeds: list[int], reports: list[ThresholdReport], sandbox: str) -> Path:
    broken = [u for r in reports for u in r.unmeasured if u.startswith("reference at")]
    if broken:
        raise ConfigError("the reference's threshold tests did not measure (CALIBRATION.md left unchanged): " + "; ".join(broken[:3]))
    lines = [f"# Threshold calibration ({cfg.id})", "",
             f"Made by `dlgrade calibrate {cfg.id} --seeds {' '.join(map(str, seeds))} --write` on {time.strftime('%Y-%m-%d')}, "
             f"{sandbox} sandbox, CPU, torch {torch.__version__}, {cfg.limits.cpus} torch thread(s) in the worker. "
             "Each value is what the hidden threshold test measured for that run seed.", ""]
    for rep in reports:
        lines += rep.markdown(seeds)
    notes = cfg.grader_dir / "calibration_notes.md"
    if notes.is_file():
        lines += [notes.read_text().rstrip(), ""]
    path = cfg.grader_dir / "CALIBRATION.md"
    path.write_text("\n".join(lines))
    return path
