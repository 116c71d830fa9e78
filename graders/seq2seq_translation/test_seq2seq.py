"""Hidden tests: models/seq2seq Encoder, Decoder (without attention) and the greedy Seq2Seq loop (12 points)."""

import pytest
import torch

from dlgrade.harness import expect
from dlgrade.harness.params import transplant
from graders.seq2seq_translation import _seq2seq_ref as R
from graders.seq2seq_translation._support import MODULES, decoder_step, interface_version, new_decoder, new_seq2seq

pytestmark = pytest.mark.part("seq2seq")

B, T, V_SRC, V_TGT, EMB = 3, 5, 11, 9, 5
ENC_HINT = " The handout's order: embedding, RNN/LSTM, Linear, Linear (the ReLU and dropout have no parameters)."
DEC_HINT = " The handout's order: embedding, RNN/LSTM, Linear to the vocabulary, then (with attention) the attention Linear."


def source(gen, b=B, t=T, high=V_SRC):
    src = torch.randint(4, high, (b, t), generator=gen)
    src[:, 0] = 2  # the start token
    return src


def make_encoder(sub, ref, gen, model_type, enc_h, dec_h):
    enc = sub.new("models.seq2seq.Encoder.Encoder", V_SRC, EMB, enc_h, dec_h, dropout=0.0, model_type=model_type)
    enc.call("eval")
    reference = ref.module(MODULES["encoder"]).Encoder(V_SRC, EMB, enc_h, dec_h, dropout=0.0, model_type=model_type).eval()
    transplant(enc, reference, gen, f"Encoder (model_type={model_type!r})", ENC_HINT)
    return enc, reference


def make_decoder(sub, ref, gen, model_type, h, attention, version="current"):
    dec, has_layer = new_decoder(sub, EMB, h, h, V_TGT, model_type, attention, version)
    # the reference module only holds the weights (R.decoder_step says whether attention is used)
    reference = ref.module(MODULES["decoder"]).Decoder(EMB, h, h, V_TGT, dropout=0.0, model_type=model_type,
                                                       attention=has_layer).eval()
    transplant(dec, reference, gen, f"Decoder (model_type={model_type!r}, attention={attention})",
               DEC_HINT if version != "v23f" else " The Fall 2023 order: embedding, RNN/LSTM, Linear to the vocabulary.")
    return dec, reference


ENCODER_DIAGNOSES = {
    "no_tanh": "the hidden state is not passed through tanh after the linear layers",
    "no_relu": "there is no ReLU between the two linear layers",
    "cell_transformed": "the LSTM cell state is also passed through the linear layers; return it untouched",
}


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: Encoder.forward(input (B, T)) -> (output (B, T, encoder_hidden), hidden (1, B, "
                  "decoder_hidden))")
def test_encoder_shapes(sub, ref, gen):
    """Encoder.forward returns outputs (B, T, encoder_hidden) and a hidden state (1, B, decoder_hidden)"""
    enc, _ = make_encoder(sub, ref, gen, "RNN", 6, 7)
    output, hidden = expect.pair(enc(source(gen)), "Encoder.forward(input)")
    expect.tensor(output, "the encoder outputs", shape=(B, T, 6), dtype="float")
    expect.tensor(hidden, "the encoder hidden state", shape=(1, B, 7), dtype="float")


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: dropout on the embedding, then the RNN; hidden = tanh(Linear -> ReLU -> Linear of the "
                  "last hidden state)")
def test_encoder_rnn_values(sub, ref, gen):
    """Encoder (RNN): outputs of the RNN and hidden = tanh(Linear(ReLU(Linear(last hidden))))"""
    enc, reference = make_encoder(sub, ref, gen, "RNN", 6, 7)
    for b in (B, 1):  # one sentence too: a .squeeze() breaks a batch of one
        src = source(gen, b=b)
        one = " (one sentence)" if b == 1 else ""
        output, hidden = expect.pair(enc(src), f"Encoder.forward(input){one}")
        with torch.no_grad():
            want_out, want_hidden = R.encoder(reference, src)
            variants = {k: R.encoder(reference, src, k)[1] for k in ("no_tanh", "no_relu")}
        expect.close(output, want_out, f"the encoder outputs{one}")
        expect.close(hidden, want_hidden, f"the encoder hidden state{one}",
                     diagnoses={ENCODER_DIAGNOSES[k]: v for k, v in variants.items()})


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: for an LSTM the hidden state is (h, c): h goes through the linear stack and tanh, c is "
                  "returned untouched")
