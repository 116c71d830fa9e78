"""Hidden tests, Problem 2: AttentionHead (4 points), MultiHeadedAttention (3), Transformer (3).

Each class is checked on the student's own weights (randomised here). The multi-head layer is checked by
composing the student's own heads (called in the worker) with its output projection, and the Transformer by
chaining the student's own layers, so that a mistake in a head is graded once, in P2(a).
"""

from __future__ import annotations

import math

import pytest
import torch

from dlgrade.harness import attention as A
from dlgrade.harness import expect
from dlgrade.harness.params import randomize, same
from graders.transformer_vit_gpt._support import name, prefixes

B, T, DIM, HID, NH = 2, 5, 12, 5, 3  # HID*NH != DIM and sqrt(HID) != sqrt(DIM): mixed-up sizes show


def random_mask(gen: torch.Generator, b: int = B, t: int = T) -> torch.Tensor:
    """(B, T, T) float of {0, 1}; every token may attend to itself, so no row is empty."""
    mask = (torch.rand(b, t, t, generator=gen) < 0.5).float()
    return torch.maximum(mask, torch.eye(t).expand(b, t, t))


def window_mask(b: int, t: int) -> torch.Tensor:
    """The handout's test 3: token i may attend to tokens i - 1 and i only."""
    m = torch.tril(torch.ones(t, t)) - torch.tril(torch.ones(t, t), diagonal=-2)
    return m.expand(b, t, t).clone()


# ------------------------------------------------------------------ reference math on the student's weights


def projection(params: dict[str, torch.Tensor], prefix: str, dim: int, hid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W as used in x @ W.T, bias) of one of W_Q/W_K/W_V: an nn.Linear, or a raw (dim, hid) matrix used as x @ W."""
    weight = params.get(f"{prefix}.weight", params.get(prefix))
    if weight is None:
        expect.fail(f"there is no parameter {prefix} or {prefix}.weight: AttentionHead must have the linear layers "
                    "W_K, W_Q and W_V", "W_K, W_Q, W_V missing")
    bias = params.get(f"{prefix}.bias", torch.zeros(hid))
    if tuple(weight.shape) == (dim, hid) and f"{prefix}.weight" not in params:
        weight = weight.T  # a raw matrix in the handout's orientation: Q = x W_Q
    expect.true(tuple(weight.shape) == (hid, dim), f"{prefix} has shape {tuple(weight.shape)}; it maps dim = {dim} "
                f"to n_hidden = {hid}", "wrong projection size")
    return weight, bias


def head_math(params: dict[str, torch.Tensor], x: torch.Tensor, mask: torch.Tensor | None, dim: int, hid: int,
              prefix: str = "") -> tuple[torch.Tensor, torch.Tensor, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(out, alpha) of the reference head on the student's weights, and named wrong versions of them."""
    pre = f"{prefix}." if prefix else ""
    (wq, bq), (wk, bk), (wv, bv) = (projection(params, f"{pre}{n}", dim, hid) for n in ("W_Q", "W_K", "W_V"))
    q, k, v = x @ wq.T + bq, x @ wk.T + bk, x @ wv.T + bv  # (B, T, hid)
    alpha = A.softmax_weights(q, k, mask=mask)
    wrong = {}
    names = A.weight_mistakes(q, k, num_heads=1)
    for what, a in names.items():
        if mask is not None and "causal" not in what:
            continue
        wrong[what] = (a @ v, a)
    scores = q @ k.transpose(-2, -1) / math.sqrt(hid)
    by_dim = A.softmax_weights(q, k, scale=math.sqrt(dim), mask=mask)
    wrong["the scores are divided by sqrt(dim) (the input size) instead of sqrt(n_hidden)"] = (by_dim @ v, by_dim)
    if mask is not None:
        for what, a in A.masked_mistakes(q, k, mask).items():
            wrong[what] = (a @ v, a)
    wrong["alpha is returned before the softmax (the scaled scores)"] = (torch.softmax(scores, -1) @ v, scores)
    wrong["the output weights the queries instead of the values"] = (alpha @ q, alpha)
    return alpha @ v, alpha, wrong


