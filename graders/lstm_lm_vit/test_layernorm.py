"""Hidden tests, Problem 2.1: vit_solution.LayerNorm (5 points).

The module's `__init__` is given (parameters `weight` and `bias`), so weights are set by name.
Every expected value is computed here from the formula; alternatives for known mistakes let
the message name the mistake without showing numbers.
"""

import pytest
import torch

from dlgrade.harness import expect
from dlgrade.harness.params import same

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


def eps_readings(x, weight, bias):
    """What a LayerNorm may return for inputs of variance O(1) whatever it does with eps: inside the square root,
    outside it, or missing. Where eps goes (and whether it is there) is graded by test_layernorm_eps alone; at this
    scale it changes the output by about 1e-5, right at the tolerance, so at some seeds it would show and at others
    not: every other test accepts all three, so that the mistake costs the same at every seed."""
    return [layer_norm(x, weight, bias), layer_norm(x, weight, bias, eps_outside=True), layer_norm(x, weight, bias, 0.0)]


def expect_values(y, x, weight, bias, what):
    """Values for inputs of variance O(1) (any eps reading, see eps_readings)."""
    if any(same(y, want) for want in eps_readings(x, weight, bias)[1:]):
        return
    expect.close(y, layer_norm(x, weight, bias), what, diagnoses=diagnoses_for(x, weight, bias))


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P2.1 / INTERFACES: LayerNorm(hidden_size) has weight and bias (given __init__); forward keeps the "
                  "input's shape (*dims, H)")
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
@pytest.mark.spec("P2.1: layernorm(x) = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias, E and Var over the last "
                  "dimension, Var the biased estimate")
def test_layernorm_values(sub, gen):
    """LayerNorm: normalises over the last axis with the biased variance, then applies weight and bias"""
    ln, weight, bias = make_layernorm(sub, gen)
    x = 2.0 * torch.randn(3, 5, H, generator=gen) + torch.randn(3, 5, 1, generator=gen)
    expect_values(ln(x), x, weight, bias, "LayerNorm output for a (3, 5, 10) input")


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.1: E[x] and Var[x] are taken only over the last dimension of the tensor, for any leading "
                  "dimensions")
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
@pytest.mark.spec("P2.1: the formula adds eps to the variance inside the square root (LayerNorm(hidden_size, eps))")
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
@pytest.mark.spec("P2.1: weight and bias are learnable affine parameters (gradients reach them and the input)")
def test_layernorm_gradients(sub, gen):
    """LayerNorm: gradients reach the input, the weight and the bias"""
    ln, weight, bias = make_layernorm(sub, gen)
    x = torch.randn(2, 4, H, generator=gen)
    g = torch.randn(2, 4, H, generator=gen)
    res = ln.backward("__call__", x, grad_output=g)
    # the values of the gradients are checked only when the forward is right (it is graded on its own), against
    # the gradients of the eps reading the forward matches (eps is graded by test_layernorm_eps alone)
    want_grads = None
    for eps, outside in ((1e-5, False), (1e-5, True), (0.0, False)):
        if same(res.output, layer_norm(x, weight, bias, eps, eps_outside=outside)):
            xr, wr, br = (t.clone().requires_grad_(True) for t in (x, weight, bias))
            layer_norm(xr, wr, br, eps, eps_outside=outside).backward(g)
            want_grads = (xr.grad, wr.grad, br.grad)
            break
    for i, (what, got) in enumerate([("input", res.input_grads[0]), ("weight", res.param_grads.get("weight")),
                                     ("bias", res.param_grads.get("bias"))]):
        shape = (x, weight, bias)[i].shape
        expect.true(got is not None, f"no gradient reaches the LayerNorm {what}",
                    "the output is detached from the graph (.detach(), .data, .item() or numpy)")
        expect.tensor(got, f"the gradient of the LayerNorm {what}", shape=shape)
        expect.true(bool(got.abs().sum() > 0), f"the gradient of the LayerNorm {what} is zero")
        if want_grads is not None:
            expect.close(got, want_grads[i], f"the gradient of the LayerNorm {what}")


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.1: layernorm(x) is a function of x: the same input gives the same output")
def test_layernorm_same_answer_twice(sub, gen):
    """LayerNorm: gives the same answer when called twice on the same input"""
    ln, weight, bias = make_layernorm(sub, gen)
    x = torch.randn(3, H, generator=gen)
    first = expect.tensor(ln(x), "LayerNorm output", shape=x.shape)
    second = expect.tensor(ln(x), "LayerNorm output", shape=x.shape)
    expect.true(same(first, second), "LayerNorm gives a different output when called a second time on the same input "
                "(it keeps or changes state between calls)", "keeps state between calls")


@pytest.mark.advice
@pytest.mark.visibility("after_published")
@pytest.mark.spec("Not asked by the handout: writing into the input changes the caller's tensor; advice only")
def test_layernorm_input_untouched(sub, gen):
    """Advice: LayerNorm leaves the tensor it is given unchanged"""
    ln, weight, bias = make_layernorm(sub, gen)
    x = torch.randn(3, H, generator=gen)
    ln(x)
    expect.untouched(sub, "LayerNorm", ("inputs",))
