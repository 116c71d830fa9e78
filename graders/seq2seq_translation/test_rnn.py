"""Hidden tests: models/naive/RNN.py, VanillaRNN (4 points)."""

import pytest
import torch

from dlgrade.harness import expect
from dlgrade.harness.params import align, same, transplant
from graders.seq2seq_translation._support import MODULES

pytestmark = pytest.mark.part("rnn")

B, D, H, K = 3, 5, 7, 4  # batch, input, hidden and output sizes all differ, so mixed-up axes show
HINT = " The handout asks for the hidden layer (input + hidden -> hidden) first, then the output layer."


def make(sub, ref, gen):
    rnn = sub.new("models.naive.RNN.VanillaRNN", D, H, K)
    reference = ref.module(MODULES["rnn"]).VanillaRNN(D, H, K)
    transplant(rnn, reference, gen, "VanillaRNN", HINT)
    return rnn, reference


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: VanillaRNN(input_size, hidden_size, output_size): the hidden linear layer is created "
                  "before the output one; forward returns (output (B, output_size), hidden (B, hidden_size))")
def test_rnn_layers(sub, ref):
    """VanillaRNN creates its two linear layers in the prescribed order and sizes"""
    rnn = sub.new("models.naive.RNN.VanillaRNN", D, H, K)
    align(rnn.parameters(), list(ref.module(MODULES["rnn"]).VanillaRNN(D, H, K).named_parameters()), "VanillaRNN", HINT)
    x, h = torch.randn(B, D), torch.randn(B, H)
    out = expect.pair(rnn(x, h), "VanillaRNN.forward(input, hidden)")
    expect.tensor(out[0], "the output", shape=(B, K), dtype="float")
    expect.tensor(out[1], "the new hidden state", shape=(B, H), dtype="float")


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: output = log-softmax of a linear map of [input; hidden]; new hidden = tanh of a linear "
                  "map of [input; hidden]")
def test_rnn_forward_values(sub, ref, gen):
    """VanillaRNN.forward: log-softmax output and tanh hidden state, both from [input; hidden]"""
    rnn, reference = make(sub, ref, gen)
    x, h = torch.randn(B, D, generator=gen), torch.randn(B, H, generator=gen)
    out, new_h = expect.pair(rnn(x, h), "VanillaRNN.forward(input, hidden)")
    with torch.no_grad():
        want_out, want_h = reference(x, h)
        combined = torch.cat((x, h), dim=1)
        pre_h = reference.hidden_layer(combined)
        scores = reference.output_layer(combined)
        from_new = reference.output_layer(torch.cat((x, torch.tanh(pre_h)), dim=1))
    expect.close(new_h, want_h, "the new hidden state", diagnoses={
        "uses ReLU instead of tanh": torch.relu(pre_h),
        "no tanh is applied": pre_h,
    })
    expect.close(out, want_out, "the output", diagnoses={
        "returns probabilities (softmax) instead of log-probabilities (log-softmax)": torch.softmax(scores, dim=1),
        "returns raw scores: apply log-softmax": scores,
        "the log-softmax is taken over the batch (dim=0) instead of the classes": torch.log_softmax(scores, dim=0),
        "the output is computed from the NEW hidden state; it reads [input; previous hidden]": torch.log_softmax(from_new, dim=1),
    })
    expect.true(same(rnn(x, h)[0], want_out), "calling forward twice with the same inputs gives different outputs",
                "keeps state between calls")
    h2 = torch.randn(B, H, generator=gen)  # the state comes from the caller: a second call with another hidden state
    out2, new_h2 = expect.pair(rnn(x, h2), "VanillaRNN.forward(input, hidden) called again with another hidden state")
    with torch.no_grad():
        want_out2, want_h2 = reference(x, h2)
    expect.true(same(out2, want_out2) and same(new_h2, want_h2),
                "a second call of forward with another hidden state does not use that state: the hidden state must come "
                "from the `hidden` argument, not from one kept on self between calls", "keeps state between calls")