def check_head(got, want_out, want_alpha, wrong, what):
    out, alpha = expect.pair(got, f"{what} output")
    expect.tensor(alpha, f"{what}: alpha", shape=tuple(want_alpha.shape), dtype="float")
    expect.tensor(out, f"{what}: out", shape=tuple(want_out.shape), dtype="float")
    if same(out, want_out) and same(alpha, want_alpha):
        return
    for mistake, (o, a) in wrong.items():
        if same(alpha, a) and (same(out, o) or mistake.startswith("the output")):
            expect.fail(f"{what} is wrong: {mistake}", mistake)
    if same(alpha, want_alpha):
        expect.fail(f"{what}: the weights alpha are right but out is not alpha @ V (V = x W_V + b)")
    expect.fail(f"{what}: alpha does not match softmax(Q Kᵀ / sqrt(n_hidden)) over the keys, computed with your own "
                "W_Q, W_K and W_V")


def same_nan(a, b) -> bool:
    """same(), where NaN and inf in the same places count as equal (a mistake elsewhere already shows them)."""
    return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and tuple(a.shape) == tuple(b.shape)
            and bool(torch.allclose(a.double(), b.double(), atol=1e-5, rtol=1e-4, equal_nan=True)))


def members(obj, owner_prefix: str, count: int) -> list[str]:
    """Paths of the members 0..count-1 of the ModuleList holding ``owner_prefix`` (``heads.0`` -> heads.0, heads.1 ...)."""
    owner = owner_prefix.rsplit(".", 1)[0]
    return [f"{owner}.{i}" for i in range(count)]


def new_head(sub, gen, dim=DIM, hid=HID):
    head = sub.new(name("AttentionHead"), dim, hid)
    return head, randomize(head, gen)


# ------------------------------------------------------------------ P2(a) AttentionHead (4 points)


@pytest.mark.part("attention")
@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: AttentionHead.forward(x (B, T, dim), attn_mask) -> (out (B, T, n_hidden), alpha (B, T, T))")
def test_head_shapes(sub, gen):
    """AttentionHead returns out (B, T, n_hidden) and alpha (B, T, T), with and without a mask"""
    head = sub.new(name("AttentionHead"), DIM, HID)
    x = torch.randn(B, T, DIM, generator=gen)
    for mask, label in ((None, "attn_mask=None"), (random_mask(gen), "a mask")):
        out, alpha = expect.pair(head(x, mask), f"AttentionHead output with {label}")
        expect.tensor(out, f"AttentionHead out with {label}", shape=(B, T, HID), dtype="float", finite=False)
        expect.tensor(alpha, f"AttentionHead alpha with {label}", shape=(B, T, T), dtype="float", finite=False)


@pytest.mark.part("attention")
@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(a): Q = xW_Q, K = xW_K, V = xW_V; A = softmax(QKᵀ/sqrt(d_k)) (A_ij: weight of token j for token i); "
                  "Out = AV")
def test_head_values(sub, gen):
    """AttentionHead without a mask: softmax(Q Kᵀ / sqrt(n_hidden)) over the keys, then A V (on your own weights)"""
    head, params = new_head(sub, gen)
    x = torch.randn(B, T, DIM, generator=gen)
    out, alpha, wrong = head_math(params, x, None, DIM, HID)
    check_head(head(x, None), out, alpha, wrong, "AttentionHead with attn_mask=None")


@pytest.mark.part("attention")
@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(a): attn_mask[i, j] == 0 => token i must not attend to token j (A_ij = 0); rows of A still sum "
                  "to 1")
