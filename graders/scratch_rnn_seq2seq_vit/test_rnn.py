"""Hidden tests, Problem 1: collate_batch (3 points), the RNN's parameters (2), forward (10), compute_loss (5),
train and evaluate (5). The training threshold (5) is in test_thresholds.py.

collate_batch runs with the grader's vocabulary and tokenizer (rnn_vocab.py, supplied to the notebook). The RNN is
checked on the student's own parameters (randomised here), found by their shapes, so that a naming or orientation
choice is graded once, by the shape test. Reading each text at its own last step is checked by composition: the
padded batch against each text run alone, unpadded, through the same model. train and evaluate run on a probe
classifier (recipes.py) next to the reference functions on the same batches, so a mistake in the RNN is not
charged again here.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from dlgrade.harness import expect
from dlgrade.harness.params import random_values, same
from graders.scratch_rnn_seq2seq_vit._support import datagen, graded_vocab, recipes, reference, run_reference_recipe

V, IN, H, C = 13, 5, 7, 3  # vocabulary, input, hidden, classes: all different, so every shape says what it is


# ------------------------------------------------------------------ 1(a) collate_batch (3 points)


def news_batch(gen: torch.Generator, n: int = 7) -> list[tuple[int, str]]:
    """n generated snippets whose average length is not a whole number (so every rounding can be told apart)."""
    rng = random.Random(int(torch.randint(2**31, (1,), generator=gen)))
    while True:
        batch = [datagen().news_snippet(rng, 2, 16) for _ in range(n)]
        lengths = [len(graded_vocab()["tokenizer"](text)) for _, text in batch]
        mean = sum(lengths) / n
        if mean != int(mean) and max(lengths) > math.ceil(mean) and min(lengths) < int(mean):
            return batch


def token_ids(batch: list[tuple[int, str]]) -> list[list[int]]:
    g = graded_vocab()
    return [g["vocab"](g["tokenizer"](text)) for _, text in batch]


def average_lengths(ids: list[list[int]]) -> set[int]:
    """The batch's average length as an integer, rounded down, to the nearest or up: every reading is accepted."""
    mean = sum(len(t) for t in ids) / len(ids)
    return {max(1, int(mean)), max(1, round(mean)), max(1, math.ceil(mean))}


def collated(sub, batch):
    out = sub.call("hw4_rnn.collate_batch", batch)
    expect.true(isinstance(out, (tuple, list)) and len(out) == 3, "collate_batch should return three tensors: "
                f"(text, label, lengths), but returned {type(out).__name__}"
                + (f" of {len(out)} items" if isinstance(out, (tuple, list)) else ""), "wrong return value")
    text, label, lengths = out
    text = expect.tensor(text, "collate_batch's text", dtype="long")
    label = expect.tensor(label, "collate_batch's label", shape=(len(batch),), dtype="long")
    lengths = expect.tensor(lengths, "collate_batch's lengths", shape=(len(batch),), dtype="long")
    expect.true(text.dim() == 2, f"collate_batch's text should be a 2-D (L, B) tensor, got shape {tuple(text.shape)}")
    return text, label, lengths


def columns(text: torch.Tensor, b: int) -> torch.Tensor:
    """The student's text as (L, B): a (B, L) answer is read transposed (its layout is graded once, in the layout test)."""
    if text.shape[1] != b and text.shape[0] == b:
        return text.T
    return text


@pytest.mark.part("collate")
@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P1(a) / INTERFACES: collate_batch(batch) -> (text (L, B) long, label (B,), lengths (B,))")
def test_collate_layout(sub, gen):
    """collate_batch returns (text, label, lengths): text is (L, B), one column per text; label and lengths are (B,)"""
    batch = news_batch(gen)
    text, _, _ = collated(sub, batch)
    b = len(batch)
    if text.shape[1] != b and text.shape[0] == b:
        expect.fail(f"collate_batch's text has shape {tuple(text.shape)}: one row per text (B, L); the RNN reads "
                    "(L, B), one column per text (transpose it, or build it column by column)", "text is (B, L)")
    expect.true(text.shape[1] == b, f"collate_batch's text has shape {tuple(text.shape)}; with {b} texts it must be "
                f"(L, {b})", "wrong text shape")


