"""Hidden tests: theory.py, dL/db of a tanh RNN computed by hand (4 points).

The student's function is compared with autograd, run here on the trusted side. The file
itself must not use autograd: the `[[forbidden]]` rule of assignment.toml for theory.py bans
autograd (`.backward`, `requires_grad`, `torch.autograd`, `torch.func`, `enable_grad`) there,
statically and at run time, and costs this part when broken.
"""

from __future__ import annotations

import pytest
import torch

from dlgrade.harness import expect

pytestmark = pytest.mark.part("theory")

def instance(gen, h, d, k, t=4):
    x = torch.randn(t, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, k, (t,), generator=gen)
    u = torch.randn(h, d, generator=gen, dtype=torch.float64) / d ** 0.5
    w = torch.randn(h, h, generator=gen, dtype=torch.float64) / h ** 0.5
    v = torch.randn(k, h, generator=gen, dtype=torch.float64) / h ** 0.5
    b = 0.5 * torch.randn(h, generator=gen, dtype=torch.float64)
    c = 0.5 * torch.randn(k, generator=gen, dtype=torch.float64)
    return x, y, u, w, v, b, c


def by_autograd(x, y, u, w, v, b, c, recurrent=True):
    b = b.clone().requires_grad_(True)
    h = torch.zeros_like(b)
    loss = torch.zeros((), dtype=x.dtype)
    for t in range(x.shape[0]):
        h = torch.tanh(u @ x[t] + (w @ h if recurrent else w @ h.detach()) + b)
        loss = loss - torch.log_softmax(v @ h + c, dim=0)[y[t]]
    (grad,) = torch.autograd.grad(loss, b)
    return grad


def check(sub, gen, shapes):
    for h, d, k in shapes:
        args = instance(gen, h, d, k)
        got = sub.call("theory.rnn_bias_gradient", *args)
        want = by_autograd(*args)
        expect.close(got, want, f"rnn_bias_gradient with H={h}, D={d}, K={k}", atol=1e-5, rtol=1e-4, diagnoses={
            "the gradient does not flow back through W h_{t-1} (back-propagation through time is missing)":
                by_autograd(*args, recurrent=False),
            "only the last step's loss is differentiated": by_autograd(args[0][-1:], args[1][-1:], *args[2:]),
        })


@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("Handout, theory: dL/db for a length-4 RNN (a_t = U x_t + W h_{t-1} + b, h_t = tanh(a_t), o_t = V h_t"
                  " + c, L = sum_t CE), derived by hand")
def test_theory_matches_autograd(sub, gen):
    """rnn_bias_gradient: dL/db of the length-4 RNN matches autograd, computed by hand"""
    check(sub, gen, [(5, 3, 4), (3, 6, 2)])


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("Handout, theory: dL/db has the shape of b, (H,)")
def test_theory_shape(sub, gen):
    """rnn_bias_gradient returns a vector of shape (H,) for several sizes"""
    for h, d, k in [(4, 2, 3), (7, 5, 6)]:
        got = sub.call("theory.rnn_bias_gradient", *instance(gen, h, d, k))
        expect.tensor(got, f"rnn_bias_gradient with H={h}", shape=(h,), dtype="float")
        expect.true(bool(got.abs().sum() > 0), "rnn_bias_gradient returned all zeros")
