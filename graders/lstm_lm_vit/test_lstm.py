"""Hidden tests, Problem 1: lstm_solution.LSTM forward (5 points) and loss (4 points), as the handout counts them.

`LSTM.__init__` is given, so parameter names are fixed: the reference model's weights are
copied into the student's model and the two forwards are compared.
"""

import pytest
import torch
import torch.nn.functional as F

from dlgrade.harness import expect
from dlgrade.harness.params import close_scalar, same

pytestmark = pytest.mark.part("lstm")

V, EMB, HID = 50, 16, 24


def models(sub, ref, gen, layers=1):
    """(student model, reference model) with the same random weights, drawn from `gen`."""
    model = ref.module("lstm_solution").LSTM(V, EMB, HID, layers)
    with torch.no_grad():  # every weight non-trivial, the padding row and the biases included
        for name, p in model.named_parameters(remove_duplicate=True):
            if name.startswith("embedding"):
                p.normal_(0.0, 1.0, generator=gen)
            else:
                p.uniform_(-0.3, 0.3, generator=gen)
    student = sub.new("lstm_solution.LSTM", V, EMB, HID, layers)
    student.load_state_dict(model.state_dict())
    return student, model.eval()


def tokens(gen, b=3, t=7):
    return torch.randint(0, V, (b, t), generator=gen)


def states(gen, layers, b=3, scale=0.5):
    return (scale * torch.randn(layers, b, HID, generator=gen), scale * torch.randn(layers, b, HID, generator=gen))


def reference_parts(model, inputs, hidden):
    """log-probabilities, logits and final states of the reference."""
    with torch.no_grad():
        out, (h, c) = model.lstm(model.embedding(inputs), hidden)
        logits = model.classifier(out)
    return F.log_softmax(logits, -1), logits, (h, c)


def run(student, inputs, hidden, layers):
    """The student's forward, checked for structure; returns (log_probas, h, c)."""
    b, t = inputs.shape
    out = student(inputs, hidden)
    log_probas, final = expect.pair(out, "LSTM.forward's return value (log_probas, (h, c))")
    expect.tensor(log_probas, "log_probas", shape=(b, t, V), dtype="float")
    h, c = expect.pair(final, "the returned hidden states (h, c)")
    expect.tensor(h, "the returned h", shape=(layers, b, HID), dtype="float")
    expect.tensor(c, "the returned c", shape=(layers, b, HID), dtype="float")
    return log_probas, h, c


def log_proba_diagnoses(logits):
    return {
        "returns logits, not log-probabilities: apply log_softmax over the vocabulary": logits,
        "returns probabilities, not log-probabilities": logits.softmax(-1),
        "applies log_softmax over the time axis instead of the vocabulary axis": F.log_softmax(logits, 1),
        "applies log_softmax over the batch axis instead of the vocabulary axis": F.log_softmax(logits, 0),
    }


# ------------------------------------------------------------------ forward (5 points)


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P1.1 / INTERFACES: forward(inputs (B, T), hidden_states) returns log_probas (B, T, V) and the final "
                  "(h, c), each (num_layers, B, hidden)")
def test_lstm_forward_shapes(sub, ref, gen):
    """LSTM forward returns log_probas (B, T, V) and (h, c) of shape (layers, B, hidden), for 1 and 2 layers"""
    for layers in (1, 2):
        student, _ = models(sub, ref, gen, layers)
        run(student, tokens(gen), states(gen, layers, scale=0.0), layers)


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1.1: forward uses the given embedding, LSTM and classifier and returns the log-probabilities (not "
                  "the logits) of the next words")