@pytest.mark.part("collate")
@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(a): text is padded/truncated to the batch's average length (as an integer)")
def test_collate_average_length(sub, gen):
    """collate_batch: L is the batch's average text length (rounded down, to the nearest or up)"""
    for _ in range(2):
        batch = news_batch(gen)
        ids = token_ids(batch)
        text, _, _ = collated(sub, batch)
        got = int(columns(text, len(batch)).shape[0])
        if got in average_lengths(ids):
            continue
        lengths = [len(t) for t in ids]
        if got == max(lengths):
            expect.fail("collate_batch pads every text to the longest text of the batch; the handout asks for the "
                        "batch's average length (longer texts are cut)", "pads to the longest text")
        if got == min(lengths):
            expect.fail("collate_batch cuts every text to the shortest text of the batch; the handout asks for the "
                        "batch's average length", "cuts to the shortest text")
        expect.fail(f"collate_batch's texts have {got} rows; for texts of {sorted(lengths)} tokens the average length "
                    "is about " f"{sum(lengths) / len(lengths):.2f}", "not the average length")


@pytest.mark.part("collate")
@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(a): each column holds text_pipeline(text) cut to L or padded at the end with the pad index; "
                  "label holds the labels; lengths the real tokens per column")
def test_collate_values(sub, gen):
    """collate_batch: each column is the text's token ids, cut or padded at the end; labels; lengths (at most L)"""
    pad = graded_vocab()["vocab"]["<pad>"]
    batch = news_batch(gen)
    ids = token_ids(batch)
    text, label, lengths = collated(sub, batch)
    text = columns(text, len(batch))
    L = int(text.shape[0])  # the student's own L: its choice is graded by test_collate_average_length
    want = torch.full((L, len(batch)), pad, dtype=torch.long)
    for i, t in enumerate(ids):
        want[: min(len(t), L), i] = torch.tensor(t[:L], dtype=torch.long)
    want_lengths = torch.tensor([min(len(t), L) for t in ids])
    if not torch.equal(text.long(), want):
        front = torch.full_like(want, pad)
        for i, t in enumerate(ids):
            kept = t[:L]
            front[L - len(kept):, i] = torch.tensor(kept, dtype=torch.long)
        tail = torch.full_like(want, pad)
        for i, t in enumerate(ids):
            kept = t[-L:]
            tail[: len(kept), i] = torch.tensor(kept, dtype=torch.long)
        zeros = torch.where(want == pad, torch.zeros_like(want), want)
        diagnoses = {"the padding is put before the text instead of after it": front,
                     "long texts keep their last L tokens instead of their first L": tail,
                     "texts are padded with 0 (the index of <unk>) instead of the pad index vocab['<pad>']": zeros}
        for mistake, alt in diagnoses.items():
            if torch.equal(text.long(), alt):
                expect.fail(f"collate_batch's text is wrong: {mistake}", mistake)
        expect.fail("collate_batch's text columns are not text_pipeline(text) cut to L tokens or padded at the end with "
                    "vocab['<pad>']", "wrong token ids")
    expect.true(label.tolist() == [lab for lab, _ in batch], "collate_batch's label does not hold the batch's labels in "
                "order", "wrong labels")
    if not torch.equal(lengths.long(), want_lengths):
        if lengths.tolist() == [len(t) for t in ids]:
            expect.fail("collate_batch's lengths are the full text lengths; a text cut to L has L real tokens left "
                        "(lengths[i] = min(len, L)), or the RNN reads past the end", "lengths not cut to L")
        expect.fail("collate_batch's lengths are not the number of real tokens in each column", "wrong lengths")


# ------------------------------------------------------------------ 1(b) parameters (2 points)

SHAPES = {  # name -> accepted shapes (either orientation of a matrix: the forward test reads them by shape)
    "W_xh": {(IN, H), (H, IN)}, "W_hh": {(H, H)}, "W_hy": {(H, C), (C, H)},
    "b_xh": {(H,), (1, H)}, "b_hh": {(H,), (1, H)}, "b_hy": {(C,), (1, C)},
}


@pytest.mark.part("rnn_params")
@pytest.mark.points(2)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P1(b) / INTERFACES: RNN(vocab_size, input_size, hidden_size, num_class, dropout_ratio) with parameters "
                  "W_xh, W_hh, W_hy, b_xh, b_hh, b_hy of the right shapes")
