"""Hidden tests, Problems 2.2-2.5: vit_solution.MultiHeadedAttention (17 points).

The projections' names are the student's choice, so `forward` is checked through behaviour:
shape, parameter count, permutation equivariance over the sequence, gradient to every
parameter, and values: the student's output must equal the reference wiring applied to the
student's *own* parameters, for some assignment of those parameters to the four roles
(queries, keys, values, output); see `dlgrade.harness.params.attention_wirings`.
"""

import math

import pytest
import torch

from dlgrade.harness import attention as A
from dlgrade.harness import expect
from dlgrade.harness.params import attention_wirings, randomize, same

pytestmark = pytest.mark.part("attention")

B, T, NH, HS = 2, 5, 3, 4  # head_size, num_heads and T all differ, so transposed axes show
D = NH * HS


def new_mha(sub, head_size=HS, num_heads=NH, seq=T):
    return sub.new("vit_solution.MultiHeadedAttention", head_size, num_heads, seq)


# ------------------------------------------------------------------ the formulas


split, merge, weights = A.split_heads, A.merge_heads, A.softmax_weights


def weight_diagnoses(q, k):
    return A.weight_mistakes(q, k)


def mha_forward(x, roles, nh, variant=None):
    """The reference wiring on given (W, b) pairs for q, k, v, o; `variant` names a known mistake."""
    (wq, bq), (wk, bk), (wv, bv) = roles[:3]
    b, t, d = x.shape
    hs = d // nh
    q, k, v = (x @ w.T + bias for w, bias in ((wq, bq), (wk, bk), (wv, bv)))
    if variant in ("view", "split_view"):
        q, k, v = (z.reshape(b, nh, t, hs) for z in (q, k, v))
    else:
        q, k, v = (split(z, nh) for z in (q, k, v))
    scale = {"unscaled": 1.0, "width": math.sqrt(d)}.get(variant, math.sqrt(hs))
    a = (weights(q, k, mask=A.causal_mask(t)) if variant == "causal"
         else weights(q, k, scale=scale, dim=-2 if variant == "query_axis" else -1))
    heads = a @ v
    if variant in ("view", "merge_view"):
        out = heads.reshape(b, t, d)
    elif variant == "merge_order":
        out = heads.permute(0, 2, 3, 1).reshape(b, t, d)
    else:
        out = merge(heads)
    if variant == "no_output" or len(roles) == 3:
        return out
    wo, bo = roles[3]
    return out @ wo.T + bo


FORWARD_MISTAKES = {
    "unscaled": "the attention scores are not divided by sqrt(head_size)",
    "width": "the attention scores are divided by sqrt(num_heads * head_size) instead of sqrt(head_size)",
    "query_axis": "the softmax is taken over the query axis instead of the key axis",
    "view": "the heads are split and merged with a reshape/view alone, without transposing heads and time",
    "split_view": "the heads are split with a reshape/view to (B, heads, T, head_size) without a transpose",
    "merge_view": "the heads are merged with a reshape/view without transposing back first",
    "merge_order": "the heads are merged in (head_size, heads) order instead of (heads, head_size)",
    "causal": "a causal mask is applied; this attention must let every position see every other",
    "no_output": "the output projection is not applied",
}


# ------------------------------------------------------------------ split / merge (4 points)


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P2.2 / docstrings: split_heads (B, T, heads*head_size) -> (B, heads, T, head_size); merge_heads back"
                  " to (B, T, heads*head_size)")
def test_split_merge_heads_shapes(sub, gen):
    """split_heads returns (B, heads, T, head_size) and merge_heads returns (B, T, heads * head_size)"""
    mha = new_mha(sub)
    x = torch.randn(B, T, D, generator=gen)
    expect.tensor(mha.call("split_heads", x), "split_heads output", shape=(B, NH, T, HS))
    y = torch.randn(B, NH, T, HS, generator=gen)
    expect.tensor(mha.call("merge_heads", y), "merge_heads output", shape=(B, T, D))


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.2: y = split_heads(x) -> y[0, 1, 2, 3] = x[0, 2, num_heads * 1 + 3] (head h holds features "
                  "h*head_size + i)")
