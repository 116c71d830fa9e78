"""Hidden tests: models/naive/LSTM.py, an LSTM built from nn.Parameters (5 points)."""

import pytest
import torch

from dlgrade.harness import expect
from dlgrade.harness.params import align, same, transplant
from graders.seq2seq_translation._support import MODULES

pytestmark = pytest.mark.part("lstm")

B, T, D, H = 3, 4, 5, 6
HINT = (" Per gate, in the order i, f, g, o: input weight (input_size, hidden_size), its bias, hidden weight "
        "(hidden_size, hidden_size), its bias.")


def gates_run(ref_lstm, x, variant=None):
    """The LSTM equations on the reference's parameters; `variant` names a known mistake."""
    p = dict(ref_lstm.named_parameters())
    h = x.new_zeros(x.shape[0], H)
    c = x.new_zeros(x.shape[0], H)
    t_hi = (lambda w: w.T) if variant == "transposed" else (lambda w: w)

    def pre(gate, xt, h):
        return xt @ p[f"W_i{gate}"] + p[f"b_i{gate}"] + h @ t_hi(p[f"W_h{gate}"]) + p[f"b_h{gate}"]

    for t in range(x.shape[1]):
        xt = x[:, t]
        i, g, o = torch.sigmoid(pre("i", xt, h)), torch.tanh(pre("g", xt, h)), torch.sigmoid(pre("o", xt, h))
        f = (torch.tanh if variant == "forget_tanh" else torch.sigmoid)(pre("f", xt, h))
        c = (c if variant == "no_forget" else f * c) + i * g
        h = o * (c if variant == "no_tanh" else torch.tanh(c))
    return h, c


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: LSTM from nn.Parameters: for each gate i, f, g, o an input weight (input_size, "
                  "hidden_size) and bias, then a hidden weight (hidden_size, hidden_size) and bias")
def test_lstm_parameters(sub, ref):
    """LSTM: sixteen parameters with the prescribed shapes and creation order"""
    lstm = sub.new("models.naive.LSTM.LSTM", D, H)
    align(lstm.parameters(), list(ref.module(MODULES["lstm"]).LSTM(D, H).named_parameters()), "LSTM", HINT)
    out = expect.pair(lstm(torch.randn(B, T, D)), "LSTM.forward(x)")
    expect.tensor(out[0], "h_t", shape=(B, H), dtype="float")
    expect.tensor(out[1], "c_t", shape=(B, H), dtype="float")


@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: forward(x (B, T, input_size)) runs from zero states and returns (h_t, c_t) of the last "
                  "step; weights used as x @ W")
def test_lstm_final_states(sub, ref, gen):
    """LSTM.forward: the last step's hidden and cell states from zero initial states"""
    lstm = sub.new("models.naive.LSTM.LSTM", D, H)
    reference = ref.module(MODULES["lstm"]).LSTM(D, H)
    transplant(lstm, reference, gen, "LSTM", HINT)
    x = torch.randn(B, T, D, generator=gen)
    h, c = expect.pair(lstm(x), "LSTM.forward(x)")
    with torch.no_grad():
        want_h, want_c = reference(x)
        variants = {name: gates_run(reference, x, name) for name in ("forget_tanh", "no_forget", "no_tanh", "transposed")}
    diag = {
        "forget_tanh": "the forget gate uses tanh; gates use the sigmoid",
        "no_forget": "the previous cell state is not multiplied by the forget gate",
        "no_tanh": "h_t = o_t * c_t: apply tanh to the cell state first",
        "transposed": "the hidden weights are transposed (use h @ W_h, not h @ W_h.T)",
    }
    expect.close(c, want_c, "c_t (the second value returned)", diagnoses={
        "h_t and c_t are returned in the wrong order": want_h,
        **{diag[k]: v[1] for k, v in variants.items()}})
    expect.close(h, want_h, "h_t (the first value returned)", diagnoses={diag[k]: v[0] for k, v in variants.items()})
    for b, t in ((B, T - 2), (1, T)):  # called again: each call starts from zero states (a batch of one too)
        x2 = torch.randn(b, t, D, generator=gen)
        h2, c2 = expect.pair(lstm(x2), f"LSTM.forward(x) called again, on {b} sequence(s) of length {t}")
        with torch.no_grad():
            want_h2, want_c2 = reference(x2)
        expect.true(same(h2, want_h2) and same(c2, want_c2),
                    f"calling forward again (on {b} sequence(s) of length {t}) gives a wrong result: each call starts from "
                    "zero states, and nothing is kept on self between calls", "keeps state between calls")
