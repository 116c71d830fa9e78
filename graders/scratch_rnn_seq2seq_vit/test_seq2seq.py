"""Hidden tests, Problem 2: the encoder and the attention decoder (10 points), LSTMSeq2Seq.forward (10). The training
threshold (10) is in test_thresholds.py.

The handout leaves the encoder's and the decoder's arguments and return values to the student, so the model is
checked through what its given layers see (recipes.py: seq2seq_probe runs the student's LSTMSeq2Seq once with hooks
on the encoder's LSTM, the decoder's embedding, LSTM and fc). Each property is checked on the student's own
intermediate values, so one mistake costs once:

- attention (P2(a)): the context half of fc's input is the dot-product attention of the decoder LSTM's own outputs
  over the encoder LSTM's own outputs, whatever fed the decoder;
- teacher forcing (P2(b)): the decoder embedding reads trg[:, t - 1] at step t;
- the state (P2(b)): the decoder LSTM starts from the encoder's final (h, c) and carries its state;
- the outputs (P2(b)): outputs[:, :, t] is fc's output at step t.
"""

from __future__ import annotations

import math

import pytest
import torch

from dlgrade.harness import expect
from dlgrade.harness.params import random_values, randomize, same
from graders.scratch_rnn_seq2seq_vit._support import tensors

IN, OUT, EMB, HID = 11, 9, 5, 6     # source vocabulary, target vocabulary, embedding, hidden: all different
B, S, T = 3, 5, 6                   # batch, source length, target length (max_len)
SOS = 1
MODEL_ARGS = {"in_dim": IN, "out_dim": OUT, "emb_dim": EMB, "hid_dim": HID, "dropout": 0.0}


