"""Checks for hidden tests: staged, specific, and silent about expected values.

Each helper validates what came back from the worker (type → shape → dtype → finiteness →
values) and raises :class:`Feedback` naming the first thing that is wrong. When a wrong
value matches a known mistake (``diagnoses``), the message names that mistake.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from dlgrade.errors import Feedback

if TYPE_CHECKING:
    from dlgrade.config import Threshold


def _kind(x: Any) -> str:
    from dlgrade.harness.remote import RemoteObject
    if isinstance(x, RemoteObject):
        return f"a {x.handle.type} object"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of {len(x)} items"
    return "None" if x is None else f"a {type(x).__name__}"


def fail(message: str, diagnosis: str | None = None) -> None:
    raise Feedback(message, diagnosis)


def true(condition: bool, message: str, diagnosis: str | None = None) -> None:
    if not condition:
        raise Feedback(message, diagnosis)


def tensor(x: Any, what: str, shape: Sequence[int] | None = None, dtype: str | None = None, finite: bool = True) -> torch.Tensor:
    """``x`` must be a tensor (of this shape / dtype kind, with finite values)."""
    if isinstance(x, (int, float)) and not isinstance(x, bool) and shape in (None, ()):
        x = torch.tensor(float(x))
    if not isinstance(x, torch.Tensor):
        raise Feedback(f"{what} should be a tensor, but your code returned {_kind(x)}")
    if shape is not None:
        expect_shape(x, shape, what)
    if dtype == "float" and not x.is_floating_point():
        raise Feedback(f"{what} should be a floating-point tensor, got {str(x.dtype).replace('torch.', '')}")
    if dtype in ("int", "long") and (x.is_floating_point() or x.dtype == torch.bool):
        raise Feedback(f"{what} should be an integer tensor, got {str(x.dtype).replace('torch.', '')}")
    if finite and x.is_floating_point():
        if torch.isnan(x).any():
            raise Feedback(f"{what} contains NaN values", "NaN in the output")
        if torch.isinf(x).any():
            raise Feedback(f"{what} contains infinite values", "inf in the output")
    return x


def expect_shape(x: torch.Tensor, shape: Sequence[int], what: str) -> None:
    want = tuple(int(s) for s in shape)
    if tuple(x.shape) != want:
        raise Feedback(f"{what} has shape {tuple(x.shape)}, expected {want}")


shape = expect_shape


def close(actual: Any, expected: torch.Tensor, what: str, atol: float = 1e-5, rtol: float = 1e-4,
          diagnoses: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``actual`` must match the reference ``expected``; the message never shows ``expected``."""
    x = tensor(actual, what, shape=tuple(expected.shape))
    got, want = x.double(), expected.detach().double()
    if torch.allclose(got, want, atol=atol, rtol=rtol):
        return x
    for name, alt in (diagnoses or {}).items():
        if tuple(alt.shape) == tuple(x.shape) and torch.allclose(got, alt.detach().double(), atol=atol, rtol=rtol):
            raise Feedback(f"{what} is wrong: {name}", name)
    if x.numel() == 1:  # with one number, any difference would give the expected value away
        raise Feedback(f"{what} does not match the expected value (tolerance {atol:g} + {rtol:g}·|value|)")
    bad = ~torch.isclose(got, want, atol=atol, rtol=rtol)
    frac = float(bad.double().mean())
    err = float((got - want).abs().max())
    raise Feedback(f"{what} does not match the expected values: {frac:.0%} of the entries differ "
                   f"(largest absolute difference {err:.3g}, tolerance {atol:g} + {rtol:g}·|value|)")


def scalar(x: Any, what: str) -> float:
    """A real number (a Python number or a tensor with one element)."""
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        x = float(x.reshape(()).double())
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise Feedback(f"{what} should be a number or a one-element tensor, but your code returned {_kind(x)}")
    value = float(x)
    if value != value or value in (float("inf"), float("-inf")):
        raise Feedback(f"{what} is not finite ({value})", "NaN in the output")
    return value


