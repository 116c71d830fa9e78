"""Hidden tests: models/Transformer.py, FullTransformerTranslator (8 points).

The layers are created in a prescribed order (nn.Transformer first, then the four embeddings,
then the output layer), so the reference's weights are transplanted in creation order. A
decoder input is `add_start_token(tgt)`, so the output at position i may depend on target
tokens 0..i-1 only. Either way of running the model (with or without autograd recording;
with or without a memory padding mask) is accepted: they differ only in how padded source
positions leak into the decoder.
"""

import pytest
import torch

from dlgrade.harness import expect
from graders.seq2seq_translation._support import MODULES, heatmap, transplant

pytestmark = pytest.mark.part("full_transformer")

T, V_IN, V_OUT, PAD, SOS = 7, 13, 11, 1, 2
ARGS = {"hidden_dim": 8, "num_heads": 2, "dim_feedforward": 12, "num_layers_enc": 1, "num_layers_dec": 1, "dropout": 0.0,
        "max_length": 9, "ignore_index": PAD}
HINT = " The handout's order: nn.Transformer, srcembeddingL, tgtembeddingL, srcposembeddingL, tgtposembeddingL, the output Linear."


def setup(sub, ref, gen):
    obj = sub.new("models.Transformer.FullTransformerTranslator", V_IN, V_OUT, "cpu", **ARGS)
    obj.call("eval")
    reference = ref.module(MODULES["transformer"]).FullTransformerTranslator(V_IN, V_OUT, "cpu", **ARGS).eval()
    transplant(obj, reference, gen, "FullTransformerTranslator", HINT)
    return obj, reference


def sentences(gen, b, vocab, lengths=None):
    """<sos> words <eos> <pad>...; `lengths` (words per row) leaves room for padding."""
    x = torch.randint(4, vocab, (b, T), generator=gen)
    x[:, 0] = SOS
    for i, n in enumerate(lengths or []):
        x[i, n + 1] = 3
        x[i, n + 2:] = PAD
    return x


def forward(m, src, tgt, variant=None, memory_mask=False, shift=True):
    """The reference forward; `variant` names a known mistake."""
    if shift:
        tgt = m.add_start_token(tgt)
    pos_s, pos_t = torch.arange(src.shape[1]), torch.arange(tgt.shape[1])
    src_emb = m.srcembeddingL(src) + m.srcposembeddingL(pos_s)
    tgt_emb = m.tgtembeddingL(tgt) + m.tgtposembeddingL(pos_t)
    causal = None if variant == "no_causal" else torch.triu(torch.ones(tgt.shape[1], tgt.shape[1], dtype=torch.bool), 1)
    pad = 0 if variant == "pad0" else PAD
    src_kpm = None if variant in ("no_src_mask", "no_masks") else src == pad
    tgt_kpm = None if variant in ("no_tgt_mask", "no_masks") else tgt == pad
    out = m.transformer(src_emb, tgt_emb, tgt_mask=causal, src_key_padding_mask=src_kpm, tgt_key_padding_mask=tgt_kpm,
                        memory_key_padding_mask=src_kpm if memory_mask else None)
    return m.output_layer(out)


def accepted(fn):
    """The reference's answers under every accepted way of running it."""
    out = []
    for memory_mask in (False, True):
        with torch.enable_grad():
            out.append(fn(memory_mask).detach())
        with torch.no_grad():
            out.append(fn(memory_mask))
    return out


def close_any(got, wants, what, diagnoses):
    for want in wants[1:]:
        if isinstance(got, torch.Tensor) and got.shape == want.shape and torch.allclose(got.double(), want.double(), atol=1e-4, rtol=1e-4):
            return
    expect.close(got, wants[0], what, atol=1e-4, rtol=1e-4, diagnoses=diagnoses)