def test_head_mask(sub, gen):
    """AttentionHead with a mask: masked weights are exactly 0, every row sums to 1, the rest as without a mask"""
    head, params = new_head(sub, gen)
    x = torch.randn(B, T, DIM, generator=gen)
    mask = random_mask(gen)
    _, alpha = expect.pair(head(x, mask), "AttentionHead output")
    alpha = expect.tensor(alpha, "AttentionHead alpha with a mask", shape=(B, T, T), dtype="float")
    _, want_alpha, wrong = head_math(params, x, mask, DIM, HID)
    leaked = float(alpha[mask == 0].abs().max()) if bool((mask == 0).any()) else 0.0
    if leaked != 0.0:
        for mistake, (_, a) in wrong.items():
            if same(alpha, a):
                expect.fail(f"AttentionHead with a mask is wrong: {mistake}", mistake)
        expect.fail(f"a masked-out pair (attn_mask[b, i, j] == 0) gets the weight {leaked:.3g}; it must be exactly 0 "
                    "(set its score to -inf, or a very large negative number, before the softmax)", "masked weights not 0")
    sums = alpha.double().sum(-1)
    expect.true(bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-5)),
                "with a mask, the rows of alpha do not sum to 1: mask the scores before the softmax, not the weights after",
                "weights masked after the softmax")
    # the kept weights are the unmasked softmax renormalised over the kept keys: yours, or the formula's
    _, own = expect.pair(head(x, None), "AttentionHead output with attn_mask=None")
    readings = [want_alpha]
    if isinstance(own, torch.Tensor) and tuple(own.shape) == (B, T, T):
        kept = own.double() * mask
        readings.append(kept / kept.sum(-1, keepdim=True))
    if not any(same(alpha, r) for r in readings):
        expect.fail("with a mask, the weights of the kept tokens are not the softmax over the kept tokens' scores "
                    "(renormalised): mask the scores before the softmax")


@pytest.mark.part("attention")
@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(a) / INTERFACES: attn_mask is a {0,1} tensor or None; a mask of ones masks nothing, the same as None")
def test_head_mask_of_ones(sub, gen):
    """AttentionHead: a mask of ones gives the same result as attn_mask=None"""
    head, _ = new_head(sub, gen, dim=8, hid=4)
    x = torch.randn(3, 4, 8, generator=gen)
    out, alpha = expect.pair(head(x, None), "AttentionHead output with attn_mask=None")
    got_out, got_alpha = expect.pair(head(x, torch.ones(3, 4, 4)), "AttentionHead output with a mask of ones")
    expect.true(same_nan(got_out, out) and same_nan(got_alpha, alpha), "AttentionHead with a mask of ones does not give "
                "the same out and alpha as with attn_mask=None: a mask of ones masks nothing", "mask of ones changes the result")


# ------------------------------------------------------------------ P2(b) MultiHeadedAttention (3 points)


def mha_parts(mha, params: dict[str, torch.Tensor]) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The heads' prefixes (in order) and the output projection (W as used in x @ W.T, bias)."""
    heads = prefixes(params, "W_Q")
    rest = {n: t for n, t in params.items() if not any(n.startswith(h + ".") for h in heads)}
    mats = [(n, t) for n, t in rest.items() if t.dim() == 2]
    vecs = [(n, t) for n, t in rest.items() if t.dim() == 1]
    want = (DIM, NH * HID)
    expect.true(len(mats) == 1 and tuple(mats[0][1].shape) in (want, want[::-1]),
                "besides its heads, MultiHeadedAttention should have one output projection W_O mapping "
                f"num_heads * n_hidden = {NH * HID} features to dim = {DIM}; found "
                + (", ".join(f"{n} {tuple(t.shape)}" for n, t in mats) or "none"), "no output projection W_O")
    w = mats[0][1] if tuple(mats[0][1].shape) == want else mats[0][1].T
    b = vecs[0][1] if len(vecs) == 1 and tuple(vecs[0][1].shape) == (DIM,) else torch.zeros(DIM)
    return heads, w, b


def expected_mha(mha, params, x, mask):
    """(out, alphas) from the student's own heads (run in the worker), and from the reference head math on their
    weights (either counts: a mistake inside AttentionHead is graded in P2(a))."""
    heads, wo, bo = mha_parts(mha, params)
    expect.true(len(heads) >= 1, "MultiHeadedAttention has no AttentionHead with W_Q in an nn.ModuleList",
                "no heads")
    paths = members(mha, heads[0], NH) if len(heads) < NH else heads  # one head repeated: its members share it
    own = [expect.pair(mha.get(h)(x, mask), f"head {h}") for h in paths]
    math_ = [head_math(params, x, mask, DIM, HID, prefix=h if h in heads else heads[0])[:2] for h in paths]
    out = []
    for results in (own, math_):
        outs = [o for o, _ in results]
        alphas = [a for _, a in results]
        if not all(isinstance(o, torch.Tensor) and tuple(o.shape) == (B, T, HID) for o in outs):
            continue
        if not all(isinstance(a, torch.Tensor) and tuple(a.shape) == (B, T, T) for a in alphas):
            continue
        out.append((torch.cat(outs, -1) @ wo.T + bo, torch.stack(alphas, 1), outs, alphas))
    return out, wo, bo


