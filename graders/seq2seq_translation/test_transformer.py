"""Hidden tests: models/Transformer.py, the encoder-only TransformerTranslator (9 points).

Layers the handout names (embeddingL, posembeddingL, k1 v1 q1 k2 v2 q2,
attention_head_projection, norm_mh) are matched by name. The feed-forward layers, their
LayerNorm and the final layer are the student's to name: their parameters are paired with the
reference's by creation order, or failing that by any assignment consistent with the shapes,
and a method passes when its output matches the reference for one such pairing.
"""

import pytest
import torch

from dlgrade.errors import Feedback
from dlgrade.harness import attention as A
from dlgrade.harness import expect
from dlgrade.harness.params import candidates, heatmap, random_values, transplant
from graders.seq2seq_translation._support import MODULES

pytestmark = pytest.mark.part("transformer")

B, T, V_IN, V_OUT = 3, 7, 13, 11
ARGS = {"hidden_dim": 8, "num_heads": 2, "dim_feedforward": 12, "dim_k": 6, "dim_v": 6, "dim_q": 6, "max_length": 9}
FIXED = ["embeddingL.weight", "posembeddingL.weight", "k1.weight", "k1.bias", "v1.weight", "v1.bias", "q1.weight", "q1.bias",
         "k2.weight", "k2.bias", "v2.weight", "v2.bias", "q2.weight", "q2.bias", "attention_head_projection.weight",
         "attention_head_projection.bias", "norm_mh.weight", "norm_mh.bias"]


def setup(sub, ref, gen):
    obj = sub.new("models.Transformer.TransformerTranslator", V_IN, V_OUT, "cpu", **ARGS)
    obj.call("eval")
    reference = ref.module(MODULES["transformer"]).TransformerTranslator(V_IN, V_OUT, "cpu", **ARGS).eval()
    named = list(reference.named_parameters())
    maps = candidates(obj.parameters(), named, FIXED, "TransformerTranslator")
    return obj, reference, maps, random_values(named, gen)


def check(sub, ref, gen, method, make_input, what, variants=None):
    """The student's `method` must match the reference's for one pairing of the free layers."""
    obj, reference, maps, values = setup(sub, ref, gen)
    x = make_input(gen)
    failure = None
    for mapping in maps:
        transplant(obj, reference, gen, "TransformerTranslator", mapping=mapping, values=values)
        got = obj.call(method, x) if method != "forward" else obj(x)
        with torch.no_grad():
            want = getattr(reference, method)(x)
            alts = {msg: fn(reference, x) for msg, fn in (variants or {}).items()}
        try:
            expect.close(got, want, what, diagnoses=alts)
            return reference, x
        except Feedback as exc:
            failure = failure or exc
    assert failure is not None
    raise failure


def tokens(gen):
    return torch.randint(0, V_IN, (B, T), generator=gen)


def hidden_states(gen):
    return torch.randn(B, T, ARGS["hidden_dim"], generator=gen)


def mha(m, x, variant=None):
    """The reference attention on its own layers; `variant` names a known mistake."""
    scale = {"unscaled": 1.0, "hidden": m.hidden_dim ** 0.5}.get(variant, m.dim_k ** 0.5)
    heads = []
    for k, v, q in ((m.k1, m.v1, m.q1), (m.k2, m.v2, m.q2)):
        a = A.softmax_weights(q(x), k(x), scale=scale, dim=1 if variant == "query_axis" else 2)  # (B, T, T)
        heads.append(a @ v(x))
    out = m.attention_head_projection(torch.cat(heads, dim=2) if variant != "heads_swapped" else torch.cat(heads[::-1], dim=2))
    if variant == "no_residual":
        return m.norm_mh(out)
    if variant == "no_norm":
        return x + out
    return m.norm_mh(x + out)


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: embed(inputs (B, T)) -> (B, T, H) = token embedding (embeddingL) + learned position "
                  "embedding (posembeddingL)")