def batch(gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    src = torch.randint(4, IN, (B, S), generator=gen)
    trg = torch.randint(4, OUT, (B, T), generator=gen)
    trg[:, 0] = SOS
    return src, trg


def lstm_of(params: dict[str, torch.Tensor], prefix: str, input_size: int) -> torch.nn.LSTM:
    """A trusted copy of one of the given nn.LSTM layers, with the student's weights."""
    lstm = torch.nn.LSTM(input_size, HID, batch_first=True)
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            key = f"{prefix}.{name}"
            expect.true(key in params and tuple(params[key].shape) == tuple(p.shape), f"the given layer {prefix} is "
                        f"not an nn.LSTM({input_size}, {HID}) any more (no parameter {key} of shape {tuple(p.shape)}); "
                        "keep the layers of the given __init__", "given layers changed")
            p.copy_(params[key])
    return lstm


def embedding_of(params: dict[str, torch.Tensor], prefix: str, n: int) -> torch.Tensor:
    key = f"{prefix}.weight"
    expect.true(key in params and tuple(params[key].shape) == (n, EMB), f"the given embedding {prefix} is missing or "
                "changed; keep the layers of the given __init__", "given layers changed")
    return params[key]


# ------------------------------------------------------------------ the probe


class Probe:
    """One run of the student's LSTMSeq2Seq with hooks (see recipes.seq2seq_probe), with the weights it used."""

    def __init__(self, sub, gen: torch.Generator) -> None:
        shell = sub.new("hw4_seq2seq.LSTMSeq2Seq", IN, OUT, EMB, HID, "cpu", 0.0)
        infos = shell.parameters()
        values = random_values([(p.name, p.shape) for p in infos], gen)
        self.params = {p.name: v for p, v in zip(infos, values, strict=True)}
        self.src, self.trg = batch(gen)
        rec = sub.run_recipe("seq2seq_probe", model_args=MODEL_ARGS, values=values, src=self.src, trg=self.trg)
        expect.true(isinstance(rec, dict), "the Seq2Seq probe returned a malformed result")
        self.rec = rec
        missing = rec.get("missing") or []
        expect.true(not missing, "the given layers " + ", ".join(str(m) for m in missing) + " are missing from your "
                    "LSTMSeq2Seq; keep the layers of the given __init__ (encoder.lstm, decoder.embedding, "
                    "decoder.lstm, decoder.fc)", "given layers missing")

    def outputs(self) -> torch.Tensor:
        return expect.tensor(self.rec.get("outputs"), "LSTMSeq2Seq output", shape=(B, OUT, T), dtype="float")

    def steps(self, key: str, width: int | None, what: str) -> torch.Tensor:
        """The captures of one layer, one per call, as (B, steps[, width]) along time."""
        calls = self.rec.get(key)
        expect.true(isinstance(calls, list) and len(calls) > 0, f"{what} is never called in LSTMSeq2Seq.forward",
                    f"{what} not used")
        parts = []
        for c in calls:
            c = expect.tensor(c, what)
            if width is None:  # token ids: (B,) or (B, t)
                c = c.unsqueeze(1) if c.dim() == 1 else c
                expect.true(c.dim() == 2 and c.shape[0] == B, f"{what} received ids of shape {tuple(c.shape)}")
            else:
                c = c.unsqueeze(1) if c.dim() == 2 else c
                expect.true(c.dim() == 3 and c.shape[0] == B and c.shape[2] == width, f"{what} was called with a tensor "
                            f"of shape {tuple(c.shape)}; expected (B, steps, {width}) (batch first)", f"{what} shape")
            parts.append(c)
        return torch.cat(parts, 1)

    def encoder_outputs(self) -> torch.Tensor:
        calls = self.rec.get("encoder_lstm_out")
        expect.true(isinstance(calls, list) and len(calls) >= 1, "the encoder's LSTM is never called",
                    "encoder not used")
        return expect.tensor(calls[0], "the encoder LSTM's outputs", shape=(B, S, HID))


def attention(query: torch.Tensor, keys: torch.Tensor, scale: float = 1.0, dim: int = -1) -> torch.Tensor:
    """softmax over the source positions of the dot products, then the weighted sum of the keys: (B, t, H)."""
    return torch.softmax(query @ keys.transpose(1, 2) / scale, dim=dim) @ keys


def split_fc_input(fc_in: torch.Tensor, states: torch.Tensor) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
    """(the half of fc's input that is the decoder state, if one is; the candidates for the context half)."""
    first, second = fc_in[..., :HID], fc_in[..., HID:]
    if same(first, states):
        return first, [second]
    if same(second, states):
        return second, [first]
    return None, [second, first]


# ------------------------------------------------------------------ P2(a) encoder and decoder (10 points)


@pytest.mark.part("seq2seq_modules")
@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(a): LSTMEncoder.forward runs its LSTM over the embedded source; the outputs of every source "
                  "position are what the decoder attends to")
def test_encoder_outputs(sub, gen):
    """LSTMEncoder returns the LSTM's outputs at every source position (of the embedded source)"""
    enc = sub.new("hw4_seq2seq.LSTMEncoder", IN, EMB, HID)
    params = randomize(enc, gen)
    src, _ = batch(gen)
    returned = tensors(enc(src))
    lstm = lstm_of(params, "lstm", EMB)
    emb = embedding_of(params, "embedding", IN)
    with torch.no_grad():
        want, _ = lstm(emb[src])  # (B, S, H)
    if any(same(t, want) or same(t, want.transpose(0, 1)) for t in returned):
        return
    if any(same(t, emb[src]) for t in returned):
        expect.fail("LSTMEncoder returns the embedded source, not the LSTM's outputs", "returns the embeddings")
    if any(tuple(t.shape) in ((1, B, HID), (B, HID)) for t in returned) and not any(t.dim() == 3 and t.shape[1] == S
                                                                                      for t in returned):
        expect.fail("LSTMEncoder returns only a final state: return the LSTM's outputs at every source position too "
                    "(the decoder attends to them)", "encoder outputs missing")
    expect.fail("none of the tensors LSTMEncoder returns is the LSTM's output sequence (B, S, hid_dim) for the embedded "
                "source, computed with your own layers", "wrong encoder outputs")