@pytest.mark.part("multihead")
@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: MultiHeadedAttention.forward(x, attn_mask) -> (out (B, T, dim), alphas (B, num_heads, T, T))")
def test_mha_shapes(sub, gen):
    """MultiHeadedAttention returns out (B, T, dim) and alphas (B, num_heads, T, T)"""
    mha = sub.new(name("MultiHeadedAttention"), DIM, HID, NH)
    x = torch.randn(B, T, DIM, generator=gen)
    out, alphas = expect.pair(mha(x, random_mask(gen)), "MultiHeadedAttention output")
    expect.tensor(out, "MultiHeadedAttention out", shape=(B, T, DIM), dtype="float", finite=False)
    expect.tensor(alphas, "MultiHeadedAttention alphas", shape=(B, NH, T, T), dtype="float", finite=False)


@pytest.mark.part("multihead")
@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(b) / INTERFACES: num_heads separate AttentionHeads in an nn.ModuleList, and W_O of size "
                  "(num_heads * n_hidden) x dim")
def test_mha_heads_and_projection(sub):
    """MultiHeadedAttention has num_heads heads with their own weights and one output projection W_O"""
    for dim, hid, nh in ((DIM, HID, NH), (6, 2, 4)):
        mha = sub.new(name("MultiHeadedAttention"), dim, hid, nh)
        names = [p.name for p in mha.parameters()]
        heads = prefixes({n: torch.zeros(0) for n in names}, "W_Q")
        expect.true(len(heads) == nh, f"MultiHeadedAttention(num_heads={nh}) has {len(heads)} heads with their own "
                    "parameters; a list like [head] * num_heads repeats one head (build a new AttentionHead for each)",
                    "heads share their weights")
        count = sum(math.prod(p.shape) for p in mha.parameters() if not any(p.name.startswith(h + ".") for h in heads))
        expect.true(count in (nh * hid * dim + dim, nh * hid * dim),
                    f"besides its heads, MultiHeadedAttention(dim={dim}, n_hidden={hid}, num_heads={nh}) has {count} "
                    f"parameters; W_O maps num_heads * n_hidden = {nh * hid} features to dim = {dim}",
                    "wrong size of W_O")


@pytest.mark.part("multihead")
@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(b): MultiHead(x) = Concat(head_1(x), ..., head_n(x)) W_O, each head computed separately")
def test_mha_values(sub, gen):
    """MultiHeadedAttention: your heads' outputs concatenated in order, then W_O (checked on your own weights)"""
    mha = sub.new(name("MultiHeadedAttention"), DIM, HID, NH)
    params = randomize(mha, gen)
    x = torch.randn(B, T, DIM, generator=gen)
    mask = random_mask(gen)
    out, _ = expect.pair(mha(x, mask), "MultiHeadedAttention output")
    out = expect.tensor(out, "MultiHeadedAttention out", shape=(B, T, DIM), dtype="float", finite=False)
    readings, wo, bo = expected_mha(mha, params, x, mask)
    if any(same_nan(out, want) for want, *_ in readings):
        return
    for _, _, outs, _ in readings:
        mistakes = {
            "the heads are concatenated in reverse order": torch.cat(outs[::-1], -1) @ wo.T + bo,
            "the output projection W_O is not applied (or applied twice)": torch.cat(outs, -1),
        }
        for mistake, want in mistakes.items():
            if tuple(want.shape) == tuple(out.shape) and same(out, want):
                expect.fail(f"MultiHeadedAttention output is wrong: {mistake}", mistake)
    unmasked, _, _ = expected_mha(mha, params, x, None)
    if any(same(out, want) for want, *_ in unmasked):
        expect.fail("MultiHeadedAttention ignores attn_mask: pass it to every head", "mask not passed to the heads")
    expect.fail("MultiHeadedAttention output is not W_O applied to the concatenation of your heads' outputs "
                "(head 1 first), computed with your own parameters")


