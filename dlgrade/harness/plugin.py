"""The pytest plugin that turns a hidden suite run into per-test results.

Markers (registered here, validated at collection): ``points(n)``, ``visibility(name)``,
``time_limit(seconds)``, ``part(name)``, ``spec(text)`` (the handout sentence or interface line the
test checks), ``advice`` (behaviour the handout does not ask for: 0 points, shown as advice, never a
failure), ``threshold(name)`` (a threshold test of ``[thresholds.<name>]``). Each test's settings are
resolved once, at collection, into a frozen :class:`TestSettings`; a bad marker names the test and the
marker and scores that test 0 (fail closed).

Fixtures: ``sub``, ``ref``, ``gen``, ``seed``, ``config``, ``record``, ``earlier`` (results of the tests run
before; threshold tests run after the unit tests), ``notes`` (lines for the submission's summary). Every test ends as exactly one
:class:`TestResult`; a test without a trusted verdict (grader crash, skip) scores 0.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
import time
import traceback
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import torch

from dlgrade.config import AssignmentConfig, Rule
from dlgrade.errors import Feedback, ForbiddenAPIError, GradingError
from dlgrade.harness.remote import Submission
from dlgrade.markers import keep_solutions
from dlgrade.results import TestResult
from dlgrade.static_check import Violation

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
MARKERS = {
    "points(n): points the test is worth (default 1)",
    "visibility(name): visible | hidden | after_due_date | after_published (default visible)",
    "time_limit(seconds): limit for the whole test in the worker's CPU seconds (wall-clock backstop: 4x), enforced outside the worker",
    "part(name): the assignment part the test belongs to (a grades.csv column)",
    "spec(text): the handout sentence or interface line the test checks (required by dlgrade validate)",
    "advice: behaviour the handout does not ask for: 0 points, shown to the student, never a failure",
    "threshold(name): a threshold test of [thresholds.<name>] (dlgrade calibrate runs these)",
}


class Reference:
    """Reference modules, imported on the trusted side under private names."""

    def __init__(self, directory: Path, assignment: str) -> None:
        self.directory = directory
        self.assignment = assignment
        self._modules: dict[str, types.ModuleType] = {}

    def module(self, name: str) -> types.ModuleType:
        if name not in self._modules:
            path = self.directory / f"{name}.py"
            private = f"_dlgrade_ref_{self.assignment}_{name}"
            mod = types.ModuleType(private)
            mod.__file__ = str(path)
            sys.modules[private] = mod
            exec(compile(keep_solutions(path.read_text()), str(path), "exec"), mod.__dict__)
            self._modules[name] = mod
        return self._modules[name]


def test_seed(run_seed: int, nodeid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{run_seed}:{nodeid}".encode()).digest()[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class TestSettings:
    """A hidden test's settings, resolved from its markers at collection."""

    nodeid: str
    name: str
    number: str
    points: float
    visibility: str
    part: str
    time_limit: float
    spec: str = ""
    advice: bool = False
    threshold: str = ""
    errors: tuple[str, ...] = ()     # what is wrong with the markers (the test then scores 0)


def _one_arg(item: pytest.Item, name: str) -> tuple[Any, str | None]:
    """(value, error) of a one-argument marker; (None, None) when absent."""
    m = item.get_closest_marker(name)
    if m is None:
        return None, None
    if len(m.args) != 1 or m.kwargs:
        return None, f"@pytest.mark.{name} takes exactly one argument, got {m.args!r} {m.kwargs!r}"
    return m.args[0], None


