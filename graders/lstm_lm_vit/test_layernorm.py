"""Hidden tests, Problem 2.1: vit_solution.LayerNorm (5 points).

The module's `__init__` is given (parameters `weight` and `bias`), so weights are set by name.
Every expected value is computed here from the formula; alternatives for known mistakes let
the message name the mistake without showing numbers.
"""

import pytest
import torch

from dlgrade.errors import StudentCodeError
from dlgrade.harness import expect
from graders.lstm_lm_vit._support import same

pytestmark = pytest.mark.part("layernorm")

H = 10  # normalised width


def layer_norm(x, weight, bias, eps=1e-5, unbiased=False, eps_outside=False, dims=(-1,)):
    """The formula, with switches for the usual mistakes."""
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
    std = var.sqrt() + eps if eps_outside else (var + eps).sqrt()
    return (x - mean) / std * weight + bias


def make_layernorm(sub, gen, hidden=H, eps=None):
    """A student LayerNorm with random (non-trivial) weight and bias; returns (remote, weight, bias)."""
    ln = sub.new("vit_solution.LayerNorm", hidden) if eps is None else sub.new("vit_solution.LayerNorm", hidden, eps=eps)
    weight = 1.0 + 0.5 * torch.randn(hidden, generator=gen)
    bias = 0.5 * torch.randn(hidden, generator=gen)
    ln.load_state_dict({"weight": weight, "bias": bias})
    return ln, weight, bias


def diagnoses_for(x, weight, bias, eps=1e-5):
    n = layer_norm(x, torch.ones_like(weight), torch.zeros_like(bias), eps)
    out = {
        "uses the unbiased variance (divides by n - 1); LayerNorm uses the biased one (divides by n)":
            layer_norm(x, weight, bias, eps, unbiased=True),
        "adds eps to the standard deviation instead of to the variance inside the square root":
            layer_norm(x, weight, bias, eps, eps_outside=True),
        "does not apply weight and bias after normalising": n,
        "does not multiply by weight": n + bias,
        "does not add bias": n * weight,
    }
    for d in range(x.dim() - 1):
        out[f"normalises over axis {d} instead of the last axis"] = layer_norm(x, weight, bias, eps, dims=(d,))
    if x.dim() >= 3:
        out["normalises over all non-batch axes instead of only the last axis"] = \
            layer_norm(x, weight, bias, eps, dims=tuple(range(1, x.dim())))
    return out


def expect_values(y, x, weight, bias, what):
    """Values for inputs of variance O(1). Where eps goes is graded by test_layernorm_eps alone: at this
    scale it changes the output by about 1e-5, right at the tolerance, so both placements are accepted."""
    if same(y, layer_norm(x, weight, bias, eps_outside=True)):
        return
    expect.close(y, layer_norm(x, weight, bias), what, diagnoses=diagnoses_for(x, weight, bias))


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
def test_layernorm_shapes(sub, gen):
    """LayerNorm: keeps its weight and bias of shape (hidden_size,) and returns the input's shape"""
    ln = sub.new("vit_solution.LayerNorm", H)
    params = {p.name: p for p in ln.parameters()}
    for name in ("weight", "bias"):
        expect.true(name in params, f"LayerNorm has no parameter named {name!r} (it is created in the given __init__)")
        expect.true(params[name].shape == (H,),
                    f"LayerNorm.{name} has shape {params[name].shape}, expected {(H,)}")
    for shape in [(3, H), (2, 4, H), (2, 3, 2, H)]:
        x = torch.randn(*shape, generator=gen)
        expect.tensor(ln(x), f"LayerNorm output for a {len(shape)}-D input {shape}", shape=shape, dtype="float")


@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
def test_layernorm_values(sub, gen):
    """LayerNorm: normalises over the last axis with the biased variance, then applies weight and bias"""
    ln, weight, bias = make_layernorm(sub, gen)
    x = 2.0 * torch.randn(3, 5, H, generator=gen) + torch.randn(3, 5, 1, generator=gen)
    expect_values(ln(x), x, weight, bias, "LayerNorm output for a (3, 5, 10) input")


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
def test_layernorm_leading_dims(sub, gen):
    """LayerNorm: works for any number of leading dimensions (2-D and 4-D inputs)"""
    ln, weight, bias = make_layernorm(sub, gen)
    for shape in [(6, H), (2, 3, 4, H)]:
        x = torch.randn(*shape, generator=gen) + torch.randn(*shape[:-1], 1, generator=gen)
        expect_values(ln(x), x, weight, bias, f"LayerNorm output for a {len(shape)}-D input {shape}")


