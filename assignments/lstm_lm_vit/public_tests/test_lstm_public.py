"""Public tests for Problem 1: `LSTM.forward` and `LSTM.loss` in lstm_solution.py.

Run them from the release folder with `python -m pytest` (or `dlgrade check`). The models
here are tiny, so the whole file runs in a second or two on a CPU.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from checks import assert_close, require

pytestmark = pytest.mark.part("lstm")

VOCAB, EMBED, HIDDEN, LAYERS = 23, 10, 12, 2
BATCH, STEPS = 3, 7


@pytest.fixture
def model(lstm_solution):
    """A tiny LSTM language model, in eval mode."""
    model = lstm_solution.LSTM(
        vocabulary_size=VOCAB,
        embedding_size=EMBED,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        learn_embeddings=True,
    )
    return model.eval()


def random_tokens(batch=BATCH, steps=STEPS):
    return torch.randint(1, VOCAB, (batch, steps))


def random_states():
    h = torch.randn(LAYERS, BATCH, HIDDEN) * 0.5
    c = torch.randn(LAYERS, BATCH, HIDDEN) * 0.5
    return h, c


def expected_forward(model, inputs, states):
    """What forward must compute, written with the modules the given __init__ builds."""
    with torch.no_grad():
        outputs, (h, c) = model.lstm(model.embedding(inputs), states)  # (B, T, H)
        log_probas = F.log_softmax(model.classifier(outputs), dim=-1)  # (B, T, V)
    return log_probas, (h, c)


def run_forward(model, inputs, states):
    """Call the student's forward and check the structure of what comes back."""
    with torch.no_grad():
        result = model(inputs, states)
    require(
        isinstance(result, (tuple, list)) and len(result) == 2,
        f"LSTM.forward must return a pair (log_probas, (h, c)); got {type(result).__name__}",
    )
    log_probas, final = result
    require(
        isinstance(final, (tuple, list)) and len(final) == 2,
        "the second value returned by LSTM.forward must be the pair (h, c) of final states",
    )
    return log_probas, tuple(final)


@pytest.mark.points(1)
def test_lstm_forward_shapes(model):
    """forward returns log-probabilities (B, T, V) and final states (layers, B, H)."""
    inputs = random_tokens()
    log_probas, (h, c) = run_forward(model, inputs, model.initial_states(BATCH))
    require(isinstance(log_probas, torch.Tensor), "log_probas must be a tensor")
    require(
        log_probas.shape == (BATCH, STEPS, VOCAB),
        f"log_probas has shape {tuple(log_probas.shape)}; expected (batch, time, vocabulary) = "
        f"{(BATCH, STEPS, VOCAB)}. The LSTM is built with batch_first=True.",
    )
    for name, state in (("h", h), ("c", c)):
        require(
            state.shape == (LAYERS, BATCH, HIDDEN),
            f"final state {name} has shape {tuple(state.shape)}; expected "
            f"(num_layers, batch, hidden_size) = {(LAYERS, BATCH, HIDDEN)}",
        )


@pytest.mark.points(1)
def test_lstm_forward_returns_log_probabilities(model):
    """forward returns log-probabilities: exp() of each row sums to 1 over the vocabulary."""
    log_probas, _ = run_forward(model, random_tokens(), model.initial_states(BATCH))
    row_sums = log_probas.exp().sum(dim=-1)  # (B, T)
    if torch.allclose(log_probas.sum(dim=-1), torch.ones(BATCH, STEPS), atol=1e-4):
        raise AssertionError(
            "forward returns probabilities (rows sum to 1); it must return their logarithm "
            "(use log_softmax over the vocabulary axis)"
        )
    require(
        torch.allclose(row_sums, torch.ones(BATCH, STEPS), atol=1e-4),
        "exp(log_probas) does not sum to 1 over the vocabulary axis (sums range from "
        f"{row_sums.min().item():.3g} to {row_sums.max().item():.3g}). Return log_softmax of the "
        "classifier's output over the last axis, not the raw logits.",
    )
    require((log_probas <= 1e-6).all(), "log-probabilities must be <= 0")


@pytest.mark.points(2)
def test_lstm_forward_matches_given_modules(model):
    """forward chains embedding -> lstm -> classifier -> log-softmax."""
    inputs = random_tokens()
    states = model.initial_states(BATCH)
    log_probas, _ = run_forward(model, inputs, states)
    want, _ = expected_forward(model, inputs, states)
    assert_close(
        log_probas,
        want,
        "log_probas",
        "Expected log_softmax(classifier(lstm(embedding(inputs), hidden_states).output)) "
        "over the vocabulary axis.",
    )


