"""Assertions shared by the public tests: short messages that say what to fix."""

import torch


def require(condition, message):
    """Fail the test with `message` (and nothing else) unless `condition` holds."""
    if not condition:
        raise AssertionError(message)


def assert_close(actual, expected, what, hint="", atol=1e-5, rtol=1e-4):
    """Fail with the largest difference and a hint when two tensors differ."""
    require(
        isinstance(actual, torch.Tensor), f"{what} should be a torch.Tensor, got {type(actual)}"
    )
    require(
        actual.shape == expected.shape,
        f"{what} has shape {tuple(actual.shape)}, expected {tuple(expected.shape)}",
    )
    actual = actual.detach().to(expected.dtype)
    if torch.allclose(actual, expected, atol=atol, rtol=rtol):
        return
    diff = (actual - expected).abs()
    where = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
    raise AssertionError(
        f"{what} is wrong: largest difference {diff.max().item():.3g} at index {where} "
        f"(yours {actual[where].item():.5g}, expected {expected[where].item():.5g}). {hint}"
    )