def test_split_heads_values(sub, gen):
    """split_heads: y[b, h, t, i] = x[b, t, h * head_size + i]"""
    mha = new_mha(sub)
    x = torch.randn(B, T, D, generator=gen)
    expect.close(mha.call("split_heads", x), split(x, NH), "split_heads output", atol=1e-6, rtol=0, diagnoses={
        "reshapes straight to (B, heads, T, head_size) without moving the head axis: cut the features into "
        "(heads, head_size) first, then transpose heads and time": x.reshape(B, NH, T, HS),
        "cuts the feature axis as (head_size, heads) instead of (heads, head_size)":
            x.reshape(B, T, HS, NH).permute(0, 3, 1, 2),
    })


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.2: x = merge_heads(y) -> x[0, 1, num_heads * 2 + 3] = y[0, 2, 1, 3]")
def test_merge_heads_values(sub, gen):
    """merge_heads: x[b, t, h * head_size + i] = y[b, h, t, i]"""
    mha = new_mha(sub)
    y = torch.randn(B, NH, T, HS, generator=gen)
    expect.close(mha.call("merge_heads", y), merge(y), "merge_heads output", atol=1e-6, rtol=0, diagnoses={
        "reshapes straight to (B, T, heads * head_size) without first moving the head axis back behind time":
            y.reshape(B, T, D),
        "concatenates the features as (head_size, heads) instead of (heads, head_size)":
            y.permute(0, 2, 3, 1).reshape(B, T, D),
    })


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.2: these two functions are exactly inverse from one another")
def test_split_merge_roundtrip(sub, gen):
    """merge_heads(split_heads(x)) == x and split_heads(merge_heads(y)) == y, for two head layouts"""
    for hs, nh, t in [(HS, NH, T), (2, 4, 3)]:
        mha = new_mha(sub, hs, nh, t)
        x = torch.randn(3, t, hs * nh, generator=gen)
        back = mha.call("merge_heads", mha.call("split_heads", x))
        expect.close(back, x, f"merge_heads(split_heads(x)) with head_size={hs}, num_heads={nh}", atol=1e-6, rtol=0)
        y = torch.randn(3, nh, t, hs, generator=gen)
        back = mha.call("split_heads", mha.call("merge_heads", y))
        expect.close(back, y, f"split_heads(merge_heads(y)) with head_size={hs}, num_heads={nh}", atol=1e-6, rtol=0)


# ------------------------------------------------------------------ attention weights (8 points)


def qk(gen, b=B, nh=NH, t=T, hs=HS, scale=1.0):
    return (scale * torch.randn(b, nh, t, hs, generator=gen), scale * torch.randn(b, nh, t, hs, generator=gen))


@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P2.3: get_attention_weights returns the A_i of all heads at once, (B, heads, T, T)")
def test_attention_weights_shape(sub, gen):
    """get_attention_weights returns (B, heads, T, T)"""
    q, k = qk(gen)
    expect.tensor(new_mha(sub).call("get_attention_weights", q, k), "get_attention_weights output",
                  shape=(B, NH, T, T), dtype="float")


@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.3: the softmax is taken over the whole sequence (the keys): each row is a distribution")
def test_attention_weights_sum_to_one(sub, gen):
    """get_attention_weights: every row (one query) is a distribution over the keys"""
    q, k = qk(gen)
    a = expect.tensor(new_mha(sub).call("get_attention_weights", q, k), "get_attention_weights output",
                      shape=(B, NH, T, T), dtype="float")
    expect.true(bool((a >= 0).all()), "some attention weights are negative (they should come out of a softmax)")
    ones = torch.ones(B, NH, T, dtype=torch.float64)
    if not torch.allclose(a.double().sum(-1), ones, atol=1e-5):
        if torch.allclose(a.double().sum(-2), ones, atol=1e-5):
            expect.fail("the attention weights do not sum to 1 over the key axis (the last axis); they sum to 1 over "
                        "the query axis: the softmax is taken over the wrong axis", "softmax over the query axis")
        expect.fail("the attention weights do not sum to 1 over the key axis (the last axis)")


@pytest.mark.points(4)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.3: A_i = softmax(q_i k_i^T / sqrt(d)), d the head dimension (head_size)")
def test_attention_weights_values(sub, gen):
    """get_attention_weights: softmax(q kᵀ / sqrt(head_size)) over the keys"""
    hs, nh = 8, 2  # sqrt(head_size), sqrt(width), head_size and sqrt(heads) all differ
    q, k = qk(gen, nh=nh, hs=hs)
    got = new_mha(sub, hs, nh).call("get_attention_weights", q, k)
    expect.close(got, weights(q, k), "get_attention_weights output", diagnoses=weight_diagnoses(q, k))


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.3: the same formula for any number of heads, head size and sequence length")
def test_attention_weights_other_sizes(sub, gen):
    """get_attention_weights: correct for other head sizes, head counts and lengths (including T = 1)"""
    for hs, nh, t in [(3, 4, 7), (5, 1, 4), (6, 2, 1)]:
        q, k = qk(gen, b=3, nh=nh, t=t, hs=hs)
        got = new_mha(sub, hs, nh, t).call("get_attention_weights", q, k)
        expect.close(got, weights(q, k), f"get_attention_weights output with head_size={hs}, num_heads={nh}, T={t}",
                     diagnoses=weight_diagnoses(q, k))