def test_rnn_parameter_shapes(sub):
    """RNN: W_xh, W_hh, W_hy, b_xh, b_hh and b_hy exist with the shapes of the recurrence"""
    rnn = sub.new("hw4_rnn.RNN", V, IN, H, C, 0.0)
    params = {p.name: p.shape for p in rnn.parameters()}
    for name, accepted in SHAPES.items():
        expect.true(name in params, f"RNN has no parameter {name} (its parameters: {', '.join(params) or 'none'})",
                    f"{name} missing")
        want = " or ".join(str(s) for s in sorted(accepted, key=len))
        expect.true(params[name] in accepted, f"RNN(vocab_size={V}, input_size={IN}, hidden_size={H}, num_class={C}): "
                    f"{name} has shape {params[name]}, expected {want}", f"{name} has the wrong shape")


# ------------------------------------------------------------------ 1(c) forward (10 points)


def roles(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The student's parameters by what their shapes say: the embedding (V, IN), W_xh as used in x @ W (IN, H), W_hh
    (H, H), W_hy as used in h @ W (H, C), the hidden bias (the sum of the (H,) vectors) and the output bias."""
    out: dict[str, torch.Tensor] = {}
    vectors_h = []
    for t in params.values():
        shape = tuple(t.shape)
        flat = t.reshape(-1) if t.dim() == 2 and 1 in shape else None
        if shape == (V, IN):
            out["emb"] = t
        elif shape in ((IN, H), (H, IN)):
            out["W_xh"] = t if shape == (IN, H) else t.T
        elif shape == (H, H):
            out["W_hh"] = t
        elif shape in ((H, C), (C, H)):
            out["W_hy"] = t if shape == (H, C) else t.T
        elif (flat if flat is not None else t).shape == (H,) and t.dim() <= 2:
            vectors_h.append(flat if flat is not None else t)
        elif (flat if flat is not None else t).shape == (C,) and t.dim() <= 2:
            out["b_hy"] = flat if flat is not None else t
    missing = [k for k in ("emb", "W_xh", "W_hh", "W_hy") if k not in out]
    expect.true(not missing, "cannot find the RNN's " + ", ".join(missing) + " among its parameters by their shapes "
                f"({', '.join(f'{n} {tuple(t.shape)}' for n, t in params.items())})", "parameters missing")
    out["b_h"] = sum(vectors_h, torch.zeros(H))
    out["b_xh_only"] = vectors_h[0] if vectors_h else torch.zeros(H)
    out.setdefault("b_hy", torch.zeros(C))
    return out


def rnn_readings(p: dict[str, torch.Tensor], inputs: torch.Tensor, length: torch.Tensor) -> dict[str, torch.Tensor]:
    """Class probabilities of the handout's RNN on these weights (both orientations of the square W_hh are the same
    network), and named wrong versions."""
    x = p["emb"][inputs]  # (L, B, IN)
    L, B = inputs.shape

    def run(w_hh, act=torch.tanh, bias=p["b_h"]):
        h = torch.zeros(B, H)
        states = []
        for t in range(L):
            h = act(x[t] @ p["W_xh"] + h @ w_hh + bias)
            states.append(h)
        return torch.stack(states)  # (L, B, H)

    def head(last, dim=-1):
        return torch.softmax(last @ p["W_hy"] + p["b_hy"], dim=dim)

    idx = length.long() - 1
    pick = torch.arange(B)
    out = {"": head(run(p["W_hh"])[idx, pick]), "transposed W_hh": head(run(p["W_hh"].T)[idx, pick])}
    states = run(p["W_hh"])
    out["the tanh is missing: the state is a linear function of the inputs"] = \
        head(run(p["W_hh"], act=lambda z: z)[idx, pick])
    out["ReLU is used instead of tanh"] = head(run(p["W_hh"], act=torch.relu)[idx, pick])
    out["only one of the biases b_xh, b_hh is added"] = head(run(p["W_hh"], bias=p["b_xh_only"])[idx, pick])
    out["the text is read at its first step instead of its last"] = head(states[0])
    out["the states of all steps are averaged instead of reading the last one"] = head(states.mean(0))
    out["the softmax is taken over the batch axis instead of the classes"] = head(states[idx, pick], dim=0)
    return out


def probabilities(out, b: int, what: str) -> tuple[torch.Tensor, str]:
    """The forward's output as probabilities, and how it was read (its form is graded by the shape test)."""
    out = expect.tensor(out, what, shape=(b, C), dtype="float")
    if bool((out >= 0).all()) and bool(torch.allclose(out.double().sum(1), torch.ones(b, dtype=torch.float64), atol=1e-4)):
        return out, "probabilities"
    if bool((out <= 0).all()) and bool(torch.allclose(out.double().exp().sum(1), torch.ones(b, dtype=torch.float64), atol=1e-4)):
        return out.exp(), "log-probabilities"
    return torch.softmax(out.double(), dim=1).float(), "scores"