@pytest.mark.points(1)
def test_lstm_forward_uses_and_returns_states(model):
    """forward starts from the given (h, c) and returns the states after the last step."""
    inputs = random_tokens()
    states = random_states()
    log_probas, (h, c) = run_forward(model, inputs, states)
    want, (want_h, want_c) = expected_forward(model, inputs, states)
    zero_start, _ = expected_forward(model, inputs, model.initial_states(BATCH))
    if torch.allclose(log_probas, zero_start, atol=1e-5):
        raise AssertionError(
            "forward ignores its hidden_states argument: pass (h, c) to self.lstm so that a "
            "sequence can continue from where the previous chunk stopped"
        )
    assert_close(log_probas, want, "log_probas (starting from non-zero states)")
    assert_close(h, want_h, "final h", "Return the (h, c) that self.lstm returns.")
    assert_close(c, want_c, "final c", "Return the (h, c) that self.lstm returns.")

    # Feeding the sequence in two chunks, carrying the state, must give the same outputs.
    first, state_mid = run_forward(model, inputs[:, :4], states)
    second, _ = run_forward(model, inputs[:, 4:], state_mid)
    assert_close(
        torch.cat([first, second], dim=1),
        want,
        "log_probas of a sequence fed in two chunks",
        "The final states returned for the first chunk must let the second chunk continue.",
    )


def make_batch(lengths, steps=STEPS, vocab=VOCAB):
    """Random log-probabilities, targets and a float mask with the given real lengths."""
    log_probas = F.log_softmax(torch.randn(len(lengths), steps, vocab) * 2, dim=-1)
    targets = torch.randint(1, vocab, (len(lengths), steps))
    mask = (torch.arange(steps)[None, :] < torch.tensor(lengths)[:, None]).float()  # (B, T)
    targets = targets * mask.long()  # padding targets are id 0, as in the data
    return log_probas, targets, mask


def expected_loss(log_probas, targets, mask):
    """Per-sequence mean NLL over real positions, then the mean over sequences."""
    per_sequence = []
    for b in range(targets.shape[0]):
        nll = [-log_probas[b, t, targets[b, t]] for t in range(targets.shape[1]) if mask[b, t] == 1]
        per_sequence.append(torch.stack(nll).mean())
    return torch.stack(per_sequence).mean()


def as_scalar(loss, what="LSTM.loss"):
    require(isinstance(loss, torch.Tensor), f"{what} must return a tensor, got {type(loss)}")
    require(
        loss.dim() == 0, f"{what} must return a scalar (0-d tensor), got shape {tuple(loss.shape)}"
    )
    return loss


@pytest.mark.points(2)
def test_lstm_loss_matches_formula(model):
    """loss averages the NLL over each sequence's real tokens, then over the batch."""
    log_probas, targets, mask = make_batch([7, 3, 5, 1])
    log_probas.requires_grad_(True)
    loss = as_scalar(model.loss(log_probas, targets, mask))
    want = expected_loss(log_probas.detach(), targets, mask)

    nll = -log_probas.detach().gather(-1, targets[..., None]).squeeze(-1)  # (B, T)
    token_mean = (nll * mask).sum() / mask.sum()
    if torch.isclose(loss.detach().double(), token_mean.double(), atol=1e-5):
        raise AssertionError(
            "loss averages over all real tokens of the batch at once; average over each "
            "sequence's own real tokens first, then average those per-sequence means"
        )
    if torch.isclose(loss.detach().double(), -want.double(), atol=1e-5):
        raise AssertionError("loss has the wrong sign: it is the *negative* log-likelihood")
    assert_close(loss, want, "loss", "See the formula in the handout.")
    loss.backward()
    require(
        log_probas.grad is not None and log_probas.grad.abs().sum() > 0,
        "no gradient reaches log_probas: build the loss from torch operations on log_probas "
        "(no .item(), .numpy() or .detach())",
    )


@pytest.mark.points(1)
def test_lstm_loss_ignores_padding(model):
    """positions where mask == 0 do not change the loss."""
    log_probas, targets, mask = make_batch([6, 2, 4])
    loss = as_scalar(model.loss(log_probas, targets, mask))
    padded = mask == 0
    other_log_probas = log_probas.clone()
    other_log_probas[padded] = F.log_softmax(torch.randn(int(padded.sum()), VOCAB) * 5, dim=-1)
    other_targets = targets.clone()
    other_targets[padded] = torch.randint(1, VOCAB, (int(padded.sum()),))
    other = as_scalar(model.loss(other_log_probas, other_targets, mask))
    require(
        torch.isclose(loss.detach().double(), other.detach().double(), atol=1e-5),
        "the loss changes when only padded positions (mask == 0) change: multiply the "
        "per-position NLL by the mask and divide by the number of real positions",
    )


@pytest.mark.points(1)
def test_lstm_loss_small_example(model):
    """a two-sequence example small enough to check by hand."""
    # Sequence 0 has two real targets with probabilities 1/2 and 1/4: mean NLL 1.5 ln 2.
    # Sequence 1 has one real target with probability 1/8: mean NLL 3 ln 2.
    # The loss is the mean of the two: 2.25 ln 2 (the mean over all 3 tokens would be 2 ln 2).
    probas = torch.tensor(
        [
            [[0.25, 0.5, 0.25], [0.5, 0.25, 0.25]],
            [[0.125, 0.75, 0.125], [0.2, 0.4, 0.4]],
        ]
    )
    targets = torch.tensor([[1, 2], [2, 0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss = as_scalar(model.loss(probas.log(), targets, mask))
    want = 2.25 * math.log(2)
    require(
        abs(loss.item() - want) < 1e-5,
        f"loss is {loss.item():.6f}, expected 2.25 ln 2 = {want:.6f} (see the comment in this "
        "test for the arithmetic)",
    )