def resolve_settings(item: pytest.Item, cfg: AssignmentConfig, number: str) -> TestSettings:
    errors: list[str] = []

    def arg(name: str) -> Any:
        value, error = _one_arg(item, name)
        if error:
            errors.append(error)
        return value

    points_arg, visibility_arg, limit_arg = arg("points"), arg("visibility"), arg("time_limit")
    part_arg, spec_arg, threshold_arg = arg("part"), arg("spec"), arg("threshold")
    advice = item.get_closest_marker("advice") is not None
    points = 1.0 if points_arg is None else points_arg
    if isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0:
        errors.append(f"@pytest.mark.points must be a non-negative number, got {points_arg!r}")
        points = 0.0
    if advice:
        if points_arg not in (None, 0):
            errors.append("an @pytest.mark.advice test is worth 0 points; remove its points marker")
        points = 0.0
    visibility = "visible" if visibility_arg is None else visibility_arg
    if visibility not in VISIBILITIES:
        errors.append(f"@pytest.mark.visibility must be one of {', '.join(VISIBILITIES)}, got {visibility_arg!r}")
        visibility = "hidden"
    limit = cfg.limits.call_timeout_s if limit_arg is None else limit_arg
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0:
        errors.append(f"@pytest.mark.time_limit must be a positive number of seconds, got {limit_arg!r}")
        limit = cfg.limits.call_timeout_s
    part = "" if part_arg is None else part_arg
    if not isinstance(part, str) or (cfg.all_parts and part not in cfg.all_parts):
        errors.append(f"@pytest.mark.part({part_arg!r}) is not a part of {cfg.id} (known: {', '.join(cfg.all_parts)})")
        part = str(part)
    spec = "" if spec_arg is None else spec_arg
    if not isinstance(spec, str):
        errors.append(f"@pytest.mark.spec takes the handout sentence as a string, got {spec_arg!r}")
        spec = str(spec)
    threshold = "" if threshold_arg is None else threshold_arg
    if threshold and threshold not in cfg.thresholds:
        errors.append(f"@pytest.mark.threshold({threshold!r}): no [thresholds.{threshold}] in assignment.toml")
    doc = getattr(getattr(item, "function", None), "__doc__", None)
    name = doc.strip().splitlines()[0] if doc and doc.strip() else item.name
    return TestSettings(nodeid=item.nodeid, name=name, number=number, points=float(points), visibility=visibility,
                        part=part, time_limit=float(limit), spec=spec.strip(), advice=advice, threshold=str(threshold),
                        errors=tuple(f"{item.nodeid}: {e}" for e in errors))


@dataclass
class GradingContext:
    cfg: AssignmentConfig
    sub: Submission
    seed: int
    reference: Reference
    violations: list[Violation] = field(default_factory=list)
    results: list[TestResult] = field(default_factory=list)
    grader_log: list[str] = field(default_factory=list)
    done: dict[str, TestResult] = field(default_factory=dict)          # tests finished by an earlier, cut-off run
    on_result: Callable[[list[TestResult]], None] | None = None        # called after every test (partial results)
    only_thresholds: tuple[str, ...] = ()                             # run only these threshold tests (calibration)
    notes: list[str] = field(default_factory=list)                    # summary lines added by tests (`notes` fixture)
    planned: list[TestResult] = field(default_factory=list)           # every test to run, as "not run" (a cut-off run's rest)
    # validate --fast: given the results so far and a threshold test's function name, why that test need not run (None: run it)
    skip_threshold: Callable[[list[TestResult], str], str | None] | None = None


@dataclass
class _TestState:
    started: float
    failure: BaseException | None = None
    phase: str = ""
    skipped: str | None = None
    not_needed: str | None = None   # not run by choice (validate --fast), not a grader problem
    record: dict[str, Any] = field(default_factory=dict)


_STATE = pytest.StashKey[_TestState]()
_SETTINGS = pytest.StashKey[TestSettings]()