def test_transformer_embed(sub, ref, gen):
    """embed: token embedding plus learned position embedding"""
    check(sub, ref, gen, "embed", tokens, "embed(inputs)", {
        "the position embeddings are not added": lambda m, x: m.embeddingL(x),
        "only the position embeddings are returned": lambda m, x: m.posembeddingL(torch.arange(T)).expand(B, T, -1),
    })


@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: multi_head_attention(inputs): per head softmax(q k^T / sqrt(dim_k)) v from k1 v1 q1 / k2"
                  " v2 q2, concatenated, attention_head_projection, residual + norm_mh")
def test_transformer_multi_head_attention(sub, ref, gen, record):
    """multi_head_attention: two heads of softmax(QK^T / sqrt(dim_k)) V, concatenated, projected, residual + LayerNorm"""
    reference, x = check(sub, ref, gen, "multi_head_attention", hidden_states, "multi_head_attention(inputs)", {
        "the scores are not divided by sqrt(dim_k)": lambda m, x: mha(m, x, "unscaled"),
        "the scores are divided by sqrt(hidden_dim) instead of sqrt(dim_k)": lambda m, x: mha(m, x, "hidden"),
        "the softmax is taken over the queries (dim=1) instead of the keys (the last axis)": lambda m, x: mha(m, x, "query_axis"),
        "the residual connection is missing: norm_mh(inputs + attention)": lambda m, x: mha(m, x, "no_residual"),
        "norm_mh is not applied after the residual connection": lambda m, x: mha(m, x, "no_norm"),
        "the heads are concatenated in the wrong order (head 1 first)": lambda m, x: mha(m, x, "heads_swapped"),
    })
    with torch.no_grad():
        a = torch.softmax(reference.q1(x[:1]) @ reference.k1(x[:1]).transpose(1, 2) / reference.dim_k ** 0.5, dim=2)[0]
    record["heatmaps"] = [heatmap("head 1 attention on a test sentence (the weights your code passed with)", a,
                                  "key position", "query position")]


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: feedforward_layer(inputs): Linear -> ReLU -> Linear with residual + LayerNorm")
def test_transformer_feedforward(sub, ref, gen):
    """feedforward_layer: LayerNorm(inputs + Linear(ReLU(Linear(inputs))))"""
    check(sub, ref, gen, "feedforward_layer", hidden_states, "feedforward_layer(inputs)", {
        "there is no ReLU between the two linear layers": lambda m, x: m.norm_ff(x + m.ff_out(m.ff_in(x))),
        "the residual connection is missing": lambda m, x: m.norm_ff(m.ff_out(m.ff_relu(m.ff_in(x)))),
        "the LayerNorm is not applied after the residual connection": lambda m, x: x + m.ff_out(m.ff_relu(m.ff_in(x))),
    })


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: final_layer(inputs (B, T, H)) -> (B, T, V) scores")
def test_transformer_final_layer(sub, ref, gen):
    """final_layer: a linear map to the output vocabulary (scores, no softmax)"""
    check(sub, ref, gen, "final_layer", hidden_states, "final_layer(inputs)", {
        "a softmax is applied; return the scores (the loss applies the softmax)": lambda m, x: torch.softmax(m.final(x), -1),
        "a log-softmax is applied; return the scores": lambda m, x: torch.log_softmax(m.final(x), -1),
    })


@pytest.mark.points(2)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: forward(inputs) chains embed, multi_head_attention, feedforward_layer and final_layer")
def test_transformer_forward(sub, ref, gen):
    """forward: embed -> multi-head attention -> feed-forward -> final layer, (B, T, output_size)"""
    check(sub, ref, gen, "forward", tokens, "forward(inputs)", {
        "the feed-forward layer is skipped": lambda m, x: m.final_layer(m.multi_head_attention(m.embed(x))),
        "the attention layer is skipped": lambda m, x: m.final_layer(m.feedforward_layer(m.embed(x))),
    })