@pytest.mark.part("seq2seq_modules")
@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(a) / Figure 1: the encoder's final state (h, c) is what the decoder starts from")
def test_encoder_final_state(sub, gen):
    """LSTMEncoder also returns its final state (h and c)"""
    enc = sub.new("hw4_seq2seq.LSTMEncoder", IN, EMB, HID)
    params = randomize(enc, gen)
    src, _ = batch(gen)
    returned = tensors(enc(src))
    lstm = lstm_of(params, "lstm", EMB)
    with torch.no_grad():
        _, (h, c) = lstm(embedding_of(params, "embedding", IN)[src])  # (1, B, H) each

    def found(x: torch.Tensor) -> bool:
        return any(same(t, x) or same(t, x[0]) for t in returned)

    expect.true(found(h), "LSTMEncoder does not return the LSTM's final hidden state h", "final h missing")
    expect.true(found(c), "LSTMEncoder returns the final hidden state h but not the cell state c; an LSTM decoder "
                "starts from both", "final c missing")


@pytest.mark.part("seq2seq_modules")
@pytest.mark.points(4)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2 / Figure 1: dot-product attention: a_tj = softmax_j(s_t . e_j) over the source positions (the "
                  "weights sum to 1), context c_t = sum_j a_tj e_j")
def test_decoder_attention(sub, gen):
    """AttnLSTMDecoder: the context is dot-product attention of the decoder state over the encoder outputs"""
    probe = Probe(sub, gen)
    enc = probe.encoder_outputs()
    states = probe.steps("decoder_lstm_out", HID, "the decoder's LSTM")
    fc_in = probe.steps("fc_in", 2 * HID, "the decoder's fc")
    expect.true(fc_in.shape[1] == states.shape[1], f"the decoder's fc is applied at {fc_in.shape[1]} steps but its LSTM "
                f"runs {states.shape[1]} steps", "steps do not match")
    _, contexts = split_fc_input(fc_in, states)
    accepted = [attention(states, enc), attention(states, enc, scale=math.sqrt(HID))]  # dot product, or scaled
    if any(same(ctx, want) for ctx in contexts for want in accepted):
        return
    h0 = probe.rec.get("encoder_lstm_state") or []
    previous = None
    if h0 and isinstance(h0[0], (tuple, list)) and isinstance(h0[0][0], torch.Tensor) and h0[0][0].numel() == B * HID:
        previous = torch.cat([h0[0][0].reshape(B, 1, HID), states[:, :-1]], 1)
    scores = states @ enc.transpose(1, 2)
    mistakes = {
        "the softmax is taken over the decoder steps instead of the source positions":
            torch.softmax(scores, dim=1) @ enc,
        "the softmax is taken over the batch instead of the source positions": torch.softmax(scores, dim=0) @ enc,
        "the scores are not turned into weights by a softmax (the weights must sum to 1 over the source positions)":
            scores @ enc,
        "every source position gets the same weight (the scores are not used)": enc.mean(1, keepdim=True).expand_as(states),
        "the context is the encoder's last output only": enc[:, -1:].expand_as(states),
        "the decoder attends to its own outputs instead of the encoder's": attention(states, states),
    }
    if previous is not None:
        mistakes["the query is the decoder's previous state instead of its output at this step"] = \
            attention(previous, enc)
    for mistake, want in mistakes.items():
        if tuple(want.shape) == tuple(states.shape) and any(same(ctx, want) for ctx in contexts):
            expect.fail(f"the decoder's attention is wrong: {mistake}", mistake)
    expect.fail("the context the decoder gives its fc is not sum_j softmax_j(s_t . e_j) e_j, with s_t the decoder LSTM's "
                "output at step t and e_j the encoder's outputs", "wrong attention")


@pytest.mark.part("seq2seq_modules")
@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(a): the scores for the next token are fc([s_t ; c_t]): the decoder LSTM's output joined with the "
                  "attention context")