class GradingPlugin:
    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.interrupted = False

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self.interrupted = True  # Ctrl-C of the grading process (never the student's code: that runs elsewhere)

    # ------------------------------------------------------------------ configuration

    def pytest_configure(self, config: pytest.Config) -> None:
        for line in MARKERS:
            config.addinivalue_line("markers", line)

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep, drop = [], []
        disabled = set(self.ctx.cfg.disabled_parts)
        for i, item in enumerate(items, 1):  # numbers are fixed before anything is deselected
            settings = item.stash[_SETTINGS] = resolve_settings(item, self.ctx.cfg, str(i))
            self.ctx.grader_log.extend(settings.errors)
            if settings.part in disabled or (self.ctx.only_thresholds and settings.threshold not in self.ctx.only_thresholds):
                drop.append(item)
            elif item.nodeid in self.ctx.done:
                drop.append(item)
                self.ctx.results.append(self.ctx.done[item.nodeid])
            else:
                keep.append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
        # threshold tests run last (their numbers stay): their feedback can build on what the unit tests found
        items[:] = sorted(keep, key=lambda it: bool(it.stash[_SETTINGS].threshold))
        self.ctx.planned = [_not_run(item.stash[_SETTINGS]) for item in items]

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.ctx.grader_log.append(f"collection of {report.nodeid} failed:\n{report.longreprtext}")

    # ------------------------------------------------------------------ fixtures

    @pytest.fixture
    def sub(self) -> Submission:
        return self.ctx.sub

    @pytest.fixture
    def ref(self) -> Reference:
        return self.ctx.reference

    @pytest.fixture
    def seed(self, request: pytest.FixtureRequest) -> int:
        return test_seed(self.ctx.seed, request.node.nodeid)

    @pytest.fixture
    def gen(self, seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    @pytest.fixture
    def config(self) -> AssignmentConfig:
        return self.ctx.cfg

    @pytest.fixture
    def earlier(self) -> list[TestResult]:
        """The results of the tests that ran before this one (threshold tests run after every unit test)."""
        return list(self.ctx.results)

    @pytest.fixture
    def notes(self) -> list[str]:
        """Lines a test adds to the submission's summary (e.g. which interface version was graded)."""
        return self.ctx.notes

    @pytest.fixture
    def record(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        """Plain data a test keeps for the report (a training curve, a metric): results' extra_data."""
        return request.node.stash[_STATE].record

    # ------------------------------------------------------------------ running

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        settings = item.stash[_SETTINGS]
        item.stash[_STATE] = _TestState(time.monotonic())
        torch.manual_seed(test_seed(self.ctx.seed, item.nodeid))
        self.ctx.sub.begin_test(settings.time_limit)
        if settings.errors:
            raise GradingError("this test is misconfigured in the hidden suite; your instructor has been notified")
        for v in self.ctx.violations:
            if settings.part in v.parts:
                raise ForbiddenAPIError(v.message())
        if settings.threshold and self.ctx.skip_threshold is not None:
            reason = self.ctx.skip_threshold(list(self.ctx.results), item.nodeid.rsplit("::", 1)[-1])
            if reason:
                item.stash[_STATE].not_needed = reason
                pytest.skip(reason)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
        outcome = yield
        report = outcome.get_result()
        state = item.stash.get(_STATE, None)
        if state is None:
            state = item.stash[_STATE] = _TestState(time.monotonic())
        if report.skipped and state.skipped is None:
            state.skipped = str(call.excinfo.value) if call.excinfo else "skipped"
        elif report.failed and state.failure is None and call.excinfo is not None:
            state.failure, state.phase = call.excinfo.value, call.when
        if call.when == "teardown":
            self.ctx.results.append(self._result(item.stash[_SETTINGS], state))
            if self.ctx.on_result is not None:
                self.ctx.on_result(list(self.ctx.results))

    def _result(self, s: TestSettings, state: _TestState) -> TestResult:
        diagnosis = None
        fault = _FAULT_KINDS.get(type(state.failure).__name__, "") if state.failure is not None and not s.advice else ""
        if state.failure is None and state.skipped is None:
            status, score, output = "passed", s.points, "Passed."
        else:
            status, score = "failed", 0.0
            if state.not_needed is not None:
                output = f"Not run: {state.not_needed}"
            elif state.failure is None:
                output = f"Not run: {state.skipped}"
                self.ctx.grader_log.append(f"{s.nodeid}: skipped ({state.skipped}); scored 0")
            else:
                output, diagnosis = self._message(s.nodeid, state.failure)
        if s.advice:  # never a failure, never points: what the check found is shown as advice
            output = "Advice (no points): " + (output if status == "failed" else "nothing to improve here.")
            status, score = "passed", 0.0
        # a threshold test names its [thresholds.<name>]: notebook claims show its measured value (dlgrade.notebook.claims)
        extra = {**state.record, "threshold_name": s.threshold} if s.threshold else state.record
        return TestResult(name=s.name, number=s.number, score=score, max_score=s.points, status=status, output=output,
                          visibility=s.visibility, part=s.part, nodeid=s.nodeid, diagnosis=diagnosis,
                          seconds=round(time.monotonic() - state.started, 3), extra=extra, spec=s.spec,
                          advice=s.advice, fault=fault)

    def _message(self, nodeid: str, exc: BaseException) -> tuple[str, str | None]:
        if isinstance(exc, Feedback):
            return str(exc), exc.diagnosis
        if isinstance(exc, GradingError):
            kind = {"SubmissionImportError": "Import error", "MissingNameError": "Missing from your code",
                    "StudentCodeError": "Your code raised an error", "ForbiddenAPIError": "Forbidden API",
                    "LimitExceeded": "Limit exceeded", "WorkerCrashed": "Your code crashed the worker",
                    "BadAnswer": "Unusable answer", "GradingError": "Not graded"}.get(type(exc).__name__, "Error")
            return f"{kind}: {exc}", exc.diagnosis
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.ctx.grader_log.append(f"{nodeid}: grader error\n{trace}")
        if isinstance(exc, AssertionError):
            return "A check in this test failed.", None
        return (f"This test could not be completed ({type(exc).__name__} in the grader); this usually means your code "
                "returned a value of an unexpected type. Your instructor can see the details.", None)


def _not_run(s: TestSettings) -> TestResult:
    """A test that has not run yet: what a run cut off before it reports (0 points; advice stays advice)."""
    return TestResult(name=s.name, number=s.number, score=0.0, max_score=s.points, status="passed" if s.advice else "failed",
                      output="Not run: grading was stopped before this test ran.", visibility=s.visibility, part=s.part,
                      nodeid=s.nodeid, spec=s.spec, advice=s.advice)


# errors that mean the student's code broke the test (results.FAULTS), not that it answered wrongly
_FAULT_KINDS = {"SubmissionImportError": "import", "LimitExceeded": "limit", "WorkerCrashed": "crash"}


def charge_runtime_rules(results: list[TestResult], rules: tuple[Rule, ...], used: list[tuple[str, str]]) -> list[TestResult]:
    """A rule broken at run time costs every test of its parts, whenever in the run the use was seen."""
    message: dict[str, str] = {}
    for rule_id, api in used:
        try:
            rule = rules[int(rule_id)]
        except (ValueError, IndexError):
            continue
        where = f" in {', '.join(rule.scope)}" if rule.scope else ""
        text = f"Forbidden API: your code ran {api}{where}, which the handout forbids" + (f" ({rule.why})" if rule.why else "")
        for part in rule.parts:
            message.setdefault(part, text)
    return [replace(t, score=0.0, status="failed", output=message[t.part], diagnosis="forbidden API used")
            if t.part in message and not t.advice and t.max_score > 0 else t for t in results]


def run_suite(ctx: GradingContext, extra_args: list[str] | None = None) -> int:
    """Run the assignment's hidden suite for one submission; results land in ``ctx.results``."""
    root = str(ctx.cfg.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    args = [str(ctx.cfg.grader_dir), "-c", str(Path(__file__).with_name("pytest.ini")), "--rootdir", root,
            "-p", "no:cacheprovider", "-p", "no:timeout", "-p", "no:randomly", "-p", "no:xdist",
            # unraisable exceptions are the student's (they happen in the worker, never here); the plugin's gc.collect()
            # at the end of every session costs about 0.25 s per submission with torch loaded
            "-p", "no:unraisableexception", "-p", "no:threadexception",
            "--import-mode=importlib", "-q", "--no-header", "-s",
            # pytest's own failure reports (source excerpts of every traceback entry, parsed each time) are never
            # read: messages come from the exceptions themselves (_message). Without them a failing test costs a
            # few ms instead of about 70 (a blank skeleton's whole suite: 3 s less). Collection errors keep theirs.
            "--tb=no", *(extra_args or [])]
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        plugin = GradingPlugin(ctx)
        code = int(pytest.main(args, plugins=[plugin]))
    if plugin.interrupted:
        # pytest turns Ctrl-C into an exit code; the batch must stop, not record a half-graded student
        raise KeyboardInterrupt
    if code not in (0, 1, 5):  # 5: every test deselected (a resumed run that had finished them all)
        ctx.grader_log.append(f"pytest exited with {code}:\n{log.getvalue()[-5000:]}")
    ctx.results.sort(key=lambda t: int(t.number) if t.number.isdigit() else 0)
    ctx.results[:] = charge_runtime_rules(ctx.results, ctx.cfg.rules, sorted(ctx.sub.forbidden_used))
    return code
