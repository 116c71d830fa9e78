"""Public tests for Part 2: `Encoder`, `Decoder` (with attention) and `Seq2Seq` (models/seq2seq/).

The tests look layers up by type (the first nn.Embedding, the first nn.RNN / nn.LSTM), not by
name, so you may name your layers as you like.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from checks import assert_close, require

B, T = 3, 6
SRC_V, TGT_V, EMB, ENC_H, DEC_H = 11, 13, 8, 10, 12


def first(model, kind, what):
    for module in model.modules():
        if isinstance(module, kind):
            return module
    raise AssertionError(f"{type(model).__name__} has no {what}")


def split_state(hidden, model_type, what):
    """h of a state: the tensor itself for an RNN, the first of the pair (h, c) for an LSTM."""
    if model_type == "LSTM":
        require(isinstance(hidden, (tuple, list)) and len(hidden) == 2, f"{what} of an LSTM must be the pair (h, c)")
        return hidden[0], hidden[1]
    require(isinstance(hidden, torch.Tensor), f"{what} of an RNN must be a tensor, got {type(hidden).__name__}")
    return hidden, None


def tokens(vocab, batch=B, steps=T):
    x = torch.randint(4, vocab, (batch, steps))
    x[:, 0] = 2  # <sos>
    return x


# ----------------------------------------------------------------------------- Encoder


@pytest.mark.part("encoder")
@pytest.mark.points(1)
@pytest.mark.parametrize("model_type", ["RNN", "LSTM"])
def test_encoder_shapes(student, model_type):
    """Encoder.forward returns output (B, T, encoder_hidden) and hidden (1, B, decoder_hidden)."""
    encoder = student("models.seq2seq.Encoder").Encoder(SRC_V, EMB, ENC_H, DEC_H, dropout=0.0, model_type=model_type).eval()
    result = encoder(tokens(SRC_V))
    require(isinstance(result, (tuple, list)) and len(result) == 2, "Encoder.forward must return (output, hidden)")
    output, hidden = result
    require(tuple(output.shape) == (B, T, ENC_H), f"output has shape {tuple(output.shape)}, expected {(B, T, ENC_H)}")
    h, _ = split_state(hidden, model_type, "hidden")
    require(tuple(h.shape) == (1, B, DEC_H), f"hidden has shape {tuple(h.shape)}, expected (1, B, decoder_hidden) = {(1, B, DEC_H)}")
    require(h.abs().max() <= 1, "the hidden state passed to the decoder must come out of a tanh")


@pytest.mark.part("encoder")
@pytest.mark.points(1)
def test_encoder_lstm_keeps_the_cell_state(student):
    """With an LSTM the cell state c is returned exactly as nn.LSTM produced it."""
    encoder = student("models.seq2seq.Encoder").Encoder(SRC_V, EMB, ENC_H, DEC_H, dropout=0.0, model_type="LSTM").eval()
    x = tokens(SRC_V)
    with torch.no_grad():
        output, hidden = encoder(x)
        _, c = split_state(hidden, "LSTM", "hidden")
        want_out, (_, want_c) = first(encoder, nn.LSTM, "nn.LSTM")(first(encoder, nn.Embedding, "nn.Embedding")(x))
    assert_close(output, want_out, "output", "output is what the LSTM returns for the embedded input")
    assert_close(c, want_c, "c", "return the LSTM's cell state untouched; only h goes through the linear layers")


# ----------------------------------------------------------------------------- Decoder


def make_decoder(student, model_type="RNN", attention=False):
    # cosine attention compares decoder states with encoder outputs, so with attention both
    # have the same size
    enc_h = DEC_H if attention else ENC_H
    module = student("models.seq2seq.Decoder")
    return module.Decoder(EMB, enc_h, DEC_H, TGT_V, dropout=0.0, model_type=model_type, attention=attention).eval()


@pytest.mark.part("decoder")
@pytest.mark.points(1)
@pytest.mark.parametrize("model_type", ["RNN", "LSTM"])
def test_decoder_step_shapes(student, model_type):
    """Decoder.forward: one step, output (B, V) log-probabilities and hidden (1, B, decoder_hidden)."""
    decoder = make_decoder(student, model_type)
    h = torch.randn(1, B, DEC_H).tanh()
    hidden = (h, torch.randn(1, B, DEC_H)) if model_type == "LSTM" else h
    with torch.no_grad():
        result = decoder(tokens(TGT_V, steps=1), hidden)
    require(isinstance(result, (tuple, list)) and len(result) == 2, "Decoder.forward must return (output, hidden)")
    output, new_hidden = result
    require(tuple(output.shape) == (B, TGT_V), f"output has shape {tuple(output.shape)}, expected (B, output_size) = {(B, TGT_V)}")
    require(torch.allclose(output.exp().sum(dim=1), torch.ones(B), atol=1e-5), "output must be log-probabilities (LogSoftmax over dim 1)")
    new_h, _ = split_state(new_hidden, model_type, "the returned hidden")
    require(tuple(new_h.shape) == (1, B, DEC_H), f"hidden has shape {tuple(new_h.shape)}, expected {(1, B, DEC_H)}")


@pytest.mark.part("attention")
@pytest.mark.points(2)
def test_attention_is_softmax_of_cosine_similarity(student):
    """compute_attention returns (B, 1, T) softmax over T of the cosine similarity."""
    decoder = make_decoder(student, attention=True)
    hidden = torch.randn(1, B, DEC_H)
    encoder_outputs = torch.randn(B, T, DEC_H)
    with torch.no_grad():
        weights = decoder.compute_attention(hidden, encoder_outputs)
    require(isinstance(weights, torch.Tensor), "compute_attention must return a tensor")
    require(tuple(weights.shape) == (B, 1, T), f"attention has shape {tuple(weights.shape)}, expected (B, 1, T) = {(B, 1, T)}")
    require(torch.allclose(weights.sum(dim=2), torch.ones(B, 1), atol=1e-5), "attention weights must sum to 1 over the T positions")
    # cosine similarity does not change when an encoder output is scaled by a positive number
    scaled = encoder_outputs * torch.rand(B, T, 1).mul(5).add(0.2)
    with torch.no_grad():
        again = decoder.compute_attention(hidden, scaled)
    require(
        torch.allclose(weights, again, atol=1e-5),
        "the attention changes when encoder outputs are rescaled: use the cosine similarity, not the dot product",
    )
    cosine = F.cosine_similarity(hidden.transpose(0, 1), encoder_outputs, dim=2)  # (B, T)
    assert_close(weights, cosine.softmax(dim=1).unsqueeze(1), "attention weights")


@pytest.mark.part("attention")
@pytest.mark.points(1)
@pytest.mark.parametrize("model_type", ["RNN", "LSTM"])
def test_attention_uses_the_encoder_outputs(student, model_type):
    """With attention, the decoder's output depends on the encoder outputs."""
    decoder = make_decoder(student, model_type, attention=True)
    h = torch.randn(1, B, DEC_H).tanh()
    hidden = (h, torch.randn(1, B, DEC_H)) if model_type == "LSTM" else h
    x = tokens(TGT_V, steps=1)
    with torch.no_grad():
        out_a, _ = decoder(x, hidden, torch.randn(B, T, DEC_H), attention=True)
        out_b, _ = decoder(x, hidden, torch.randn(B, T, DEC_H), attention=True)
    require(tuple(out_a.shape) == (B, TGT_V), f"output has shape {tuple(out_a.shape)}, expected {(B, TGT_V)}")
    require(not torch.allclose(out_a, out_b), "with attention, other encoder outputs must give another prediction")


