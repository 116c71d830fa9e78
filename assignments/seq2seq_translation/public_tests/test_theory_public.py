"""Public tests for Part 4: `rnn_bias_gradient` in theory.py (∂L/∂b of a length-4 tanh RNN, by hand)."""

import ast
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from checks import assert_close, require

pytestmark = pytest.mark.part("theory")
D, H, K = 3, 5, 4
AUTOGRAD_NAMES = {"autograd", "backward", "requires_grad", "requires_grad_", "grad", "enable_grad", "func"}


def problem(seed):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, D, generator=gen)
    y = torch.randint(0, K, (4,), generator=gen)
    U, W, V = (torch.randn(*shape, generator=gen) * 0.7 for shape in ((H, D), (H, H), (K, H)))
    b, c = torch.randn(H, generator=gen) * 0.3, torch.randn(K, generator=gen) * 0.3
    return x, y, U, W, V, b, c


def autograd_gradient(x, y, U, W, V, b, c):
    """What the hand derivation must give, computed here with autograd."""
    b = b.clone().requires_grad_(True)
    h = torch.zeros(H)
    loss = 0.0
    for t in range(4):
        h = torch.tanh(U @ x[t] + W @ h + b)
        loss = loss + F.cross_entropy((V @ h + c).unsqueeze(0), y[t : t + 1])
    (grad,) = torch.autograd.grad(loss, b)
    return grad


@pytest.mark.points(2)
@pytest.mark.parametrize("seed", [0, 1])
def test_bias_gradient_matches_autograd(student, seed):
    """rnn_bias_gradient returns dL/db (H,), summed over the four steps, through time."""
    args = problem(seed)
    got = student("theory").rnn_bias_gradient(*(a.clone() for a in args))
    require(isinstance(got, torch.Tensor), f"rnn_bias_gradient must return a tensor, got {type(got).__name__}")
    require(tuple(got.shape) == (H,), f"dL/db has shape {tuple(got.shape)}, expected (H,) = {(H,)}")
    assert_close(
        got,
        autograd_gradient(*args),
        "dL/db",
        "L sums the loss of all four steps, and b reaches step t through every earlier step too",
        atol=1e-4,
    )


@pytest.mark.points(0)
def test_theory_does_not_use_autograd(student):
    """theory.py computes the gradient by hand: no torch.autograd, .backward() or requires_grad."""
    tree = ast.parse(Path(student("theory").__file__).read_text())
    found = sorted(
        {node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in AUTOGRAD_NAMES}
        | {node.lineno for node in ast.walk(tree) if isinstance(node, ast.keyword) and node.arg == "requires_grad"}
    )
    require(not found, f"theory.py uses autograd on lines {found}; the autograder gives 0 for the theory code if it does")
