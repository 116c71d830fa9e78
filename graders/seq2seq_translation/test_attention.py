"""Hidden tests: the decoder's cosine attention and the decoder step that uses it (7 points).

The attention weights are read through the student's own `compute_attention`; the decoder is
checked end to end with the reference's weights transplanted in creation order.
"""

import pytest
import torch

from dlgrade.harness import expect
from dlgrade.harness.params import heatmap, transplant
from graders.seq2seq_translation import _seq2seq_ref as R
from graders.seq2seq_translation._support import MODULES, decoder_step, interface_version, new_decoder

pytestmark = pytest.mark.part("attention")

B, T, H, EMB, V = 4, 7, 6, 5, 9
HINT = " The handout's order: embedding, RNN/LSTM, Linear to the vocabulary, then the attention Linear."

ATTENTION_DIAGNOSES = {
    "dot": "the scores are dot products; use the cosine similarity (divide by both vectors' norms)",
    "key_axis_1": "the softmax is taken over the wrong axis (dim=1, of size 1): take it over the T encoder positions",
    "batch_axis": "the softmax is taken over the batch axis: take it over the T encoder positions",
    "no_softmax": "the cosine similarities are returned without the softmax",
}


def attention_inputs(gen):
    query = 1.5 * torch.randn(1, B, H, generator=gen)
    keys = torch.randn(B, T, H, generator=gen) * torch.linspace(0.3, 3.0, T).reshape(1, T, 1)  # norms differ by position
    return query, keys


def weights_of(sub, gen):
    dec, _ = new_decoder(sub, EMB, H, H, V, "RNN", attention=True)
    query, keys = attention_inputs(gen)
    got = dec.call("compute_attention", query, keys)
    return got, query, keys


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: compute_attention(hidden (1, B, H), encoder_outputs (B, T, H)) -> attention "
                  "probabilities (B, 1, T), a softmax over the T positions")
def test_attention_shape_and_rows(sub, gen, record):
    """compute_attention returns (B, 1, T) weights: non-negative, each row sums to 1 over the encoder positions"""
    got, _, _ = weights_of(sub, gen)
    a = expect.tensor(got, "compute_attention(hidden, encoder_outputs)", shape=(B, 1, T), dtype="float")
    record["heatmaps"] = [heatmap("your attention weights (one row per sentence)", a[:, 0, :], "encoder position", "sentence")]
    expect.true(bool((a >= 0).all()), "some attention weights are negative (they should come out of a softmax)",
                "no softmax on the attention scores")
    sums = a.double().sum(dim=2)
    expect.true(bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-5)),
                "the attention weights of a sentence do not sum to 1 over the encoder positions",
                "softmax over the wrong axis")


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: the attention probabilities come from the cosine similarity of hidden and each encoder "
                  "output, followed by softmax")
def test_attention_cosine_values(sub, gen, record):
    """compute_attention: softmax over positions of the cosine similarity between hidden state and encoder outputs"""
    got, query, keys = weights_of(sub, gen)
    want = R.attention(query, keys)
    if isinstance(got, torch.Tensor) and got.dim() == 3:
        record["heatmaps"] = [heatmap("your attention weights", got[:, 0, :], "encoder position", "sentence"),
                              heatmap("cosine attention", want[:, 0, :], "encoder position", "sentence")]
    expect.close(got, want, "the attention weights",
                 diagnoses={msg: R.attention(query, keys, k) for k, msg in ATTENTION_DIAGNOSES.items()})


DECODER_DIAGNOSES = {
    "concat_order": "the attention Linear reads [embedded input; context]; the handout's order is [context; embedded input]",
    "no_context": "the context vector does not reach the recurrent layer",
    "dot": "the attention uses dot products instead of the cosine similarity",
    "query_cell": "the attention query is the LSTM cell state c; use the hidden state h",
}


V23F_DIAGNOSES = {
    "cell_kept": "with attention the LSTM cell state is kept; this interface replaces it too by the attention-weighted "
                 "encoder outputs",
    "dot": "the attention uses dot products instead of the cosine similarity",
}


def check_decoder(sub, ref, gen, model_type, version, b=B):
    """The decoder step with attention, for a batch of `b` sentences (one sentence included: .squeeze() breaks it)."""
    dec, has_layer = new_decoder(sub, EMB, H, H, V, model_type, attention=True, version=version)
    reference = ref.module(MODULES["decoder"]).Decoder(EMB, H, H, V, dropout=0.0, model_type=model_type,
                                                       attention=has_layer).eval()
    transplant(dec, reference, gen, f"Decoder (model_type={model_type!r}, attention=True)", HINT if has_layer else "")
    token = torch.randint(0, V, (b, 1), generator=gen)
    h = torch.randn(1, b, H, generator=gen)
    state = (h, torch.randn(1, b, H, generator=gen)) if model_type == "LSTM" else h
    keys = attention_inputs(gen)[1][:b]
    what = f"Decoder.forward with attention ({model_type}{', one sentence' if b == 1 else ''})"
    out, new_state = expect.pair(decoder_step(dec, token, state, keys, True), what)
    with torch.no_grad():
        if version == "v23f":  # the cell state's attention may be queried by c or by h: both readings pass
            wants = [R.decoder_step(reference, token, state, keys, True, k, version=version)
                     for k in ((None, "cell_by_h") if model_type == "LSTM" else (None,))]
            variants = {msg: R.decoder_step(reference, token, state, keys, True, k, version=version)[0]
                        for k, msg in V23F_DIAGNOSES.items() if model_type == "LSTM" or k != "cell_kept"}
        else:
            wants = [R.decoder_step(reference, token, state, keys, True)]
            variants = {msg: R.decoder_step(reference, token, state, keys, True, k)[0] for k, msg in DECODER_DIAGNOSES.items()
                        if model_type == "LSTM" or k != "query_cell"}
        without = R.decoder_step(reference, token, state, keys, False)[0] if model_type == "RNN" else None
    expect.true(not (isinstance(out, torch.Tensor) and without is not None and out.shape == without.shape
                     and torch.allclose(out.double(), without.double(), atol=1e-5)),
                "the decoder ignores attention=True: its output is that of the decoder without attention",
                "attention flag ignored")
    expect.close_any(out, [w[0] for w in wants], f"the decoder output with attention ({model_type})", diagnoses=variants)
    got_h = new_state[0] if model_type == "LSTM" and isinstance(new_state, (tuple, list)) else new_state
    expect.close_any(got_h, [w[1][0] if model_type == "LSTM" else w[1] for w in wants],
                     f"the decoder's new hidden state ({model_type})")


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: with attention, the context (attention-weighted sum of encoder outputs) and the embedded"
                  " input go through the attention Linear ([context; embedded input] -> emb_size) into the RNN")
def test_decoder_attention_rnn(sub, ref, gen, config, notes):
    """Decoder with attention (RNN): context from cosine attention, Linear([context; embedded]), then the RNN"""
    version = interface_version(sub, config, notes)
    check_decoder(sub, ref, gen, "RNN", version)
    check_decoder(sub, ref, gen, "RNN", version, b=1)


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: for an LSTM decoder the attention query is the hidden state h only")
def test_decoder_attention_lstm(sub, ref, gen, config, notes):
    """Decoder with attention (LSTM): the query is the hidden state h"""
    version = interface_version(sub, config, notes)
    check_decoder(sub, ref, gen, "LSTM", version)
    check_decoder(sub, ref, gen, "LSTM", version, b=1)