def new_rnn(sub, gen, dropout=0.0, num_class=C, hidden=H):
    rnn = sub.new("hw4_rnn.RNN", V, IN, hidden, num_class, dropout)
    infos = rnn.parameters()
    values = random_values([(p.name, p.shape) for p in infos], gen)
    rnn.set_parameters(values)
    rnn.call("eval")
    return rnn, {p.name: v for p, v in zip(infos, values, strict=True)}


@pytest.mark.part("rnn_forward")
@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P1(c) / INTERFACES: forward(inputs (L, B), length (B,)) -> class probabilities (B, num_class)")
def test_rnn_forward_shape(sub, gen):
    """RNN.forward returns class probabilities (B, num_class): non-negative, each row sums to 1"""
    rnn, _ = new_rnn(sub, gen)
    inputs = torch.randint(0, V, (6, 4), generator=gen)
    out = expect.tensor(rnn(inputs, torch.tensor([6, 3, 5, 1])), "RNN output", shape=(4, C), dtype="float")
    _, form = probabilities(out, 4, "RNN output")
    expect.true(form == "probabilities", f"RNN.forward returns {form}, not probabilities: apply a softmax over the "
                "classes (each row must sum to 1)", "does not return probabilities")


@pytest.mark.part("rnn_forward")
@pytest.mark.points(4)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(c): h_t = tanh(x_t W_xh + b_xh + h_{t-1} W_hh + b_hh), h_0 = 0; y = softmax(h W_hy + b_hy)")
def test_rnn_forward_values(sub, gen):
    """RNN.forward on full-length texts: the tanh recurrence from h_0 = 0 and the softmax output, on your weights"""
    rnn, params = new_rnn(sub, gen)
    p = roles(params)
    L, B = 6, 4
    inputs = torch.randint(0, V, (L, B), generator=gen)
    length = torch.full((B,), L)
    got, _ = probabilities(rnn(inputs, length), B, "RNN output")
    readings = rnn_readings(p, inputs, length)
    if same(got, readings[""], atol=1e-5) or same(got, readings["transposed W_hh"], atol=1e-5):
        return
    for mistake, want in readings.items():
        if mistake and mistake != "transposed W_hh" and same(got, want, atol=1e-5):
            expect.fail(f"RNN output is wrong: {mistake}", mistake)
    expect.fail("RNN output does not match softmax(h_L W_hy + b_hy) with h_t = tanh(x_t W_xh + b_xh + h_{t-1} W_hh + b_hh), "
                "h_0 = 0, computed with your own parameters")


@pytest.mark.part("rnn_forward")
@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(c) / INTERFACES: probabilities read at each sequence's own last valid step (length[b]), not at "
                  "the padded end")