def test_lstm_forward_log_probas(sub, ref, gen):
    """LSTM forward: log-probabilities of the next token match the model's layers, for 1 and 2 layers"""
    for layers in (1, 2):
        student, model = models(sub, ref, gen, layers)
        inputs, hidden = tokens(gen), states(gen, layers, scale=0.0)
        log_probas, _, _ = run(student, inputs, hidden, layers)
        want, logits, _ = reference_parts(model, inputs, hidden)
        expect.close(log_probas, want, f"log_probas of a {layers}-layer LSTM", diagnoses=log_proba_diagnoses(logits))


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1.1: forward returns log-probabilities: their exponentials sum to 1 over the vocabulary")
def test_lstm_forward_normalised(sub, ref, gen):
    """LSTM forward: exp(log_probas) sums to 1 over the vocabulary at every position"""
    student, _ = models(sub, ref, gen)
    log_probas, _, _ = run(student, tokens(gen), states(gen, 1), 1)
    sums = log_probas.double().exp().sum(-1)
    if torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        return
    if bool((log_probas >= 0).all()) and torch.allclose(log_probas.double().sum(-1), torch.ones_like(sums), atol=1e-4):
        expect.fail("log_probas are probabilities (they sum to 1), not log-probabilities: take the log_softmax",
                    "returns probabilities")
    if bool((log_probas > 0).any()):
        expect.fail("log_probas has positive entries, so they are not log-probabilities (did you return logits? "
                    "apply log_softmax over the vocabulary axis)", "returns logits")
    expect.fail("exp(log_probas) does not sum to 1 over the vocabulary axis (the last axis)")


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1.1: forward also returns the final hidden state of the LSTM, (h, c)")
def test_lstm_final_states(sub, ref, gen):
    """LSTM forward: returns the final (h, c) of every layer"""
    layers = 2
    student, model = models(sub, ref, gen, layers)
    inputs, hidden = tokens(gen), states(gen, layers)
    _, h, c = run(student, inputs, hidden, layers)
    _, _, (h_want, c_want) = reference_parts(model, inputs, hidden)
    _, _, (h_zero, c_zero) = reference_parts(model, inputs, tuple(torch.zeros_like(s) for s in hidden))
    start = "returns the initial states it was given instead of the final ones"
    zero = "ignores the hidden_states argument (the LSTM starts from zeros)"
    expect.close(h, h_want, "the returned h", diagnoses={
        "returns (c, h) instead of (h, c)": c_want, start: hidden[0], zero: h_zero})
    expect.close(c, c_want, "the returned c", diagnoses={
        "returns (c, h) instead of (h, c)": h_want, start: hidden[1], zero: c_zero})


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: forward(inputs, hidden_states=(h, c)) runs the LSTM from the hidden states it is given")
def test_lstm_uses_given_states(sub, ref, gen):
    """LSTM forward: starts from the hidden states it is given"""
    layers = 2
    student, model = models(sub, ref, gen, layers)
    inputs, hidden = tokens(gen), states(gen, layers, scale=0.8)
    log_probas, _, _ = run(student, inputs, hidden, layers)
    want, logits, _ = reference_parts(model, inputs, hidden)
    # the form of the output (log-probabilities or not) is graded elsewhere: here only the start matters
    if any(same(log_probas, alt) for alt in log_proba_diagnoses(logits).values()):
        return
    zero_logits = reference_parts(model, inputs, tuple(torch.zeros_like(s) for s in hidden))[1]
    if any(same(log_probas, alt) for alt in [F.log_softmax(zero_logits, -1), *log_proba_diagnoses(zero_logits).values()]):
        expect.fail("log_probas when starting from non-zero hidden states are wrong: your forward ignores the "
                    "hidden_states argument (the LSTM starts from zeros)", "ignores the given hidden states")
    expect.close(log_probas, want, "log_probas when starting from non-zero hidden states")


# ------------------------------------------------------------------ loss (4 points)


def batch(gen, lengths, t=8):
    """Random log-probabilities, targets (0 on padding, as in the data) and a float mask."""
    b = len(lengths)
    log_probas = F.log_softmax(1.5 * torch.randn(b, t, V, generator=gen), -1)
    mask = (torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]).float()  # (B, T)
    targets = torch.randint(1, V, (b, t), generator=gen) * mask.long()
    return log_probas, targets, mask


def loss_parts(log_probas, targets, mask):
    nll = -log_probas.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, T)
    per_seq = (nll * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B,)
    return nll, per_seq


def loss_value(log_probas, targets, mask):
    return float(loss_parts(log_probas, targets, mask)[1].mean())


def loss_diagnoses(log_probas, targets, mask):
    nll, per_seq = loss_parts(log_probas, targets, mask)
    b, t = mask.shape
    real = (mask.sum(1) > 0)
    return {
        "averages over all real tokens of the batch at once; average within each sequence first, then over "
        "the sequences": float((nll * mask).sum() / mask.sum()),
        "padding positions are counted (the mask is not applied)": float(nll.mean()),
        "divides each sequence's NLL by the full length T instead of its number of real tokens":
            float(((nll * mask).sum(1) / t).mean()),
        "sums the NLL instead of averaging it": float((nll * mask).sum()),
        "sums the NLL within each sequence instead of averaging it": float((nll * mask).sum(1).mean()),
        "sums the per-sequence losses over the batch instead of averaging them": float(per_seq.sum()),
        "the sign is wrong (the loss must be the negative log-likelihood)": -float(per_seq.mean()),
        "averages over the non-empty sequences only; a sequence whose mask is all zeros contributes 0 and still "
        "counts in the batch mean": float(per_seq[real].mean()) if bool(real.any()) else float("nan"),
    }


def distinct_lengths(gen, b, t):
    return [int(n) + 1 for n in torch.randperm(t, generator=gen)[:b]]


@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P1.2: loss() returns the mean negative log-likelihood: a single number")
def test_lstm_loss_is_scalar(sub, ref, gen):
    """LSTM.loss returns a single finite number"""
    student, _ = models(sub, ref, gen)
    log_probas, targets, mask = batch(gen, distinct_lengths(gen, 3, 8))
    expect.scalar(student.call("loss", log_probas, targets, mask), "LSTM.loss")


@pytest.mark.points(2.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1.2: per sequence, the mean NLL of the next words over its T real (mask = 1) positions; then "
                  "averaged over the mini-batch")