def test_decoder_prediction_layer(sub, gen):
    """AttnLSTMDecoder: fc reads the decoder LSTM's output at each step, joined with the context"""
    probe = Probe(sub, gen)
    states = probe.steps("decoder_lstm_out", HID, "the decoder's LSTM")
    fc_in = probe.steps("fc_in", 2 * HID, "the decoder's fc")
    expect.true(fc_in.shape[1] == states.shape[1], f"the decoder's fc is applied at {fc_in.shape[1]} steps but its LSTM "
                f"runs {states.shape[1]} steps", "steps do not match")
    state, _ = split_fc_input(fc_in, states)
    if state is not None:
        return
    ids = probe.steps("decoder_ids", None, "the decoder's embedding")
    emb = embedding_of(probe.params, "decoder.embedding", OUT)
    if ids.shape[1] == states.shape[1] and any(same(half, emb[ids][..., :HID]) for half in (fc_in[..., :HID], fc_in[..., HID:])):
        expect.fail("the decoder's fc reads the embedded input instead of the LSTM's output", "fc reads the embedding")
    expect.fail("neither half of the decoder fc's input is the decoder LSTM's output at that step: the scores are "
                "fc([s_t ; c_t])", "fc does not read the decoder state")


# ------------------------------------------------------------------ P2(b) LSTMSeq2Seq.forward (10 points)


@pytest.mark.part("seq2seq_forward")
@pytest.mark.points(2)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: LSTMSeq2Seq(in_dim, out_dim, emb_dim, hid_dim, device, dropout).forward(src, trg) -> "
                  "(B, out_dim, max_len)")
def test_seq2seq_output_shape(sub, gen):
    """LSTMSeq2Seq.forward returns (B, out_dim, max_len)"""
    Probe(sub, gen).outputs()


@pytest.mark.part("seq2seq_forward")
@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(b): teacher forcing: the decoder's input at step t is the true previous token trg[:, t - 1]")
def test_seq2seq_teacher_forcing(sub, gen):
    """LSTMSeq2Seq: teacher forcing, the decoder reads the true previous token trg[:, t - 1] at step t"""
    probe = Probe(sub, gen)
    ids = probe.steps("decoder_ids", None, "the decoder's embedding").long()
    want = probe.trg[:, :-1]
    if ids.shape[1] >= T - 1 and torch.equal(ids[:, : T - 1], want):
        return
    out = probe.rec.get("outputs")
    if ids.shape[1] >= T - 1 and torch.equal(ids[:, 0], probe.trg[:, 0]):
        if isinstance(out, torch.Tensor) and tuple(out.shape) == (B, OUT, T) and torch.equal(
                ids[:, 1 : T - 1], out[:, :, 1 : T - 1].argmax(1)):
            expect.fail("the decoder reads its own predictions instead of the true previous tokens (teacher forcing "
                        "feeds trg[:, t - 1] at step t)", "no teacher forcing")
    if ids.shape[1] >= T - 1 and torch.equal(ids[:, : T - 1], probe.trg[:, 1:]):
        expect.fail("at step t the decoder reads trg[:, t], the token it has to predict; it must read the previous "
                    "token trg[:, t - 1] (starting with <sos>)", "reads the token to predict")
    expect.fail("the tokens the decoder reads are not <sos> followed by the true target tokens trg[:, 1], trg[:, 2], ... "
                "(teacher forcing)", "wrong decoder inputs")


@pytest.mark.part("seq2seq_forward")
@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(b) / Figure 1: the decoder starts from the encoder's final (h, c) and carries its state from step "
                  "to step")
