"""Public tests for Part 1: `VanillaRNN` (models/naive/RNN.py) and `LSTM` (models/naive/LSTM.py).

Run them from the release folder with `python -m pytest public_tests` (or `dlgrade check`).
"""

import ast
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from checks import assert_close, require

B, D, H, K, T = 3, 5, 7, 4, 6
RECURRENT_BUILTINS = {"RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell"}


def builtin_recurrent_uses(module):
    """Lines of the file where nn.RNN / nn.LSTM / their cells are used."""
    tree = ast.parse(Path(module.__file__).read_text())
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr in RECURRENT_BUILTINS]


def pair(result, what):
    require(
        isinstance(result, (tuple, list)) and len(result) == 2,
        f"{what} must return a pair, got {type(result).__name__}",
    )
    return result


# ----------------------------------------------------------------------------- VanillaRNN


@pytest.fixture
def rnn(student):
    return student("models.naive.RNN").VanillaRNN(D, H, K)


def linear_layers(model):
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    require(
        len(layers) == 2,
        f"VanillaRNN should hold two nn.Linear layers (hidden, then output); found {len(layers)}",
    )
    return layers


@pytest.mark.part("rnn")
@pytest.mark.points(1)
def test_rnn_shapes_and_log_probabilities(rnn):
    """VanillaRNN.forward returns (output (B, K) log-probabilities, hidden (B, H))."""
    output, hidden = pair(rnn(torch.randn(B, D), torch.randn(B, H)), "VanillaRNN.forward")
    require(tuple(output.shape) == (B, K), f"output has shape {tuple(output.shape)}, expected (B, output_size) = {(B, K)}")
    require(tuple(hidden.shape) == (B, H), f"hidden has shape {tuple(hidden.shape)}, expected (B, hidden_size) = {(B, H)}")
    require(
        torch.allclose(output.exp().sum(dim=1), torch.ones(B), atol=1e-5),
        "exp(output) must sum to 1 over the output axis: return log_softmax(..., dim=1)",
    )
    require(hidden.abs().max() <= 1, "the new hidden state must come out of a tanh (values in [-1, 1])")


@pytest.mark.part("rnn")
@pytest.mark.points(2)
def test_rnn_matches_the_equations(rnn, student):
    """hidden = tanh(L1([x; h])), output = log_softmax(L2([x; h])), L1 created first."""
    x, h = torch.randn(B, D), torch.randn(B, H)
    output, hidden = pair(rnn(x, h), "VanillaRNN.forward")
    hidden_layer, output_layer = linear_layers(rnn)
    require(
        hidden_layer.out_features == H and output_layer.out_features == K,
        "create the hidden layer (-> hidden_size) before the output layer (-> output_size)",
    )
    combined = torch.cat([x, h], dim=1)  # (B, D + H)
    with torch.no_grad():
        assert_close(hidden, torch.tanh(hidden_layer(combined)), "hidden", "hidden = tanh(Linear([input; hidden]))")
        assert_close(output, F.log_softmax(output_layer(combined), dim=1), "output", "output = log_softmax(Linear([input; hidden]))")
    found = builtin_recurrent_uses(student("models.naive.RNN"))
    require(not found, f"RNN.py uses built-in recurrent modules (lines {found}); write the cell with nn.Linear")


# ----------------------------------------------------------------------------- LSTM


@pytest.fixture
def lstm(student):
    return student("models.naive.LSTM").LSTM(D, H)


def gate_parameters(model):
    """(input weight, input bias, hidden weight, hidden bias) per gate i, f, g, o.

    Weights and biases are taken in creation order separately, so both "weight, bias, weight,
    bias" per gate and "all weights, then all biases" work.
    """
    params = list(model.parameters())
    weights = [p for p in params if p.dim() == 2]
    biases = [p for p in params if p.dim() == 1]
    require(
        len(weights) == 8 and len(biases) == 8,
        f"LSTM should create 8 weight matrices and 8 bias vectors with nn.Parameter; found {len(weights)} and {len(biases)}",
    )
    gates = []
    for g in range(4):
        w_i, w_h = weights[2 * g], weights[2 * g + 1]
        b_i, b_h = biases[2 * g], biases[2 * g + 1]
        require(
            tuple(w_i.shape) == (D, H) and tuple(w_h.shape) == (H, H),
            f"gate {'ifgo'[g]}: expected an input weight (input_size, hidden_size) = {(D, H)} then a hidden weight "
            f"(hidden_size, hidden_size) = {(H, H)}, found {tuple(w_i.shape)} and {tuple(w_h.shape)}",
        )
        require(tuple(b_i.shape) == (H,) and tuple(b_h.shape) == (H,), f"gate {'ifgo'[g]}: biases must have shape (hidden_size,)")
        gates.append((w_i, b_i, w_h, b_h))
    return gates


def lstm_by_hand(gates, x):
    Bx, Tx, _ = x.shape
    h, c = torch.zeros(Bx, H), torch.zeros(Bx, H)
    for t in range(Tx):
        pre = [x[:, t] @ w_i + b_i + h @ w_h + b_h for w_i, b_i, w_h, b_h in gates]  # 4 x (B, H)
        i, f, g, o = torch.sigmoid(pre[0]), torch.sigmoid(pre[1]), torch.tanh(pre[2]), torch.sigmoid(pre[3])
        c = f * c + i * g
        h = o * torch.tanh(c)
    return h, c


@pytest.mark.part("lstm")
@pytest.mark.points(1)
def test_lstm_parameters_and_shapes(lstm, student):
    """LSTM creates 16 nn.Parameters and forward returns (h_T, c_T), each (B, H)."""
    gate_parameters(lstm)
    h, c = pair(lstm(torch.randn(B, T, D)), "LSTM.forward")
    require(tuple(h.shape) == (B, H) and tuple(c.shape) == (B, H), f"h and c must be (B, hidden_size) = {(B, H)}")
    found = builtin_recurrent_uses(student("models.naive.LSTM"))
    require(not found, f"LSTM.py uses built-in recurrent modules (lines {found}); write the gates with nn.Parameter")


@pytest.mark.part("lstm")
@pytest.mark.points(3)
def test_lstm_matches_the_equations(lstm):
    """forward runs the gate equations from zero states, weights applied as x @ W."""
    gates = gate_parameters(lstm)
    with torch.no_grad():
        for p in lstm.parameters():  # non-zero biases so that a missing bias shows
            p.add_(torch.randn_like(p) * 0.3)
    x = torch.randn(B, T, D)
    with torch.no_grad():
        h, c = pair(lstm(x), "LSTM.forward")
        want_h, want_c = lstm_by_hand(gates, x)
    assert_close(c, want_c, "c_T", "check each gate's activation and c_t = f * c_prev + i * g")
    assert_close(h, want_h, "h_T", "h_t = o * tanh(c_t)")
