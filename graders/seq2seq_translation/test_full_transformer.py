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
from dlgrade.harness.params import heatmap, transplant
from graders.seq2seq_translation._support import MODULES

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


MISTAKES = {
    "no_causal": "no causal target mask: position i attends to later target positions",
    "no_src_mask": "the source padding mask is missing (src_key_padding_mask = src == ignore_index)",
    "no_tgt_mask": "the target padding mask is missing (tgt_key_padding_mask from the shifted target)",
    "no_masks": "neither padding mask is given",
    "pad0": "the padding masks compare with 0; the pad id is ignore_index",
}


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: FullTransformerTranslator creates nn.Transformer (batch_first), srcembeddingL, "
                  "tgtembeddingL, srcposembeddingL, tgtposembeddingL, then the output Linear; forward(src, tgt) -> (B, "
                  "T, V)")
def test_full_transformer_layers(sub, ref, gen):
    """FullTransformerTranslator: layers created in the prescribed order, forward gives (B, T, output_size)"""
    obj, _ = setup(sub, ref, gen)
    out = obj(sentences(gen, 2, V_IN), sentences(gen, 2, V_OUT))
    expect.tensor(out, "forward(src, tgt)", shape=(2, T, V_OUT), dtype="float")


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: forward shifts tgt right with add_start_token and builds a causal target mask (position "
                  "i sees target tokens before i only)")
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
@pytest.mark.spec("INTERFACES: forward builds source and target padding masks with pad id ignore_index")
def test_full_transformer_padding_masks(sub, ref, gen):
    """forward: source and target padding (ignore_index) is masked"""
    obj, reference = setup(sub, ref, gen)
    src = sentences(gen, 3, V_IN, lengths=[2, 5, 3])
    tgt = sentences(gen, 3, V_OUT, lengths=[4, 2, 3])
    got = obj(src, tgt)
    wants = accepted(lambda mm: forward(reference, src, tgt, memory_mask=mm))
    variants = {msg: forward(reference, src, tgt, k).detach() for k, msg in MISTAKES.items() if k != "no_causal"}
    expect.close_any(got, wants, "forward(src, tgt) on padded sentences", atol=1e-4, rtol=1e-4, diagnoses=variants)


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: forward(src, tgt): shifted target, causal mask and padding masks through the given "
                  "layers")
def test_full_transformer_forward(sub, ref, gen):
    """forward: shifted target, causal mask and padding masks give the reference's scores"""
    obj, reference = setup(sub, ref, gen)
    src = sentences(gen, 4, V_IN, lengths=[5, 3, 2, 4])
    tgt = sentences(gen, 4, V_OUT, lengths=[5, 4, 2, 3])
    got = obj(src, tgt)
    wants = accepted(lambda mm: forward(reference, src, tgt, memory_mask=mm))
    variants = {msg: forward(reference, src, tgt, k).detach() for k, msg in MISTAKES.items()}
    variants["the target is not shifted right: call add_start_token(tgt) first"] = forward(reference, src, tgt, shift=False).detach()
    expect.close_any(got, wants, "forward(src, tgt)", atol=1e-4, rtol=1e-4, diagnoses=variants)


GENERATE_READINGS = {
    # name: (first position checked, offset of the forward position that position t must equal)
    "position 0 is the model's own arg-max": (0, 0),
    "position 0 stays <sos>, step t keeps the scores of position t": (1, 0),
    "position 0 stays <sos>, step t keeps the scores of position t - 1": (1, -1),
}


def greedy_readings(obj, src, got):
    """For each reading of generate_translation, your forward on the tokens your own scores chose, or None."""
    chosen = got.argmax(-1)  # (B, T)
    out = {}
    for name, (start, offset) in GENERATE_READINGS.items():
        tgt = chosen.clone()
        if start:
            tgt[:, 0] = SOS
        forward = obj(src, tgt)
        if not isinstance(forward, torch.Tensor) or forward.shape != got.shape:
            return {}
        out[name] = (start, forward[:, start + offset: T + offset] if offset else forward[:, start:])
    return out


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: generate_translation(src) decodes greedily, one position at a time -> (B, T, V); "
                  "position 0 may stay <sos> or take the model's own arg-max")
def test_full_transformer_generate(sub, ref, gen):
    """generate_translation: greedy, one position at a time, scores (B, T, output_size)"""
    obj, _ = setup(sub, ref, gen)
    src = sentences(gen, 3, V_IN, lengths=[5, 3, 4])
    got = expect.tensor(obj.call("generate_translation", src), "generate_translation(src)", shape=(3, T, V_OUT),
                        dtype="float")
    # checked against YOUR forward (graded on its own): each step's scores must be those your forward gives for the
    # tokens chosen at the earlier steps; whether position 0 stays <sos> is left open by the handout
    for start, want in greedy_readings(obj, src, got).values():
        if torch.allclose(got[:, start:start + want.shape[1]].double(), want.double(), atol=1e-4, rtol=1e-4):
            return
    tgt = torch.full((3, T), PAD, dtype=torch.long)
    last = torch.zeros(3, T, V_OUT)
    for t in range(T):  # a known mistake: every step keeps the scores of the last position
        scores = expect.tensor(obj(src, tgt), "forward(src, tgt)", shape=(3, T, V_OUT))
        last[:, t] = scores[:, -1]
        tgt[:, t] = last[:, t].argmax(-1)
    expect.true(not torch.allclose(got.double(), last.double(), atol=1e-4, rtol=1e-4),
                "generate_translation(src) is wrong: each step keeps the scores of the LAST position; the prediction for "
                "step t is at position t", "generate keeps the last position's scores")
    expect.fail("generate_translation(src) is not a greedy decoding by your own forward: at each step t, run forward on "
                "the tokens chosen at steps 0..t-1 and keep the scores of position t (position 0 may also stay <sos>)",
                "not greedy decoding")