@pytest.mark.part("multihead")
@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: alphas (B, num_heads, T, T) holds each head's attention weights, head i at index i")
def test_mha_alphas(sub, gen):
    """MultiHeadedAttention: alphas stacks your heads' attention weights, in order"""
    mha = sub.new(name("MultiHeadedAttention"), DIM, HID, NH)
    params = randomize(mha, gen)
    x = torch.randn(B, T, DIM, generator=gen)
    mask = None  # the mask is graded by test_mha_values
    _, alphas = expect.pair(mha(x, mask), "MultiHeadedAttention output")
    alphas = expect.tensor(alphas, "MultiHeadedAttention alphas", shape=(B, NH, T, T), dtype="float", finite=False)
    readings, _, _ = expected_mha(mha, params, x, mask)
    if any(same_nan(alphas, want) for _, want, _, _ in readings):
        return
    if any(same(alphas, torch.stack(a[::-1], 1)) for _, _, _, a in readings):
        expect.fail("MultiHeadedAttention alphas are in reverse head order", "alphas in the wrong order")
    expect.fail("MultiHeadedAttention alphas are not your heads' attention weights stacked along dim 1 (B, heads, T, T)")


# ------------------------------------------------------------------ P2(c) Transformer (3 points)

L, MLP = 3, 16


def new_transformer(sub, gen, layers=L):
    """A Transformer with random weights and the paths of its layers (the members of its ModuleList)."""
    model = sub.new(name("Transformer"), DIM, HID, MLP, NH, layers)
    params = randomize(model, gen, scale=0.5)
    found = prefixes(params, "attn.")
    expect.true(len(found) >= 1, "Transformer has no AttentionResidual layers in an nn.ModuleList", "no layers")
    return model, found, (members(model, found[0], layers) if len(found) < layers else found)


def chained(model, paths, x, mask, restart=False):
    """x through the student's own layers (run in the worker), in the order of ``paths``: (output, alphas (B, L, ...))."""
    alphas = []
    h = x
    for path in paths:
        h_new, a = expect.pair(model.get(path)(x if restart else h, mask), f"your layer {path}")
        h = expect.tensor(h_new, f"the output of your layer {path}", shape=tuple(x.shape), dtype="float", finite=False)
        alphas.append(expect.tensor(a, f"the alphas of your layer {path}", finite=False))
    shapes = {tuple(a.shape) for a in alphas}
    return h, (torch.stack(alphas, 1) if len(shapes) == 1 else None)


@pytest.mark.part("transformer")
@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: Transformer.forward(x, attn_mask, return_attn=False) -> (x (B, T, dim), alphas "
                  "(B, L, H, T, T) or None)")
def test_transformer_shapes(sub, gen):
    """Transformer returns (x, None), or (x, alphas (B, num_layers, ...)) with return_attn=True"""
    model = sub.new(name("Transformer"), DIM, HID, MLP, NH, L)
    x = torch.randn(B, T, DIM, generator=gen)
    y, alphas = expect.pair(model(x, None), "Transformer output")
    expect.tensor(y, "Transformer x", shape=(B, T, DIM), dtype="float", finite=False)
    expect.true(alphas is None, "with return_attn=False the Transformer returns (x, None)", "alphas not None")
    y, alphas = expect.pair(model(x, None, return_attn=True), "Transformer output with return_attn=True")
    expect.tensor(y, "Transformer x", shape=(B, T, DIM), dtype="float", finite=False)
    # each layer's alphas are its MultiHeadedAttention's, (B, H, T, T) (graded in P2(b)); stacked on dim 1
    layer_shape = (B, NH, T, T)
    found = prefixes({p.name: torch.zeros(0) for p in model.parameters()}, "attn.")
    if found:
        _, a = expect.pair(model.get(found[0])(x, None), f"your layer {found[0]}")
        if isinstance(a, torch.Tensor) and a.dim() >= 1:
            layer_shape = tuple(a.shape)
    expect.tensor(alphas, "Transformer alphas with return_attn=True", shape=(layer_shape[0], L, *layer_shape[1:]),
                  dtype="float", finite=False)