def test_rnn_reads_last_valid_step(sub, gen):
    """RNN.forward reads each text at its own last real token: more padding changes nothing, and each text gives what
    it gives alone"""
    rnn, _ = new_rnn(sub, gen)
    pad = graded_vocab()["vocab"]["<pad>"]
    lengths = [6, 2, 4, 1, 5]
    L, B = max(lengths), len(lengths)
    inputs = torch.full((L + 3, B), pad, dtype=torch.long)
    for b, n in enumerate(lengths):
        inputs[:n, b] = torch.randint(2, V, (n,), generator=gen)
    raw = expect.tensor(rnn(inputs[:L], torch.tensor(lengths)), "RNN output for a padded batch", shape=(B, C),
                        dtype="float")
    longer = expect.tensor(rnn(inputs, torch.tensor(lengths)), "RNN output for the batch with more padding",
                           shape=(B, C), dtype="float")
    if not same(raw, longer, atol=1e-5):
        expect.fail("the RNN's output changes when the same texts get 3 more padding steps: each text must be read at "
                    "its own last real token (length[b]), not at the end of the padding: gather each column's state at "
                    "length[b] - 1", "reads the padded end")
    rows = raw.double()
    if bool((rows >= 0).all()) and not torch.allclose(rows.sum(1), torch.ones(B, dtype=torch.float64), atol=1e-4) \
            and torch.allclose(rows.sum(0), torch.ones(C, dtype=torch.float64), atol=1e-4):
        return  # normalised over the batch (graded by the forward tests): a text alone cannot be compared
    batch, _ = probabilities(raw, B, "RNN output for a padded batch")
    for b, n in enumerate(lengths):
        alone, _ = probabilities(rnn(inputs[:n, b : b + 1], torch.tensor([n])), 1, f"RNN output for text {b} alone")
        if same(batch[b : b + 1], alone, atol=1e-5):
            continue
        if n < L:
            padded, _ = probabilities(rnn(inputs[:L, b : b + 1], torch.tensor([L])), 1, f"RNN output for text {b} "
                                      "with its padding")
            if same(batch[b : b + 1], padded, atol=1e-5):
                expect.fail(f"a text of {n} tokens in a batch padded to {L} is read at step {L} (the end of the longest "
                            f"text) instead of at its own last token (step {n} = length[b])", "reads the padded end")
        if n > 1:
            earlier, _ = probabilities(rnn(inputs[: n - 1, b : b + 1], torch.tensor([n - 1])), 1, "RNN output")
            if same(batch[b : b + 1], earlier, atol=1e-5):
                expect.fail("each text is read one step before its last token", "off by one")
        expect.fail(f"in a padded batch, the output for a text of {n} tokens differs from the output for the same text "
                    "alone, unpadded: read each column at its own last real token (length[b]) and let the texts of a "
                    "batch not affect each other", "padding changes the result")


def hidden_readout(out: torch.Tensor, hidden: int) -> torch.Tensor:
    """The state h' the output layer saw, when W_hy = [I | 0] and b_hy = 0: the log-ratio of class j to the last
    class (the softmax's normaliser cancels), or the score difference for scores."""
    if bool((out >= 0).all()) and bool(torch.allclose(out.double().sum(1), torch.ones(len(out), dtype=torch.float64), atol=1e-4)):
        logp = out.double().clamp_min(1e-300).log()
    else:
        logp = out.double()
    return (logp[:, :hidden] - logp[:, hidden : hidden + 1]).float()


@pytest.mark.part("rnn_forward")
@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(c): dropout on the last state, by hand, only while training: each unit zeroed with probability "
                  "dropout_ratio, the kept ones divided by 1 - dropout_ratio")