@pytest.mark.advice
@pytest.mark.visibility("after_published")
@pytest.mark.spec("Not asked by the handout (it gives softmax as exp(x_t) / sum exp(x_i)): numerical stability is "
                  "advice only")
def test_attention_weights_large_scores(sub, gen):
    """Advice: get_attention_weights stays finite and correct when the scores are large"""
    q, k = qk(gen, scale=8.0)  # scaled scores of a few hundred: exp() overflows float32 without the max shift
    a = new_mha(sub).call("get_attention_weights", q, k)
    expect.tensor(a, "get_attention_weights output", shape=(B, NH, T, T), finite=False)
    expect.true(bool(torch.isfinite(a).all()),
                "get_attention_weights returns NaN or inf when the scores are large: exp() overflows; "
                "subtract each row's maximum before exponentiating (torch.softmax does this)",
                "softmax without the max shift overflows")
    expect.close(a, weights(q, k), "get_attention_weights output for large scores", atol=1e-4,
                 diagnoses=weight_diagnoses(q, k))


# ------------------------------------------------------------------ apply_attention (2 points)


@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P2.4: apply_attention returns concat(h_1, ..., h_m), (B, T, heads*head_size)")
def test_apply_attention_shape(sub, gen):
    """apply_attention returns (B, T, heads * head_size)"""
    q, k = qk(gen)
    v = torch.randn(B, NH, T, HS, generator=gen)
    expect.tensor(new_mha(sub).call("apply_attention", q, k, v), "apply_attention output", shape=(B, T, D), dtype="float")


@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.4: h_i = A_i v_i from your attention weights, concatenated over the heads")
def test_apply_attention_values(sub, gen):
    """apply_attention: concatenates the heads' weighted sums of the values"""
    mha = new_mha(sub)
    q, k = qk(gen)
    v = torch.randn(B, NH, T, HS, generator=gen)
    got = mha.call("apply_attention", q, k, v)
    a = weights(q, k)
    # consistent with the student's own get_attention_weights also counts (that part is graded on its own)
    try:
        own = mha.call("get_attention_weights", q, k)
    except Exception:  # noqa: BLE001 - any failure there is graded by the weight tests
        own = None
    if isinstance(own, torch.Tensor) and tuple(own.shape) == (B, NH, T, T) and same(got, merge(own.float() @ v)):
        return
    expect.close(got, merge(a @ v), "apply_attention output", diagnoses={
        "the heads are merged with a reshape without moving the head axis back behind time": (a @ v).reshape(B, T, D),
        "uses the transposed weights (keys attend to queries)": merge(a.transpose(-2, -1) @ v),
        "the attention weights are not scaled by 1/sqrt(head_size)": merge(weights(q, k, scale=1.0) @ v),
        "the softmax is taken over the query axis": merge(weights(q, k, dim=-2) @ v),
        "the values are returned without being weighted by the attention": merge(v),
        "the heads are concatenated in (head_size, heads) order instead of (heads, head_size) (see merge_heads)":
            (a @ v).permute(0, 2, 3, 1).reshape(B, T, D),
    })


# ------------------------------------------------------------------ forward (3 points)


@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P2.5: forward(hidden_states) returns the input's shape")
def test_attention_forward_shape(sub, gen):
    """MultiHeadedAttention forward returns the input's shape (B, T, heads * head_size)"""
    x = torch.randn(B, T, D, generator=gen)
    expect.tensor(new_mha(sub)(x), "MultiHeadedAttention output", shape=(B, T, D), dtype="float")


@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P2.5 / INTERFACES: affine projections with biases for Q, K, V and the output: 4*(d^2 + d) "
                  "parameters, d = heads*head_size")