@pytest.mark.part("transformer")
@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2(c): Transformer passes the input through successive AttentionResidual layers")
def test_transformer_chains_layers(sub, gen):
    """Transformer: num_layers layers of their own, each taking the previous layer's output, in order"""
    model, found, paths = new_transformer(sub, gen)
    expect.true(len(found) == L, f"Transformer(num_layers={L}) has {len(found)} AttentionResidual layers with their own "
                "weights; a list like [layer] * num_layers repeats one layer (build a new one for each)",
                "layers share their weights")
    x = torch.randn(B, T, DIM, generator=gen)
    y, _ = expect.pair(model(x, None), "Transformer output")
    y = expect.tensor(y, "Transformer x", shape=(B, T, DIM), dtype="float", finite=False)
    want, _ = chained(model, paths, x, None)
    if same_nan(y, want):
        return
    mistakes = {
        "every layer is applied to the input x instead of the previous layer's output": dict(restart=True),
        "the layers are applied in reverse order": dict(paths=paths[::-1]),
        "only the first layer is used (applied num_layers times)": dict(paths=[paths[0]] * L),
        "only the last layer is used": dict(paths=[paths[-1]]),
        "only the first layer is used": dict(paths=[paths[0]]),
    }
    for mistake, kw in mistakes.items():
        if same_nan(y, chained(model, kw.pop("paths", paths), x, None, **kw)[0]):
            expect.fail(f"Transformer output is wrong: {mistake}", mistake)
    if same_nan(y, x):
        expect.fail("Transformer returns its input unchanged: keep each layer's output (x, alphas = layer(x, attn_mask))",
                    "layers not chained")
    expect.fail("Transformer output is not your layers applied one after the other (layer 0 first)")


@pytest.mark.part("transformer")
@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: return_attn=True -> alphas (B, L, H, T, T): layer l's attention weights at index l")
def test_transformer_attention_maps(sub, gen):
    """Transformer(return_attn=True): alphas stacks each layer's attention weights, in layer order"""
    model, _, paths = new_transformer(sub, gen)
    x = torch.randn(B, T, DIM, generator=gen)
    _, alphas = expect.pair(model(x, None, return_attn=True), "Transformer output with return_attn=True")
    alphas = expect.tensor(alphas, "Transformer alphas", dtype="float", finite=False)
    _, want = chained(model, paths, x, None)
    expect.true(want is not None, "your layers return alphas of different shapes")
    if same_nan(alphas, want):
        return
    if same_nan(alphas, want.flip(1)):
        expect.fail("Transformer alphas are in reverse layer order", "alphas in reverse order")
    expect.fail("Transformer alphas are not your layers' attention weights stacked along dim 1 (B, layers, heads, T, T)")


@pytest.mark.part("transformer")
@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P2(c) test case 3: with a mask where each token sees itself and the token before it, A reflects "
                  "that pattern (the mask reaches every layer)")
def test_transformer_window_mask(sub, gen):
    """Transformer with the handout's test-3 mask: the mask reaches every layer (checked with your own layers)"""
    t = 6
    model, _, paths = new_transformer(sub, gen, layers=2)
    x = torch.randn(B, t, DIM, generator=gen)
    mask = window_mask(B, t)
    y, alphas = expect.pair(model(x, mask, return_attn=True), "Transformer output")
    y = expect.tensor(y, "Transformer x", shape=(B, t, DIM), dtype="float", finite=False)
    want, want_alphas = chained(model, paths, x, mask)
    if same_nan(y, want) and (want_alphas is None or same_nan(alphas, want_alphas)):
        return
    if same_nan(y, chained(model, paths, x, None)[0]):
        expect.fail("Transformer ignores attn_mask: pass it to every layer", "mask not passed to the layers")
    alphas = expect.tensor(alphas, "Transformer alphas", shape=(B, 2, NH, t, t), dtype="float")
    masked = (mask == 0)[:, None, None].expand_as(alphas)
    expect.true(bool((alphas[masked] == 0).all()), "with the test-3 mask, some token attends to a token other than itself "
                "and the one before it", "mask not applied")
    expect.fail("with the test-3 mask, the Transformer's output is not your layers applied with that mask")