def test_rnn_dropout(sub, gen):
    """RNN dropout: off in eval mode; in training each unit of the last state is zeroed with probability p, the rest
    divided by 1 - p"""
    p_drop, hid = 0.3, 6
    rnn = sub.new("hw4_rnn.RNN", V, IN, hid, hid + 1, p_drop)
    infos = rnn.parameters()
    values = random_values([(q.name, q.shape) for q in infos], gen)
    for k, q in enumerate(infos):  # W_hy = [I | 0] (either orientation), b_hy = 0: the output shows the state
        if q.shape in ((hid, hid + 1), (hid + 1, hid)):
            eye = torch.cat([torch.eye(hid), torch.zeros(hid, 1)], 1)
            values[k] = eye if q.shape == (hid, hid + 1) else eye.T
        elif q.shape in ((hid + 1,), (1, hid + 1)):
            values[k] = torch.zeros(q.shape)
    rnn.set_parameters(values)
    B, L = 64, 5
    inputs = torch.randint(2, V, (L, B), generator=gen)
    length = torch.full((B,), L)
    rnn.call("eval")
    first = expect.tensor(rnn.call("__call__", inputs, length, seed=1), "RNN output in eval mode", shape=(B, hid + 1))
    second = expect.tensor(rnn.call("__call__", inputs, length, seed=2), "RNN output in eval mode", shape=(B, hid + 1))
    expect.true(same(first, second, atol=1e-6), "in eval mode the RNN gives different outputs for the same input: "
                "dropout must be applied only while training (self.training)", "dropout in eval mode")
    h = hidden_readout(first, hid)
    expect.true(bool(torch.isfinite(h).all()), "with W_hy = [I | 0] and b_hy = 0 the RNN's output in eval mode does not "
                "show the last state: the output layer must be softmax(h W_hy + b_hy) on the last state",
                "output layer not as described")
    rnn.call("train")
    ratios = []
    for k in range(4):
        dropped = hidden_readout(expect.tensor(rnn.call("__call__", inputs, length, seed=11 + k),
                                               "RNN output in training mode", shape=(B, hid + 1)), hid)
        keep = h.abs() > 1e-3
        ratios.append((dropped[keep] / h[keep]).double())
    r = torch.cat(ratios)
    zero = r.abs() < 1e-3
    frac = float(zero.double().mean())
    kept = r[~zero]
    if bool(zero.all()) or not len(kept):
        expect.fail("in training mode the last state is all zeros", "every unit dropped")
    scale = float(kept.median())
    if not bool(zero.any()) and abs(scale - 1) < 1e-3:
        expect.fail("in training mode the RNN's last state is unchanged: no dropout is applied while training",
                    "no dropout in training")
    uniform = bool(((kept - scale).abs() < 1e-3 * max(1.0, abs(scale))).all())
    expect.true(uniform and bool(zero.any()), "in training mode the last state is not the eval-mode state with some "
                "units zeroed and the others scaled: apply dropout to h at each text's last step, just before the "
                "output layer", "dropout not applied to the last state")
    if abs(frac - (1 - p_drop)) < 0.1 and abs(frac - p_drop) > 0.15:
        expect.fail(f"about {frac:.0%} of the units are zeroed with dropout_ratio = {p_drop}: units are kept with "
                    "probability dropout_ratio instead of dropped with it", "keep and drop probabilities swapped")
    expect.true(abs(frac - p_drop) < 0.1, f"about {frac:.0%} of the units are zeroed with dropout_ratio = {p_drop}",
                "wrong dropout probability")
    if abs(scale - 1) < 1e-3:
        expect.fail("the units kept by dropout are not rescaled: divide them by 1 - dropout_ratio so that the expected "
                    "value is the same as in eval mode", "dropout not rescaled")
    if abs(scale - (1 - p_drop)) < 1e-3:
        expect.fail("the units kept by dropout are multiplied by 1 - dropout_ratio; divide by it instead",
                    "dropout rescaled the wrong way")
    expect.true(abs(scale - 1 / (1 - p_drop)) < 1e-3, f"the units kept by dropout are scaled by {scale:.3f}; they must "
                f"be divided by 1 - dropout_ratio (x {1 / (1 - p_drop):.3f})", "dropout rescaled wrongly")


# ------------------------------------------------------------------ 1(d) compute_loss (5 points)


def loss_case(gen: torch.Generator, b: int = 9, c: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    prediction = torch.softmax(2 * torch.randn(b, c, generator=gen), dim=1)
    label = torch.randint(0, c, (b,), generator=gen)
    return prediction, label


def loss_pair(sub, prediction, label):
    rnn = sub.new("hw4_rnn.RNN", V, IN, H, prediction.shape[1], 0.0)
    out = rnn.call("compute_loss", prediction, label)
    return expect.pair(out, "compute_loss's return value (loss, n_correct)")


@pytest.mark.part("rnn_loss")
@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(d): compute_loss returns the cross-entropy of the probabilities (mean over the batch), without "
                  "torch.nn losses")