# ----------------------------------------------------------------------------- Seq2Seq


class RecordingDecoder(nn.Module):
    """Your decoder, with every call's input token and output recorded."""

    def __init__(self, decoder):
        super().__init__()
        self.inner = decoder
        self.output_size = decoder.output_size if hasattr(decoder, "output_size") else TGT_V
        self.inputs, self.outputs = [], []

    def forward(self, input, hidden, *args, **kwargs):
        output, hidden = self.inner(input, hidden, *args, **kwargs)
        self.inputs.append(input.detach().clone())
        self.outputs.append(output.detach().clone())
        return output, hidden


@pytest.mark.part("seq2seq")
@pytest.mark.points(2)
@pytest.mark.parametrize("model_type,attention", [("RNN", False), ("LSTM", True)])
def test_seq2seq_decodes_greedily_from_the_start_token(student, model_type, attention):
    """Seq2Seq.forward returns (B, T, V); starts from source[:, 0], then feeds back the arg-max."""
    enc_h = DEC_H if attention else ENC_H
    encoder = student("models.seq2seq.Encoder").Encoder(SRC_V, EMB, enc_h, DEC_H, dropout=0.0, model_type=model_type)
    decoder = RecordingDecoder(make_decoder(student, model_type, attention))
    model = student("models.seq2seq.Seq2Seq").Seq2Seq(encoder, decoder, "cpu").eval()
    source = tokens(SRC_V)
    with torch.no_grad():
        outputs = model(source)
    require(isinstance(outputs, torch.Tensor), "Seq2Seq.forward must return a tensor")
    require(tuple(outputs.shape) == (B, T, TGT_V), f"outputs have shape {tuple(outputs.shape)}, expected (B, T, V) = {(B, T, TGT_V)}")
    require(len(decoder.inputs) == T, f"the decoder should run once per source position ({T} steps), it ran {len(decoder.inputs)} times")
    require(torch.equal(decoder.inputs[0].reshape(B), source[:, 0]), "the first decoder input must be the start token source[:, 0]")
    for t in range(1, T):
        require(
            torch.equal(decoder.inputs[t].reshape(B), decoder.outputs[t - 1].argmax(dim=1)),
            f"decoder input at step {t} is not the arg-max of the previous step's output (greedy decoding, no teacher forcing)",
        )
        assert_close(outputs[:, t], decoder.outputs[t], f"outputs[:, {t}]", "store each step's decoder output")