def test_seq2seq_decoder_state(sub, gen):
    """LSTMSeq2Seq: the decoder starts from the encoder's final (h, c) and carries its state over the steps"""
    probe = Probe(sub, gen)
    enc_state = (probe.rec.get("encoder_lstm_state") or [None])[0]
    expect.true(isinstance(enc_state, (tuple, list)) and len(enc_state) == 2, "the encoder's LSTM state was not "
                "recorded", "encoder not used")
    h_enc, c_enc = (expect.tensor(x, "the encoder's final state", shape=(1, B, HID)) for x in enc_state)
    hx = probe.rec.get("decoder_lstm_hx") or []
    expect.true(len(hx) > 0 and hx[0] is not None, "the decoder's LSTM is called without an initial state, so it starts "
                "from zeros: pass the encoder's final (h, c)", "decoder starts from zeros")
    expect.true(isinstance(hx[0], (tuple, list)) and len(hx[0]) == 2, "the decoder's LSTM is not given an (h, c) pair",
                "wrong decoder state")
    h0, c0 = (expect.tensor(x, "the decoder's initial state", shape=(1, B, HID)) for x in hx[0])
    if not same(h0, h_enc):
        if bool((h0 == 0).all()):
            expect.fail("the decoder starts from a zero state instead of the encoder's final (h, c)",
                        "decoder starts from zeros")
        expect.fail("the decoder's LSTM does not start from the encoder's final hidden state h", "wrong initial state")
    returned = tensors(probe.rec.get("encoder_returned"))
    encoder_gave_c = any(same(t, c_enc) or same(t, c_enc[0]) for t in returned)
    if not same(c0, c_enc) and encoder_gave_c:  # (an encoder that does not return c is graded by its own test)
        expect.fail("the decoder starts from the encoder's h but not its cell state c; pass both", "c not passed")
    inputs = probe.steps("decoder_lstm_in", EMB, "the decoder's LSTM")
    got = probe.steps("decoder_lstm_out", HID, "the decoder's LSTM")
    lstm = lstm_of(probe.params, "decoder.lstm", EMB)
    with torch.no_grad():
        want, _ = lstm(inputs, (h0, c0))
        restart = torch.cat([lstm(inputs[:, t : t + 1], (h0, c0))[0] for t in range(inputs.shape[1])], 1)
    if same(got, want):
        return
    if inputs.shape[1] > 1 and same(got, restart):
        expect.fail("the decoder starts every step from the encoder's final state: carry the state returned by the "
                    "previous step instead", "state not carried")
    expect.fail("the decoder LSTM's outputs are not those of an LSTM that starts from the encoder's final (h, c) and "
                "carries its state from step to step", "wrong decoder state")


@pytest.mark.part("seq2seq_forward")
@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(b): outputs[:, :, t] holds the scores for trg[:, t] (t >= 1), computed from trg[:, :t]; "
                  "outputs[:, :, 0] is not predicted")
def test_seq2seq_outputs_in_place(sub, gen):
    """LSTMSeq2Seq: outputs[:, :, t] is the decoder's prediction made after reading trg[:, t - 1]"""
    probe = Probe(sub, gen)
    out = probe.outputs()
    scores = probe.steps("fc_out", OUT, "the decoder's fc")  # (B, steps, OUT)
    expect.true(scores.shape[1] >= T - 1, f"the decoder's fc is applied at {scores.shape[1]} steps; a target of {T} "
                f"tokens needs {T - 1} predictions", "too few decoding steps")
    pred = scores[:, : T - 1].transpose(1, 2)  # (B, OUT, T - 1)
    got = out[:, :, 1:]
    if same(got, pred) or same(got, torch.log_softmax(pred, 1)):
        return
    mistakes = {
        "the predictions are stored one position too early (outputs[:, :, t - 1] holds the prediction for trg[:, t])":
            (out[:, :, : T - 1], pred),
        "the (B, steps, out_dim) predictions are reshaped to (B, out_dim, steps) instead of transposed (permute the axes)":
            (got, scores[:, : T - 1].reshape(B, OUT, T - 1)),
        "the outputs are softmax probabilities; return the scores (the loss applies the softmax)":
            (got, torch.softmax(pred, 1)),
    }
    for mistake, (a, b) in mistakes.items():
        if same(a, b):
            expect.fail(f"LSTMSeq2Seq's outputs are wrong: {mistake}", mistake)
    expect.fail("outputs[:, :, t] (t >= 1) is not the decoder fc's output at the step that read trg[:, t - 1]",
                "outputs not in place")