def test_compute_loss_value(sub, gen):
    """compute_loss: the mean cross-entropy -log p(label) over the batch, from the probabilities"""
    prediction, label = loss_case(gen)
    loss, _ = loss_pair(sub, prediction, label)
    loss = expect.tensor(loss, "compute_loss's loss", dtype="float")
    expect.true(loss.numel() == 1, f"compute_loss's loss should be a scalar, got shape {tuple(loss.shape)}",
                "loss is not a scalar")
    nll = -prediction.double().log().gather(1, label[:, None]).squeeze(1)
    want = float(nll.mean())
    value = float(loss.reshape(()).double())
    if abs(value - want) <= 1e-4 * max(1.0, abs(want)):
        return
    alternatives = {
        "the losses are summed over the batch instead of averaged": float(nll.sum()),
        "the sign is wrong (the loss should be -log p, a positive number)": -want,
        "the probabilities are passed through another (log-)softmax, as if they were scores":
            float(-torch.log_softmax(prediction.double(), 1).gather(1, label[:, None]).mean()),
        "-log p is averaged over every class, not taken at the label": float(-prediction.double().log().mean()),
        "the log is missing (the loss is 1 - p or -p of the true class)":
            float((1 - prediction.double().gather(1, label[:, None])).mean()),
    }
    for mistake, alt in alternatives.items():
        if abs(value - alt) <= 1e-4 * max(1.0, abs(alt)):
            expect.fail(f"compute_loss's loss is wrong: {mistake}", mistake)
    expect.fail("compute_loss's loss is not the mean over the batch of -log(prediction[i, label[i]])", "wrong loss")


@pytest.mark.part("rnn_loss")
@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(d): compute_loss also counts the number of correct predictions (arg-max class = label)")
def test_compute_loss_n_correct(sub, gen):
    """compute_loss: n_correct counts the texts whose most probable class is the label"""
    for _ in range(2):
        prediction, label = loss_case(gen, b=12)
        label[:6] = prediction[:6].argmax(1)  # some right, some wrong
        _, n_correct = loss_pair(sub, prediction, label)
        value = expect.scalar(n_correct, "compute_loss's n_correct")
        want = int((prediction.argmax(1) == label).sum())
        if value == want:
            continue
        if abs(value - want / len(label)) < 1e-6:
            expect.fail("compute_loss's n_correct is the fraction of correct predictions; the handout asks for their "
                        "number", "accuracy instead of a count")
        if value == len(label) - want:
            expect.fail("compute_loss's n_correct counts the wrong predictions", "counts the wrong ones")
        expect.fail(f"compute_loss's n_correct is {value:g} for a batch with a different number of correct predictions",
                    "wrong count")


@pytest.mark.part("rnn_loss")
@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(d)/(e): the loss is a tensor that training back-propagates through (loss.backward())")
def test_compute_loss_gradient(sub, gen):
    """compute_loss: the loss back-propagates to the probabilities (loss.backward() reaches the model)"""
    prediction, label = loss_case(gen)
    out = sub.run_recipe("rnn_loss_gradient", model_args={"vocab_size": V, "input_size": IN, "hidden_size": H,
                                                          "num_class": prediction.shape[1], "dropout_ratio": 0.0},
                         prediction=prediction, label=label)
    expect.true(isinstance(out, dict) and "grad" in out, "the gradient probe returned a malformed result")
    expect.true(out["grad"] is not None, "compute_loss's loss does not depend on the probabilities through autograd: "
                "no gradient reaches them (was the loss built from .item() or numpy values?)", "no gradient")
    grad = expect.tensor(out["grad"], "the gradient of compute_loss's loss", shape=tuple(prediction.shape), dtype="float")
    # the value of the loss is graded by test_compute_loss_value; here only that training can use it
    expect.true(bool((grad != 0).any()), "compute_loss's loss has a zero gradient with respect to the probabilities: "
                "training could not change the model", "no gradient")


# ------------------------------------------------------------------ 1(e) train and evaluate (5 points)


def pipeline_batches(gen: torch.Generator, n: int, b: int = 8, vocab: int = 20, classes: int = 3):
    out = []
    for _ in range(n):
        length = torch.randint(1, 7, (b,), generator=gen)
        text = torch.randint(2, vocab, (int(length.max()), b), generator=gen)
        label = torch.randint(0, classes, (b,), generator=gen)
        out.append((text, label, length))
    return out


def pipeline(sub, gen, seed):
    kwargs = {"train_batches": pipeline_batches(gen, 6), "eval_batches": pipeline_batches(gen, 4), "vocab_size": 20,
              "num_class": 3, "lr": 0.02, "seed": seed % 100_000}
    got = sub.run_recipe("rnn_pipeline", **kwargs)
    expect.true(isinstance(got, dict) and "train_result" in got, "the train/evaluate probe returned a malformed result")
    return got, run_reference_recipe("rnn_pipeline", **kwargs), kwargs