def test_encoder_lstm_values(sub, ref, gen):
    """Encoder (LSTM): hidden is (tanh of the linear stack of h, the cell state c untouched)"""
    enc, reference = make_encoder(sub, ref, gen, "LSTM", 6, 6)
    src = source(gen)
    output, hidden = expect.pair(enc(src), "Encoder.forward(input)")
    h, c = expect.pair(hidden, "the LSTM encoder's hidden state (h, c)")
    with torch.no_grad():
        want_out, (want_h, want_c) = R.encoder(reference, src)
        variants = {k: R.encoder(reference, src, k)[1] for k in ENCODER_DIAGNOSES}
    expect.close(output, want_out, "the encoder outputs")
    expect.close(h, want_h, "the hidden state h", diagnoses={ENCODER_DIAGNOSES[k]: v[0] for k, v in variants.items()})
    expect.close(c, want_c, "the cell state c", diagnoses={ENCODER_DIAGNOSES["cell_transformed"]: variants["cell_transformed"][1]})


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: Decoder.forward(input (B, 1), hidden) without attention -> (log-probabilities (B, "
                  "output_size), new hidden)")
def test_decoder_rnn_values(sub, ref, gen, config, notes):
    """Decoder without attention (RNN and LSTM): log-probabilities (B, V) and the new hidden state"""
    version = interface_version(sub, config, notes)
    for model_type in ("RNN", "LSTM"):
        for b in (B, 1):  # one sentence too: a .squeeze() of the output breaks a batch of one
            check_decoder_step(sub, ref, gen, model_type, version, b)


def check_decoder_step(sub, ref, gen, model_type, version, b):
    h = 6
    dec, reference = make_decoder(sub, ref, gen, model_type, h, attention=False, version=version)
    token = torch.randint(0, V_TGT, (b, 1), generator=gen)
    hidden = 0.5 * torch.randn(1, b, h, generator=gen)
    state = (hidden, 0.5 * torch.randn(1, b, h, generator=gen)) if model_type == "LSTM" else hidden
    enc_out = torch.randn(b, T, h, generator=gen)
    one = ", one sentence" if b == 1 else ""
    out, new_state = expect.pair(decoder_step(dec, token, state, enc_out, False), f"Decoder.forward ({model_type}{one})")
    with torch.no_grad():
        want_out, want_state = R.decoder_step(reference, token, state, enc_out, False)
        raw, _ = R.decoder_step(reference, token, state, enc_out, False, "no_log_softmax")
    expect.close(out, want_out, f"the decoder output ({model_type}{one})", diagnoses={
        "returns raw scores: apply LogSoftmax over the vocabulary": raw,
        "returns probabilities (softmax) instead of log-probabilities": torch.softmax(raw, dim=1),
        "the log-softmax is taken over the batch (dim=0)": torch.log_softmax(raw, dim=0)})
    if model_type == "LSTM":
        got_h, got_c = expect.pair(new_state, "the decoder's new LSTM state (h, c)")
        expect.close(got_h, want_state[0], f"the decoder's new h (LSTM{one})")
        expect.close(got_c, want_state[1], f"the decoder's new c (LSTM{one})")
    else:
        expect.close(new_state, want_state, f"the decoder's new hidden state (RNN{one})")


SEQ2SEQ_DIAGNOSES = {
    "feed_source": "the decoder is fed the next SOURCE token (forcing) instead of its own arg-max prediction",
    "always_start": "the decoder is fed the start token at every step; feed back the arg-max of the previous output",
    "start_pad": "the first decoder input is not the start token source[:, 0]",
    "start_zero": "the first decoder input is not the start token source[:, 0]",
}


def check_seq2seq(sub, ref, gen, model_type, attention, version, b=4):
    h = 6
    enc, ref_enc = make_encoder(sub, ref, gen, model_type, h, h)
    dec, ref_dec = make_decoder(sub, ref, gen, model_type, h, attention, version)
    s2s = new_seq2seq(sub, enc, dec, attention)
    src = source(gen, b=b, t=6, high=V_TGT)  # ids valid in both vocabularies: a mistake may feed source ids to the decoder
    what = f"Seq2Seq.forward(source) ({model_type}, attention={attention}{', one sentence' if b == 1 else ''})"
    got = expect.tensor(s2s(src), what, shape=(b, 6, V_TGT), dtype="float")
    readings = (None, "cell_by_h") if version == "v23f" and attention and model_type == "LSTM" else (None,)
    with torch.no_grad():
        wants = [R.seq2seq(ref_enc, ref_dec, src, attention, version=version, dec_variant=r) for r in readings]
        variants = {SEQ2SEQ_DIAGNOSES[k]: R.seq2seq(ref_enc, ref_dec, src, attention, k, version=version)
                    for k in SEQ2SEQ_DIAGNOSES}
    if not any(torch.allclose(got[:, 0].double(), w[:, 0].double(), atol=1e-5, rtol=1e-4) for w in wants):
        expect.close_any(got, wants, f"the Seq2Seq outputs ({model_type}, attention={attention}), already at the first step",
                         diagnoses=variants)
    expect.close_any(got, wants, f"the Seq2Seq outputs ({model_type}, attention={attention})", diagnoses=variants)


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: Seq2Seq.forward(source) encodes, then decodes greedily for T steps from source[:, 0], "
                  "feeding back the arg-max prediction")
def test_seq2seq_greedy_rnn(sub, ref, gen, config, notes):
    """Seq2Seq (RNN): starts from source[:, 0] and feeds back its arg-max predictions for T steps"""
    version = interface_version(sub, config, notes)
    check_seq2seq(sub, ref, gen, "RNN", attention=False, version=version)
    check_seq2seq(sub, ref, gen, "RNN", attention=False, version=version, b=1)


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: the same greedy loop with an LSTM decoder using attention over the encoder outputs")
def test_seq2seq_greedy_lstm_attention(sub, ref, gen, config, notes):
    """Seq2Seq (LSTM with attention): the whole greedy translation matches"""
    check_seq2seq(sub, ref, gen, "LSTM", attention=True, version=interface_version(sub, config, notes))


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: Seq2Seq.forward(source (B, T)) -> outputs (B, T, output_size) of log-probabilities")
def test_seq2seq_shape(sub, ref, gen, config, notes):
    """Seq2Seq.forward returns (B, T, output_size) log-probabilities"""
    enc, _ = make_encoder(sub, ref, gen, "RNN", 6, 6)
    dec, _ = make_decoder(sub, ref, gen, "RNN", 6, attention=False, version=interface_version(sub, config, notes))
    out = expect.tensor(new_seq2seq(sub, enc, dec, False)(source(gen)), "Seq2Seq.forward(source)", shape=(B, T, V_TGT),
                        dtype="float")
    expect.true(bool(torch.allclose(out.double().exp().sum(-1), torch.ones(B, T, dtype=torch.float64), atol=1e-4)),
                "the Seq2Seq outputs are not log-probabilities (exp of each row should sum to 1)")