MISTAKES = {
    "no_causal": "no causal target mask: position i attends to later target positions",
    "no_src_mask": "the source padding mask is missing (src_key_padding_mask = src == ignore_index)",
    "no_tgt_mask": "the target padding mask is missing (tgt_key_padding_mask from the shifted target)",
    "no_masks": "neither padding mask is given",
    "pad0": "the padding masks compare with 0; the pad id is ignore_index",
}


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
def test_full_transformer_layers(sub, ref, gen):
    """FullTransformerTranslator: layers created in the prescribed order, forward gives (B, T, output_size)"""
    obj, _ = setup(sub, ref, gen)
    out = obj(sentences(gen, 2, V_IN), sentences(gen, 2, V_OUT))
    expect.tensor(out, "forward(src, tgt)", shape=(2, T, V_OUT), dtype="float")


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
def test_full_transformer_causal(sub, ref, gen, record):
    """forward: the output at position i does not depend on target tokens at positions i and later"""
    obj, _ = setup(sub, ref, gen)
    src = sentences(gen, 1, V_IN).expand(T + 1, T).clone()
    tgt = sentences(gen, 1, V_OUT).expand(T + 1, T).clone()
    for j in range(T):  # row j + 1 changes target token j
        tgt[j + 1, j] = 4 + (int(tgt[j + 1, j]) - 4 + 3) % (V_OUT - 4)
    out = expect.tensor(obj(src, tgt), "forward(src, tgt)", shape=(T + 1, T, V_OUT), dtype="float").double()
    influence = (out[1:] - out[:1]).abs().amax(dim=-1).T  # [i, j]: change of output i when target token j changes
    record["heatmaps"] = [heatmap("how much output i changes when target token j changes", influence, "target token j",
                                  "output position i")]
    leaks = [(i, j) for i in range(T) for j in range(i, T) if influence[i, j] > 1e-5]
    if leaks:
        diagonal = all(i == j for i, j in leaks)
        i, j = leaks[0]
        expect.fail(f"the output at position {i} changes when the target token at position {j} changes: the decoder "
                    "sees the token it must predict" + (" (the target is not shifted right with add_start_token)" if diagonal
                                                        else " (check the causal target mask)"),
                    "target not shifted" if diagonal else "no causal mask")
    expect.true(bool((influence.tril(-1) > 1e-6).any()), "the output never depends on earlier target tokens",
                "target ignored")


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
def test_full_transformer_padding_masks(sub, ref, gen):
    """forward: source and target padding (ignore_index) is masked"""
    obj, reference = setup(sub, ref, gen)
    src = sentences(gen, 3, V_IN, lengths=[2, 5, 3])
    tgt = sentences(gen, 3, V_OUT, lengths=[4, 2, 3])
    got = obj(src, tgt)
    wants = accepted(lambda mm: forward(reference, src, tgt, memory_mask=mm))
    variants = {msg: forward(reference, src, tgt, k).detach() for k, msg in MISTAKES.items() if k != "no_causal"}
    close_any(got, wants, "forward(src, tgt) on padded sentences", variants)


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
def test_full_transformer_forward(sub, ref, gen):
    """forward: shifted target, causal mask and padding masks give the reference's scores"""
    obj, reference = setup(sub, ref, gen)
    src = sentences(gen, 4, V_IN, lengths=[5, 3, 2, 4])
    tgt = sentences(gen, 4, V_OUT, lengths=[5, 4, 2, 3])
    got = obj(src, tgt)
    wants = accepted(lambda mm: forward(reference, src, tgt, memory_mask=mm))
    variants = {msg: forward(reference, src, tgt, k).detach() for k, msg in MISTAKES.items()}
    variants["the target is not shifted right: call add_start_token(tgt) first"] = forward(reference, src, tgt, shift=False).detach()
    close_any(got, wants, "forward(src, tgt)", variants)


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
def test_full_transformer_generate(sub, ref, gen):
    """generate_translation: greedy, one position at a time, scores (B, T, output_size)"""
    obj, reference = setup(sub, ref, gen)
    src = sentences(gen, 3, V_IN, lengths=[5, 3, 4])
    got = obj.call("generate_translation", src)
    expect.tensor(got, "generate_translation(src)", shape=(3, T, V_OUT), dtype="float")

    def greedy(memory_mask, pick_last=False):
        tgt = torch.full((3, T), PAD, dtype=torch.long)
        outs = torch.zeros(3, T, V_OUT)
        for t in range(T):
            scores = forward(reference, src, tgt, memory_mask=memory_mask)
            outs[:, t] = scores[:, -1] if pick_last else scores[:, t]
            tgt[:, t] = outs[:, t].argmax(-1)
        return outs

    wants = accepted(greedy)
    close_any(got, wants, "generate_translation(src)", {
        "each step keeps the scores of the LAST position; the prediction for step t is at position t":
            greedy(False, pick_last=True).detach()})
