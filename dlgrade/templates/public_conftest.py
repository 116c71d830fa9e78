"""Support for the public tests of this assignment (written by `dlgrade release` from assignment.toml).

This file makes the tests runnable with plain pytest, without dlgrade installed:

- it puts the release folder (the parent of `public_tests/`) first on `sys.path`, so that your
  files are the ones imported; a notebook you submit is turned into a module the way the
  autograder does it (its definitions only: training cells, shell escapes and magics never run);
- it provides the fixture `student`: `student("module")` imports one of your modules, and one
  fixture per module named like it (e.g. `vit_solution`), where that name is free;
- it registers the markers `points(n)` and `part(name)` used by the tests;
- it turns a `NotImplementedError` raised by your code into a one-line "not implemented yet";
- at the end it prints a table of the points each test is worth and a total line.

A test's points count when the test passes.
"""

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

RELEASE_DIR = Path(__file__).resolve().parent.parent
if str(RELEASE_DIR) not in sys.path:
    sys.path.insert(0, str(RELEASE_DIR))

# @dlgrade:settings  (the lines up to the next blank line are written by `dlgrade release`)
ASSIGNMENT = "example"
MODULES = {"example": "example.py"}   # module -> your file in this folder
PRELUDES = {}                         # notebook module -> what the autograder defines before your cells


@dataclass
class _Outcome:
    """What the points table needs to know about one test."""

    name: str
    part: str
    points: float
    status: str = "not run"  # "passed", "FAILED", "skipped" or "not run"


_OUTCOMES = pytest.StashKey[dict]()  # nodeid -> _Outcome, in collection order


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points the test is worth when it passes")
    config.addinivalue_line("markers", "part(name): the part of the assignment the test checks")
    config.stash[_OUTCOMES] = {}
    # Short tracebacks read better than pytest's long default.
    if getattr(config.option, "tbstyle", "auto") == "auto":
        config.option.tbstyle = "short"


def _marker_arg(item, name, default):
    marker = item.get_closest_marker(name)
    if marker is None or not marker.args:
        return default
    return marker.args[0]


def pytest_collection_finish(session):
    # session.items is final here: deselected tests are already gone.
    outcomes = session.config.stash[_OUTCOMES]
    for item in session.items:
        points = float(_marker_arg(item, "points", 0))
        part = str(_marker_arg(item, "part", "-"))
        outcomes[item.nodeid] = _Outcome(item.name, part, points)


def _record(item, report):
    """Fold the report of one phase (setup, call, teardown) into the test's outcome."""
    outcome = item.config.stash[_OUTCOMES].get(item.nodeid)
    if outcome is None:
        return
    if report.failed:
        outcome.status = "FAILED"
    elif report.skipped and outcome.status != "FAILED":
        outcome.status = "skipped"
    elif report.when == "call" and report.passed and outcome.status == "not run":
        outcome.status = "passed"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    _record(item, report)
    excinfo = call.excinfo
    if report.failed and excinfo is not None and excinfo.errisinstance(NotImplementedError):
        where = ""
        for entry in reversed(excinfo.traceback):  # the innermost frame in your files
            path = Path(str(entry.path))
            if RELEASE_DIR in path.parents and Path(__file__).parent not in path.parents:
                where = f" ({path.relative_to(RELEASE_DIR)}, line {entry.lineno + 1})"
                break
        message = str(excinfo.value) or "a function you have not written yet"
        report.longrepr = (
            f"not implemented yet{where}: NotImplementedError: {message}\n"
            "Replace the `raise NotImplementedError(...)` under the TODO with your code."
        )
    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    outcomes = list(config.stash.get(_OUTCOMES, {}).values())
    if not outcomes:
        return
    tr = terminalreporter
    tr.write_sep("=", "public tests: points")
    name_width = max(len(o.name) for o in outcomes)
    part_width = max(4, max(len(o.part) for o in outcomes))
    tr.write_line(f"{'part':<{part_width}}  {'test':<{name_width}}  {'result':<7}  points")
    earned = possible = 0.0
    for o in outcomes:
        got = o.points if o.status == "passed" else 0.0
        earned += got
        possible += o.points
        tr.write_line(
            f"{o.part:<{part_width}}  {o.name:<{name_width}}  {o.status:<7}  {got:4.1f} / {o.points:.1f}",
            red=o.status == "FAILED",
        )
    tr.write_line("")
    tr.write_line(f"Public tests: {earned:.1f} / {possible:.1f} points", bold=True)
    unscored = [o.name for o in outcomes if o.points == 0 and o.status == "FAILED"]
    if unscored:
        tr.write_line(f"Also failed, worth no points here but read their messages: {', '.join(unscored)}", red=True)
    tr.write_line(
        "These are the public tests only. Your grade comes from the autograder's hidden tests, "
        "which check the same tasks more thoroughly."
    )


def _import_student_module(name):
    """Import one of your modules (`models.seq2seq.Decoder`, `vit_solution`), or fail the test with a reason."""
    if name in sys.modules:
        return sys.modules[name]
    rel = MODULES.get(name) or Path(*name.split(".")).with_suffix(".py").as_posix()
    path = RELEASE_DIR / rel
    if not path.is_file():
        pytest.fail(f"{rel} not found in {RELEASE_DIR}", pytrace=False)
    try:
        if rel.endswith(".ipynb"):
            if str(Path(__file__).parent) not in sys.path:
                sys.path.insert(0, str(Path(__file__).parent))
            from notebook_loader import load_notebook_module  # the autograder's own rules, standard library only

            return load_notebook_module(str(path), name, PRELUDES.get(name, ""))
        return importlib.import_module(name)
    except Exception as error:  # a syntax error, a missing package, code that crashes
        sys.modules.pop(name, None)
        pytest.fail(f"could not import {rel}: {type(error).__name__}: {error}", pytrace=False)


@pytest.fixture
def student():
    """`student("module")` imports one of your modules."""
    return _import_student_module


def _module_fixture(name):
    def fixture():
        return _import_student_module(name)

    fixture.__name__ = fixture.__qualname__ = name.rsplit(".", 1)[-1]
    fixture.__doc__ = f"Your {MODULES.get(name, name)}."
    return pytest.fixture(fixture)


_SHORT = [name.rsplit(".", 1)[-1] for name in MODULES]
for _name in MODULES:
    _short = _name.rsplit(".", 1)[-1]
    if _short.isidentifier() and _SHORT.count(_short) == 1 and _short not in globals():
        globals()[_short] = _module_fixture(_name)


@pytest.fixture(autouse=True)
def _seed_torch():
    """Every test starts from the same random state, so results repeat."""
    import torch

    # The tensors here are tiny: one thread is faster than several that wait on each other.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
