"""The pytest plugin that turns a hidden suite run into per-test results.

Markers: ``points(n)``, ``visibility(name)``, ``time_limit(seconds)``, ``part(name)``.
Fixtures: ``sub``, ``ref``, ``gen``, ``seed``, ``config``, ``record``. Every test ends as exactly one
:class:`TestResult`; a test without a trusted verdict (grader crash, skip) scores 0.
"""

from __future__ import annotations

import hashlib
import sys
import time
import traceback
import types
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from dlgrade.config import AssignmentConfig
from dlgrade.errors import Feedback, ForbiddenAPIError, GradingError
from dlgrade.harness.remote import Submission
from dlgrade.markers import keep_solutions
from dlgrade.results import TestResult
from dlgrade.static_check import Violation

VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")
MARKERS = {
    "points(n): points the test is worth (default 1)",
    "visibility(name): visible | hidden | after_due_date | after_published (default visible)",
    "time_limit(seconds): wall-clock limit for the whole test, enforced outside the worker",
    "part(name): the assignment part the test belongs to (a grades.csv column)",
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


@dataclass
class GradingContext:
    cfg: AssignmentConfig
    sub: Submission
    seed: int
    reference: Reference
    violations: list[Violation] = field(default_factory=list)
    results: list[TestResult] = field(default_factory=list)
    grader_log: list[str] = field(default_factory=list)


@dataclass
class _TestState:
    started: float
    failure: BaseException | None = None
    phase: str = ""
    skipped: str | None = None
    record: dict[str, Any] = field(default_factory=dict)


_STATE = pytest.StashKey[_TestState]()


def _marker_arg(item: pytest.Item, name: str, default: Any) -> Any:
    m = item.get_closest_marker(name)
    return m.args[0] if m is not None and m.args else default


class GradingPlugin:
    def __init__(self, ctx: GradingContext) -> None:
        self.ctx = ctx
        self.numbers: dict[str, str] = {}
        self.interrupted = False

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        self.interrupted = True  # Ctrl-C of the grading process (never the student's code: that runs elsewhere)

    # ------------------------------------------------------------------ configuration

    def pytest_configure(self, config: pytest.Config) -> None:
        for line in MARKERS:
            config.addinivalue_line("markers", line)

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for i, item in enumerate(items, 1):
            self.numbers[item.nodeid] = str(i)

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
    def record(self, request: pytest.FixtureRequest) -> dict[str, Any]:
        """Plain data a test keeps for the report (a training curve, a metric): results' extra_data."""
        return request.node.stash[_STATE].record

    # ------------------------------------------------------------------ running

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        item.stash[_STATE] = _TestState(time.monotonic())
        torch.manual_seed(test_seed(self.ctx.seed, item.nodeid))
        self.ctx.sub.begin_test(float(_marker_arg(item, "time_limit", self.ctx.cfg.limits.call_timeout_s)))
        part = _marker_arg(item, "part", "")
        for v in self.ctx.violations:
            if part in v.parts:
                raise ForbiddenAPIError(v.message())

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
            self.ctx.results.append(self._result(item, state))

    def _result(self, item: pytest.Item, state: _TestState) -> TestResult:
        points = float(_marker_arg(item, "points", 1))
        visibility = str(_marker_arg(item, "visibility", "visible"))
        if visibility not in VISIBILITIES:
            self.ctx.grader_log.append(f"{item.nodeid}: unknown visibility {visibility!r}; using hidden")
            visibility = "hidden"
        doc = getattr(getattr(item, "function", None), "__doc__", None)
        name = (doc or "").strip().splitlines()[0] if doc else item.name
        diagnosis = None
        if state.failure is None and state.skipped is None:
            status, score, output = "passed", points, "Passed."
        else:
            status, score = "failed", 0.0
            if state.failure is None:
                output = f"Not run: {state.skipped}"
                self.ctx.grader_log.append(f"{item.nodeid}: skipped ({state.skipped}); scored 0")
            else:
                output, diagnosis = self._message(item, state.failure)
        return TestResult(name=name, number=self.numbers.get(item.nodeid, "0"), score=score, max_score=points,
                          status=status, output=output, visibility=visibility, part=str(_marker_arg(item, "part", "")),
                          nodeid=item.nodeid, diagnosis=diagnosis, seconds=round(time.monotonic() - state.started, 3),
                          extra=state.record)

    def _message(self, item: pytest.Item, exc: BaseException) -> tuple[str, str | None]:
        if isinstance(exc, Feedback):
            return str(exc), exc.diagnosis
        if isinstance(exc, GradingError):
            kind = {"SubmissionImportError": "Import error", "MissingNameError": "Missing from your code",
                    "StudentCodeError": "Your code raised an error", "ForbiddenAPIError": "Forbidden API",
                    "LimitExceeded": "Limit exceeded", "WorkerCrashed": "Your code crashed the worker",
                    "BadAnswer": "Unusable answer"}.get(type(exc).__name__, "Error")
            return f"{kind}: {exc}", exc.diagnosis
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.ctx.grader_log.append(f"{item.nodeid}: grader error\n{trace}")
        if isinstance(exc, AssertionError):
            return "A check in this test failed.", None
        return (f"This test could not be completed ({type(exc).__name__} in the grader); this usually means your code "
                "returned a value of an unexpected type. Your instructor can see the details.", None)


def run_suite(ctx: GradingContext, extra_args: list[str] | None = None) -> int:
    """Run the assignment's hidden suite for one submission; results land in ``ctx.results``."""
    import contextlib
    import io

    root = str(ctx.cfg.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    args = [str(ctx.cfg.grader_dir), "-c", str(Path(__file__).with_name("pytest.ini")), "--rootdir", root,
            "-p", "no:cacheprovider", "-p", "no:timeout", "-p", "no:randomly", "-p", "no:xdist",
            "--import-mode=importlib", "-q", "--no-header", "-s", *(extra_args or [])]
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        plugin = GradingPlugin(ctx)
        code = int(pytest.main(args, plugins=[plugin]))
    if plugin.interrupted:
        # pytest turns Ctrl-C into an exit code; the batch must stop, not record a half-graded student
        raise KeyboardInterrupt
    if code not in (0, 1):
        ctx.grader_log.append(f"pytest exited with {code}:\n{log.getvalue()[-5000:]}")
    return code