def test_lstm_loss_value(sub, ref, gen):
    """LSTM.loss: per-sequence mean NLL over the real tokens (mask == 1), averaged over the batch"""
    student, _ = models(sub, ref, gen)
    for lengths in (distinct_lengths(gen, 4, 8), distinct_lengths(gen, 3, 8)):
        log_probas, targets, mask = batch(gen, lengths)
        close_scalar(student.call("loss", log_probas, targets, mask), loss_value(log_probas, targets, mask),
                     f"LSTM.loss for sequences of real lengths {lengths}",
                     loss_diagnoses(log_probas, targets, mask))


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1.2: T may be smaller than 256 because of zero-padding; the padded positions (mask = 0) do not "
                  "count")
def test_lstm_loss_ignores_padding(sub, ref, gen):
    """LSTM.loss: values at padded positions (mask == 0) do not change the loss"""
    student, _ = models(sub, ref, gen)
    log_probas, targets, mask = batch(gen, [8, 3, 5])
    first = expect.scalar(student.call("loss", log_probas, targets, mask), "LSTM.loss")
    pad = mask == 0
    other = log_probas.clone()
    other[pad] = F.log_softmax(4.0 * torch.randn(int(pad.sum()), V, generator=gen), -1)
    other_targets = targets.clone()
    other_targets[pad] = torch.randint(1, V, (int(pad.sum()),), generator=gen)
    second = expect.scalar(student.call("loss", other, other_targets, mask), "LSTM.loss")
    expect.true(abs(first - second) <= 1e-5 + 1e-4 * abs(first),
                "the loss changes when only padded positions (mask == 0) change: padding must not contribute",
                "padding counted in the loss")


@pytest.mark.advice
@pytest.mark.visibility("after_published")
@pytest.mark.spec("Not asked by the handout (its data has no all-padding rows): advice only")
def test_lstm_loss_empty_sequence(sub, ref, gen):
    """Advice: LSTM.loss with a sequence whose mask is all zeros (not in the handout's data) stays finite"""
    student, _ = models(sub, ref, gen)
    log_probas, targets, mask = batch(gen, [6, 0, 3])
    got = student.call("loss", log_probas, targets, mask)
    if isinstance(got, torch.Tensor) and got.numel() == 1 and not bool(torch.isfinite(got).all()):
        expect.fail("LSTM.loss is NaN or inf when one sequence of the batch is all padding: its number of real "
                    "tokens is 0; divide by max(count, 1) so that it contributes 0", "0/0 for an all-padding sequence")
    close_scalar(got, loss_value(log_probas, targets, mask), "LSTM.loss with an all-padding sequence in the batch",
                 loss_diagnoses(log_probas, targets, mask))


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1.2 and training: the loss takes the log-probabilities and is minimised, so its gradient must reach"
                  " them")
def test_lstm_loss_gradient(sub, ref, gen):
    """LSTM.loss: the gradient flows back to the log-probabilities"""
    student, _ = models(sub, ref, gen)
    log_probas, targets, mask = batch(gen, distinct_lengths(gen, 3, 8))
    value = student.call("loss", log_probas, targets, mask)
    expect.scalar(value, "LSTM.loss")
    expect.true(isinstance(value, torch.Tensor),
                "LSTM.loss returns a Python number; it must return a tensor so that the gradient can flow",
                "loss detached (.item())")
    res = student.backward("loss", log_probas, targets, mask, grad_output=torch.ones(value.shape))
    lp = log_probas.clone().requires_grad_(True)
    nll = -lp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    ((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).mean().backward()
    expect.true(res.input_grads[0] is not None and bool(res.input_grads[0].abs().sum() > 0),
                "no gradient flows from LSTM.loss back to log_probas (is the loss detached, e.g. by .item(), "
                ".detach() or numpy?)", "loss detached")
    expect.tensor(res.input_grads[0], "the gradient of LSTM.loss with respect to log_probas", shape=log_probas.shape)
    # the gradient's values are checked only when the loss value is right (that is graded on its own)
    want = loss_value(log_probas, targets, mask)
    if abs(float(value.double().reshape(-1)[0]) - want) <= 1e-5 + 1e-4 * abs(want):
        expect.close(res.input_grads[0], lp.grad, "the gradient of LSTM.loss with respect to log_probas")


@pytest.mark.advice
@pytest.mark.visibility("after_published")
@pytest.mark.spec("Not asked by the handout: a loss that writes into its inputs changes the caller's data; advice only")
def test_lstm_loss_inputs_untouched(sub, ref, gen):
    """Advice: LSTM.loss leaves the log-probabilities, targets and mask it is given unchanged"""
    student, _ = models(sub, ref, gen)
    log_probas, targets, mask = batch(gen, [8, 3, 5])
    student.call("loss", log_probas, targets, mask)
    expect.untouched(sub, "LSTM.loss", ("log_probas", "targets", "mask"))