def pair(x: Any, what: str) -> tuple[Any, Any]:
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise Feedback(f"{what} should be a pair (tuple of 2), but your code returned {_kind(x)}")
    return x[0], x[1]


def untouched(sub: Any, what: str, names: Sequence[str] = ()) -> None:
    """The call just made through ``sub`` must not have written into its tensor arguments.

    The worker compares each tensor argument with a copy taken before the call, whatever the call did
    with autograd, so a function that writes into the caller's tensors (``targets[mask == 0] = 0``) is seen.
    ``names`` gives the arguments' names in order, for the message.
    """
    changed = list(getattr(sub, "mutated", ()) or ())
    if not changed:
        return
    shown = []
    for label in changed:
        index = label.removeprefix("argument ")
        shown.append(names[int(index) - 1] if index.isdigit() and 0 < int(index) <= len(names) else label)
    raise Feedback(f"{what} writes into its input ({', '.join(shown)}): the caller's tensors must be left unchanged, "
                   "so compute on new tensors (e.g. `x = x.clone()` before changing it, or out-of-place operations)",
                   "writes into its inputs")


def close_any(actual: Any, accepted: Sequence[torch.Tensor], what: str, atol: float = 1e-5, rtol: float = 1e-4,
              diagnoses: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """``actual`` must match one of the ``accepted`` answers (every reading the handout allows); the message,
    on failure, is the one for the first of them."""
    for want in accepted[1:]:
        if (isinstance(actual, torch.Tensor) and tuple(actual.shape) == tuple(want.shape)
                and torch.allclose(actual.double(), want.detach().double(), atol=atol, rtol=rtol)):
            return actual
    return close(actual, accepted[0], what, atol=atol, rtol=rtol, diagnoses=diagnoses)


def training_result(out: Any, keys: Sequence[str], record: dict[str, Any], diverged_hint: str = "") -> dict[str, Any]:
    """What a training recipe returned, checked: a dict with ``keys``, not diverged.

    The loss curve (``train_losses``, finite values, at most 1000, logged every ``log_every`` steps) goes into
    ``record`` first, so that the report plots it also when the test then fails.
    """
    true(isinstance(out, dict) and all(k in out for k in keys), "the training recipe returned a malformed result")
    losses = out.get("train_losses")
    if isinstance(losses, list):
        record["train_losses"] = [float(x) for x in losses[:1000] if isinstance(x, (int, float)) and math.isfinite(x)]
        record["log_every"] = out.get("log_every", 1)
    if out.get("diverged"):
        fail("training diverged: the loss became NaN or infinite" + (f" ({diverged_hint})" if diverged_hint else ""),
             "training diverged")
    return dict(out)


def reaches(threshold: Threshold, value: float, record: dict[str, Any]) -> bool:
    """Record the measured metric next to its threshold (results, reports, calibration) and say whether it passes."""
    record.update(metric=threshold.metric, value=value, threshold=threshold.threshold, better=threshold.direction)
    return threshold.passes(value)


def trained_too_poorly(summary: str, earlier: Sequence[Any], part: str | tuple[str, ...], hint: str, diagnosis: str) -> None:
    """Fail a threshold test with advice built from what the unit tests of the same part found.

    ``summary`` says what was measured; when unit tests of ``part`` (or of any of several parts) failed (they run before threshold tests),
    they are named with their diagnoses, since training runs the same code; otherwise ``hint`` says where to
    look. The diagnosis of the threshold test is then the unit tests' own, so one mistake is named once.
    """
    parts = (part,) if isinstance(part, str) else part
    failed = [t for t in earlier if getattr(t, "part", None) in parts and t.status == "failed" and not t.advice]
    if failed:
        found = "; ".join(f"{t.name}" + (f" ({t.diagnosis})" if t.diagnosis else "") for t in failed[:4])
        more = f" and {len(failed) - 4} more" if len(failed) > 4 else ""
        raise Feedback(f"{summary} The unit tests of this part found: {found}{more}. Training runs the same code, so fix "
                       "those first.", failed[0].diagnosis or diagnosis)
    raise Feedback(f"{summary} {hint}", diagnosis)
