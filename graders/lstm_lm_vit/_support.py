"""Helpers shared by the hidden tests of lstm_lm_vit (trusted side only; never sent to the worker)."""

from __future__ import annotations

import math
from typing import Any

import torch

from dlgrade.harness import expect
from dlgrade.harness.remote import RemoteObject


def same(actual: Any, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    """Does ``actual`` (anything the worker returned) match ``expected``? Never raises."""
    if not isinstance(actual, torch.Tensor) or tuple(actual.shape) != tuple(expected.shape):
        return False
    return bool(torch.allclose(actual.double(), expected.double(), atol=atol, rtol=rtol))


def randomize(obj: RemoteObject, gen: torch.Generator, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Give every parameter of a remote module fresh random values; returns them by name.

    Matrices get N(0, 1/fan_in) entries (so activations stay O(1) and softmaxes unsaturated);
    vectors get 1 + N(0, 0.5²) when named like a scale (``weight``/``gamma``), N(0, 0.5²) otherwise.
    """
    values: dict[str, torch.Tensor] = {}
    for info in obj.parameters():
        shape = info.shape
        if len(shape) >= 2:
            t = torch.randn(*shape, generator=gen) * (scale / math.sqrt(shape[-1]))
        elif len(shape) == 1:
            t = 0.5 * torch.randn(*shape, generator=gen)
            if info.name.rsplit(".", 1)[-1] in ("weight", "gamma", "scale", "g"):
                t = t + 1.0
        else:
            t = torch.randn((), generator=gen)
        values[info.name] = t
    obj.set_parameters(list(values.values()))
    return values


def close_scalar(actual: Any, expected: float, what: str, diagnoses: dict[str, float] | None = None,
                 atol: float = 1e-5, rtol: float = 1e-4) -> float:
    """A one-number answer (Python number, 0-d or one-element tensor, any float dtype) near ``expected``."""
    value = expect.scalar(actual, what)

    def near(a: float, b: float) -> bool:
        return abs(a - b) <= atol + rtol * abs(b)

    if near(value, expected):
        return value
    for name, alt in (diagnoses or {}).items():
        if near(value, alt) and not near(alt, expected):
            expect.fail(f"{what} is wrong: {name}", name)
    # no difference is shown: with one number it would give the expected value away
    expect.fail(f"{what} does not match the expected value (tolerance {atol:g} + {rtol:g}·|value|)")
    return value