def expect_eps_right(y, x, weight, bias, eps, what, extra):
    """The placement and value of eps, whichever variance estimator is used (that one is graded elsewhere)."""
    if any(same(y, layer_norm(x, weight, bias, eps, unbiased=u)) for u in (False, True)):
        return
    for unbiased in (False, True):
        alts = {  # first match wins: the specific names come first
            **{name: layer_norm(x, weight, bias, value, unbiased=unbiased) for name, value in extra.items()},
            "adds eps to the standard deviation instead of to the variance inside the square root":
                layer_norm(x, weight, bias, eps, unbiased=unbiased, eps_outside=True),
            "does not add eps at all": layer_norm(x, weight, bias, 0.0, unbiased=unbiased),
        }
        for name, alt in alts.items():
            if same(y, alt):
                expect.fail(f"{what} is wrong: {name}", name)
    expect.close(y, layer_norm(x, weight, bias, eps), what, diagnoses=diagnoses_for(x, weight, bias, eps))


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
def test_layernorm_eps(sub, gen):
    """LayerNorm: adds eps to the variance inside the square root and uses the eps it was given"""
    # variances near eps make the placement of eps visible; a constant row has variance 0
    ln, weight, bias = make_layernorm(sub, gen)
    x = 3e-3 * torch.randn(4, H, generator=gen)
    x[1] = 0.25
    y = ln(x)
    expect.tensor(y, "LayerNorm output", shape=x.shape, finite=False)
    expect.true(bool(torch.isfinite(y).all()),
                "LayerNorm returns NaN or inf for a row whose values are all equal (variance 0)",
                "eps missing: a zero variance divides by zero")
    expect_eps_right(y, x, weight, bias, 1e-5, "LayerNorm output for inputs whose variance is close to eps", {})
    # a non-default eps must be the one used
    ln, weight, bias = make_layernorm(sub, gen, eps=0.05)
    x = torch.randn(2, 3, H, generator=gen)
    expect_eps_right(ln(x), x, weight, bias, 0.05, "LayerNorm(hidden_size, eps=0.05) output",
                     {"ignores the eps argument (uses a fixed 1e-5 instead of self.eps)": 1e-5})


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
def test_layernorm_gradients(sub, gen):
    """LayerNorm: gradients reach the input, the weight and the bias"""
    ln, weight, bias = make_layernorm(sub, gen)
    x = torch.randn(2, 4, H, generator=gen)
    g = torch.randn(2, 4, H, generator=gen)
    res = ln.backward("__call__", x, grad_output=g)
    xr, wr, br = (t.clone().requires_grad_(True) for t in (x, weight, bias))
    layer_norm(xr, wr, br).backward(g)
    # the values of the gradients are checked only when the forward is right (it is graded on its own)
    forward_right = same(res.output, layer_norm(x, weight, bias))
    for what, got, want in [("input", res.input_grads[0], xr.grad),
                            ("weight", res.param_grads.get("weight"), wr.grad),
                            ("bias", res.param_grads.get("bias"), br.grad)]:
        expect.true(got is not None, f"no gradient reaches the LayerNorm {what}",
                    "the output is detached from the graph (.detach(), .data, .item() or numpy)")
        expect.tensor(got, f"the gradient of the LayerNorm {what}", shape=want.shape)
        expect.true(bool(got.abs().sum() > 0), f"the gradient of the LayerNorm {what} is zero")
        if forward_right:
            expect.close(got, want, f"the gradient of the LayerNorm {what}")


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
def test_layernorm_input_untouched(sub, gen):
    """LayerNorm: does not write into its input and gives the same answer when called twice"""
    ln, weight, bias = make_layernorm(sub, gen)
    x = torch.randn(3, H, generator=gen)
    # The input arrives as a leaf tensor that requires grad: autograd refuses in-place writes to it.
    try:
        ln.backward("__call__", x, grad_output=torch.ones(3, H))
    except StudentCodeError as exc:
        if "in-place" in str(exc) or "inplace" in str(exc):
            expect.fail("LayerNorm modifies its input tensor in place (e.g. `inputs -= mean`); "
                        "the caller's tensor must be left untouched, so compute on new tensors",
                        "writes into its input")
        raise
    first = expect.tensor(ln(x), "LayerNorm output", shape=x.shape)
    second = expect.tensor(ln(x), "LayerNorm output", shape=x.shape)
    expect.true(same(first, second), "LayerNorm gives a different output when called a second time on the same input "
                "(it keeps or changes state between calls)")