def test_attention_parameter_count(sub):
    """MultiHeadedAttention has exactly 4·(d² + d) parameters (four affine maps with bias), d = heads·head_size"""
    for hs, nh in [(HS, NH), (2, 4)]:
        d = hs * nh
        params = new_mha(sub, hs, nh).parameters()
        count = sum(math.prod(p.shape) for p in params)
        want = 4 * (d * d + d)
        if count == 3 * (d * d + d):
            expect.fail(f"with head_size={hs}, num_heads={nh} your module has {count} parameters = 3·(d² + d), "
                        f"expected 4·(d² + d) = {want}: the output projection seems to be missing",
                        "no output projection")
        expect.true(count == want, f"with head_size={hs}, num_heads={nh} (d = {d}) your module has {count} parameters, "
                    f"expected 4·(d² + d) = {want} (queries, keys, values and output projections, each d×d with a bias)")


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.5: A(Q, K, V) = concat(h_1..h_m) W_O + b_O has no positional term: permuting the tokens permutes "
                  "the output")
def test_attention_permutation_equivariant(sub, gen):
    """MultiHeadedAttention: permuting the input positions permutes the output the same way"""
    mha = new_mha(sub)
    x = torch.randn(B, T, D, generator=gen)
    perm = torch.randperm(T, generator=gen)
    if bool((perm == torch.arange(T)).all()):
        perm = torch.roll(perm, 1)
    y = expect.tensor(mha(x), "MultiHeadedAttention output", shape=(B, T, D))
    y_perm = expect.tensor(mha(x[:, perm]), "MultiHeadedAttention output", shape=(B, T, D))
    expect.true(same(y_perm, y[:, perm]),
                "permuting the positions of the input does not simply permute the output: self-attention without "
                "positional terms must treat the sequence as a set (no mask, no position-dependent weights)",
                "output depends on positions (a mask or positional terms inside attention)")


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.5: every projection is learnable and used in forward (W_Q, W_K, W_V, W_O with biases)")
def test_attention_gradients(sub, gen):
    """MultiHeadedAttention: every parameter and the input receive a gradient"""
    mha = new_mha(sub)
    infos = mha.parameters()
    expect.true(len(infos) > 0, "MultiHeadedAttention has no parameters (create the projections in __init__)")
    x = torch.randn(B, T, D, generator=gen)
    res = mha.backward("__call__", x, grad_output=torch.randn(B, T, D, generator=gen))
    expect.true(res.input_grads[0] is not None and bool(res.input_grads[0].abs().sum() > 0),
                "no gradient reaches the input of MultiHeadedAttention")
    unused = [p.name for p in infos if p.requires_grad and res.param_grads.get(p.name) is None]
    expect.true(not unused, f"these parameters receive no gradient (they are not used in forward): {', '.join(unused)}")
    frozen = [p.name for p in infos if not p.requires_grad]
    expect.true(not frozen, f"these parameters do not require grad: {', '.join(frozen)}")


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.5: project with W_Q, W_K, W_V (+ biases), split, attend, merge, project with W_O + b_O (your own "
                  "parameters, any layout)")
def test_attention_forward_values(sub, gen):
    """MultiHeadedAttention forward: project, split, attend, merge, output projection (checked on your own weights)"""
    mha = new_mha(sub)
    params = randomize(mha, gen)  # by name, in registration order
    x = torch.randn(B, T, D, generator=gen)
    got = expect.tensor(mha(x), "MultiHeadedAttention output", shape=(B, T, D))
    wirings = list(attention_wirings(params, D, NH))
    if not wirings:
        shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in params.items()) or "none"
        expect.fail("could not line your parameters up with the query, key, value and output projections, so the "
                    f"forward pass could not be checked. With d = {D} we look for four (d, d) weights with four (d,) "
                    "biases (e.g. four nn.Linear(d, d)), or one fused (3d, d) query/key/value weight with its (3d,) "
                    f"bias plus a (d, d) output weight with its (d,) bias. Your parameters: {shapes}")
    for _, roles in wirings:
        if len(roles) == 4 and same(got, mha_forward(x, roles, NH)):
            return
    for variant, name in FORWARD_MISTAKES.items():
        for _, roles in wirings:
            if same(got, mha_forward(x, roles, NH, variant)):
                expect.fail(f"MultiHeadedAttention output is wrong: {name}", name)
    expect.fail("MultiHeadedAttention output does not match multi-head attention computed with your own parameters. "
                "We tried every assignment of your parameters to the query, key, value and output projections "
                "(x @ Wᵀ + b, or x @ W + b for raw matrices) and computed: split into heads, "
                "softmax(q kᵀ / sqrt(head_size)) over the keys, weighted sum of the values, merge the heads, output "
                "projection; none of them gives your output")