def pair_of_numbers(value, what: str) -> tuple[float, float]:
    a, b = expect.pair(value, what)
    return expect.scalar(a, f"{what}[0] (the average loss)"), expect.scalar(b, f"{what}[1] (the accuracy)")


def params_close(a, b) -> bool:
    return (isinstance(a, list) and len(a) == len(b)
            and all(same(x, y, atol=1e-6, rtol=1e-5) for x, y in zip(a, b, strict=True)))


@pytest.mark.part("rnn_train_eval")
@pytest.mark.points(3.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(e): train uses model.compute_loss and steps the pipeline's scheduler (counted in batches) after "
                  "every optimizer step")
def test_train_one_epoch(sub, gen, seed):
    """train: one epoch with compute_loss, backward, clipping, optimizer step and a scheduler step per batch"""
    got, want, kwargs = pipeline(sub, gen, seed)
    n = len(kwargs["train_batches"])
    steps = got.get("train_scheduler_steps")
    if steps != want["train_scheduler_steps"]:
        if steps == 0:
            expect.fail("train never steps the scheduler: the pipeline's OneCycleLR counts batches, so call "
                        "scheduler.step() after every optimizer.step() inside train", "scheduler not stepped")
        expect.fail(f"over {n} batches train stepped the scheduler {steps} times; step it once per batch, after "
                    "optimizer.step()", "scheduler stepped the wrong number of times")
    if params_close(got.get("train_params"), got.get("initial_params")):
        expect.fail("after train the model's parameters have not changed: call loss.backward() and optimizer.step() "
                    "for every batch", "no optimisation step")
    expect.true(params_close(got.get("train_params"), want["train_params"]), "after one epoch of train the parameters "
                "differ from the lab's loop (zero_grad, compute_loss, backward, clip, optimizer step, then scheduler "
                "step, for every batch)", "training step differs")
    loss, acc = pair_of_numbers(got.get("train_result"), "train's return value")
    w_loss, w_acc = want["train_result"]
    expect.true(abs(loss - w_loss) <= 1e-4 * max(1, abs(w_loss)) and abs(acc - w_acc) <= 1e-6,
                "train's (average loss, accuracy) do not match the losses and counts compute_loss gave for the batches",
                "wrong totals")


@pytest.mark.part("rnn_train_eval")
@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P1(e): evaluate returns (average loss, accuracy) from model.compute_loss and leaves the model and "
                  "the scheduler unchanged")
def test_evaluate(sub, gen, seed):
    """evaluate: (average loss, accuracy) from compute_loss, in eval mode, without changing the model"""
    got, want, kwargs = pipeline(sub, gen, seed)
    expect.true(params_close(got.get("eval_params"), got.get("train_params")), "evaluate changed the model's parameters",
                "evaluate trains")
    expect.true(got.get("eval_scheduler_steps") == got.get("train_scheduler_steps"), "evaluate stepped the scheduler",
                "evaluate steps the scheduler")
    loss, acc = pair_of_numbers(got.get("eval_result"), "evaluate's return value")
    # the reference evaluate on the model as the student's train left it (a mistake in train is graded there)
    trained = got.get("train_params")
    probe = recipes()["ProbeClassifier"](kwargs["vocab_size"], kwargs["num_class"])
    expect.true(isinstance(trained, list) and len(trained) == len(list(probe.parameters())) and all(
        isinstance(t, torch.Tensor) and t.shape == p.shape for t, p in zip(trained, probe.parameters(), strict=False)),
        "the train/evaluate probe returned malformed parameters")
    with torch.no_grad():
        for p, t in zip(probe.parameters(), trained, strict=True):
            p.copy_(t)
    w_loss, w_acc = reference("hw4_rnn").evaluate(probe, kwargs["eval_batches"])
    expect.true(abs(loss - w_loss) <= 1e-4 * max(1, abs(w_loss)) and abs(acc - w_acc) <= 1e-6,
                "evaluate's (average loss, accuracy) do not match the losses and counts compute_loss gives for the "
                "batches", "wrong totals")
