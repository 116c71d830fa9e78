"""The grading plugin on a toy assignment (made with pytester), not through a real course.

Each test writes a tiny project (assignment.toml, a hidden suite, a reference, a submission) into pytester's
folder and grades the submission with the in-process sandbox, then checks the TestResults: markers resolved
at collection (bad ones fail closed and name the test and the marker), advice tests, parts turned off, threshold
tests run last with the unit tests' results at hand, resumed runs, and run-time rules charged to their parts.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dlgrade.config import load_assignment
from dlgrade.grade import grade_one
from dlgrade.results import SubmissionResult
from dlgrade.sandbox import get_backend

pytest_plugins = ["pytester"]

TOML = """
id = "toy"
submit = ["m.py"]
[parts]
one = "Part one"
two = {{ title = "Part two", enabled = {two} }}
[limits]
cpus = 1
{extra}
"""

SUITE = '''
import pytest
from dlgrade.harness import expect


@pytest.mark.part("one")
@pytest.mark.points(2)
@pytest.mark.spec("Handout 1: f doubles its input")
def test_doubles(sub):
    """f(x) = 2x"""
    expect.true(sub.call("m.f", 3) == 6, "f(3) is not 6", "does not double")


@pytest.mark.part("one")
@pytest.mark.advice
@pytest.mark.spec("not asked: negative inputs")
def test_negative(sub):
    """Advice: f works on negative numbers"""
    expect.true(sub.call("m.f", -1) == -2, "f(-1) is not -2")


@pytest.mark.part("two")
@pytest.mark.points(1)
@pytest.mark.spec("Handout 2: g")
def test_g(sub):
    """g exists"""
    expect.true(sub.has("m.g"), "no g")
'''


def project(root: Path, submission: str, suite: str = SUITE, two: str = "true", extra: str = "") -> Path:
    (root / "assignments" / "toy").mkdir(parents=True)
    (root / "assignments" / "toy" / "assignment.toml").write_text(TOML.format(two=two, extra=extra))
    (root / "graders" / "toy").mkdir(parents=True)
    (root / "graders" / "__init__.py").write_text("")
    (root / "graders" / "toy" / "__init__.py").write_text("")
    (root / "graders" / "toy" / "test_toy.py").write_text(textwrap.dedent(suite))
    (root / "reference_solutions" / "toy").mkdir(parents=True)
    (root / "reference_solutions" / "toy" / "m.py").write_text("def f(x):\n    return 2 * x\n")
    sub = root / "subs" / "alice"
    sub.mkdir(parents=True)
    (sub / "m.py").write_text(textwrap.dedent(submission))
    return sub


def grade(root: Path, sub: Path, **kw: object) -> SubmissionResult:
    cfg = load_assignment("toy", root)
    backend = get_backend("inprocess")
    try:
        return grade_one(cfg, backend, sub, 1, root / "out", **kw)  # type: ignore[arg-type]
    finally:
        backend.shutdown()


def by_name(result: SubmissionResult) -> dict[str, object]:
    return {t.nodeid.rsplit("::", 1)[-1]: t for t in result.tests}


def test_markers_points_parts_and_advice(pytester: pytest.Pytester) -> None:
    sub = project(pytester.path, "def f(x):\n    return 2 * x if x > 0 else 0\n\ndef g():\n    pass\n")
    r = grade(pytester.path, sub)
    tests = by_name(r)
    doubles, negative, g = tests["test_doubles"], tests["test_negative"], tests["test_g"]
    assert (doubles.score, doubles.max_score, doubles.part, doubles.spec) == (2.0, 2.0, "one", "Handout 1: f doubles its input")
    assert doubles.name == "f(x) = 2x" and doubles.number == "1"
    assert negative.advice and negative.status == "passed" and negative.score == negative.max_score == 0
    assert negative.output.startswith("Advice (no points): f(-1) is not -2")
    assert g.score == 1.0 and r.score == r.max_score == 3.0 and not r.grader_errors


def test_a_bad_marker_fails_closed_and_says_where(pytester: pytest.Pytester) -> None:
    suite = SUITE.replace('@pytest.mark.points(1)', '@pytest.mark.points("lots")').replace('part("two")', 'part("three")')
    sub = project(pytester.path, "def f(x):\n    return 2 * x\n\ndef g():\n    pass\n", suite=suite)
    r = grade(pytester.path, sub)
    g = by_name(r)["test_g"]
    assert g.score == 0 and g.status == "failed" and "misconfigured" in g.output
    log = "\n".join(r.grader_errors)
    assert "test_toy.py::test_g: @pytest.mark.points must be a non-negative number, got 'lots'" in log
    assert "@pytest.mark.part('three') is not a part of toy" in log
    assert r.status == "grader error"


def test_a_part_turned_off_is_not_graded_and_numbers_stay(pytester: pytest.Pytester) -> None:
    sub = project(pytester.path, "def f(x):\n    return 2 * x\n", two="false")
    r = grade(pytester.path, sub)
    assert [t.nodeid.rsplit("::", 1)[-1] for t in r.tests] == ["test_doubles", "test_negative"]
    assert [t.number for t in r.tests] == ["1", "2"]
    assert "Part two" in r.output and "not graded" in r.output and r.max_score == 2.0


THRESHOLD_SUITE = SUITE + '''

@pytest.mark.part("one")
@pytest.mark.points(1)
@pytest.mark.threshold("fit")
@pytest.mark.spec("Handout 3: it trains")
def test_a_trains(sub, earlier, config):
    """Training reaches the threshold"""
    assert config.thresholds["fit"].direction == "lower"
    expect.trained_too_poorly("Loss 9 > 1.", earlier, "one", "Check f.", "does not train")


@pytest.mark.part("two")
@pytest.mark.points(1)
@pytest.mark.spec("Handout 2: h")
def test_h(sub, notes):
    """h exists"""
    notes.append("Graded against the toy interface.")
'''

THRESHOLD_TOML = """
[thresholds.fit]
recipe = "train"
metric = "loss"
direction = "lower"
threshold = 1.0
steps = 1
batch_size = 1
lr = 0.1
"""


def test_threshold_tests_run_last_and_build_on_the_unit_tests(pytester: pytest.Pytester) -> None:
    sub = project(pytester.path, "def f(x):\n    return x\n\ndef g():\n    pass\n", suite=THRESHOLD_SUITE, extra=THRESHOLD_TOML)
    r = grade(pytester.path, sub)
    tests = by_name(r)
    assert [t.number for t in r.tests] == ["1", "2", "3", "4", "5"]  # reported in collection order
    trains = tests["test_a_trains"]
    assert trains.number == "4" and trains.status == "failed"
    # it ran after test_h (collected later) and names the unit test of its part that failed, with its diagnosis
    assert "The unit tests of this part found: f(x) = 2x (does not double)" in trains.output
    assert trains.diagnosis == "does not double"
    assert "Graded against the toy interface." in r.output


def test_a_resumed_run_keeps_finished_tests(pytester: pytest.Pytester) -> None:
    sub = project(pytester.path, "def f(x):\n    return 2 * x\n\ndef g():\n    pass\n")
    first = grade(pytester.path, sub)
    done = {t.nodeid: t for t in first.tests if t.nodeid.endswith("test_doubles")}
    from dlgrade.harness.plugin import GradingContext, Reference, run_suite
    from dlgrade.harness.remote import Submission

    cfg = load_assignment("toy", pytester.path)
    backend = get_backend("inprocess")
    spec_files = {"m.py": (sub / "m.py").read_bytes()}
    from dlgrade.sandbox import WorkerSpec

    s = Submission(backend, WorkerSpec(files=spec_files, modules=cfg.modules), 10, 60)
    ctx = GradingContext(cfg=cfg, sub=s, seed=1, reference=Reference(cfg.reference_dir, "toy"), done=done)
    try:
        run_suite(ctx)
    finally:
        s.close()
    assert [t.nodeid.rsplit("::", 1)[-1] for t in ctx.results] == ["test_doubles", "test_negative", "test_g"]
    assert ctx.results[0] is next(iter(done.values()))  # reused, not run again


RULE_TOML = """
[[forbidden]]
apis = ["torch.sqrt"]
files = ["m.py"]
scope = ["f"]
parts = ["one"]
why = "Handout 1: no square roots in f"
"""


def test_a_run_time_use_in_scope_costs_its_part_only(pytester: pytest.Pytester) -> None:
    submission = """
        import torch
        _sqrt = getattr(torch, "sq" + "rt")

        def f(x):
            if x < 0:
                _sqrt(torch.tensor(4.0))  # only the advice test's negative input reaches it
            return 2 * x

        def g():
            return torch.sqrt(torch.tensor(4.0))  # outside the scope: allowed
    """
    sub = project(pytester.path, submission, extra=RULE_TOML)
    r = grade(pytester.path, sub)
    tests = by_name(r)
    assert tests["test_doubles"].score == 0 and "torch.sqrt" in tests["test_doubles"].output
    assert "no square roots in f" in tests["test_doubles"].output
    assert tests["test_g"].score == 1.0


def test_a_training_result_keeps_its_curve_and_a_divergence_or_bad_shape_fails_clearly() -> None:
    """The threshold tests' shared checks (dlgrade.harness.expect): the loss curve is recorded before any verdict, so the
    report plots it also for a model that fails; NaN steps are left out of the plot; a diverged run and a malformed
    result each fail with their own message; the measured value lands next to its threshold."""
    from dlgrade.config import Threshold
    from dlgrade.errors import Feedback
    from dlgrade.harness import expect

    record: dict[str, object] = {}
    out = expect.training_result({"logits": 1, "train_losses": [2.0, float("nan"), 1.0], "log_every": 5}, ("logits",), record)
    assert out["logits"] == 1 and record == {"train_losses": [2.0, 1.0], "log_every": 5}
    with pytest.raises(Feedback, match=r"training diverged: the loss became NaN or infinite \(check the loss\)") as info:
        expect.training_result({"logits": 1, "diverged": True, "train_losses": [3.0]}, ("logits",), record, "check the loss")
    assert info.value.diagnosis == "training diverged" and record["train_losses"] == [3.0]
    with pytest.raises(Feedback, match="malformed result"):
        expect.training_result({"state_dict": {}}, ("logits",), {})
    with pytest.raises(Feedback, match="malformed result"):
        expect.training_result(None, ("logits",), {})
    low = Threshold(name="ppl", recipe="r", metric="perplexity", direction="lower", threshold=5.0, steps=1, batch_size=1, lr=0.1,
                    model_args={}, data_args={})
    assert expect.reaches(low, 4.2, record) and not expect.reaches(low, 5.5, record)
    assert (record["metric"], record["value"], record["threshold"], record["better"]) == ("perplexity", 5.5, 5.0, "lower")
