"""Hidden tests, Problem 3: Patchification (5 points), multi-head Attention (10), Block with its MLP (10), ViT (10).
The training threshold (5) is in test_thresholds.py.

Layer names inside Attention, MLP and Block are the student's choice, so those classes are checked on the student's
own weights through every plausible wiring of them (separate or fused q/k/v, with or without biases, any order), and
the Block and the ViT by composition: their own submodules are called in the worker one at a time, wired here as the
handout says, and compared with their forward. A mistake in Attention is graded once, in its own part.

The single-head rule of the handout: a correct vanilla (single-head) attention passes the shape test and the
one-head test (1 + 4 points) and fails the multi-head test (5 points): at most 5 of the 10 points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F

from dlgrade.harness import expect
from dlgrade.harness.params import randomize, same

Affine = tuple[torch.Tensor, torch.Tensor]  # (W as used in x @ W.T, b)

D, NH, MLP_DIM, CLASSES = 16, 4, 24, 5


# ------------------------------------------------------------------ P3(a) Patchification (5 points)

CASES = [((3, 8, 8), 2, 10), ((2, 8, 12), 4, 7), ((1, 6, 6), 3, 5)]  # (image shape, patch size, embedding dim)


def patch_kernel(params: dict[str, torch.Tensor], c: int, p: int, d: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(conv kernel (d, c, p, p), bias, whether the parameter is a conv kernel) of the student's projection."""
    mats = [t for t in params.values() if t.dim() >= 2]
    vecs = [t for t in params.values() if t.dim() == 1]
    shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in params.items()) or "none"
    expect.true(len(mats) == 1, f"Patchification should hold one projection (an nn.Conv2d with kernel size and stride "
                f"patch_size); its parameters: {shapes}", "not one projection")
    w, conv = mats[0], mats[0].dim() == 4
    if tuple(w.shape) == (d, c * p * p):
        w = w.reshape(d, c, p, p)  # a linear map over patches flattened channel, row, column
    expect.true(tuple(w.shape) == (d, c, p, p), f"Patchification's projection has shape {tuple(w.shape)}; for "
                f"in_channels={c}, patch_size={p}, embedding_dim={d} an nn.Conv2d kernel is {(d, c, p, p)}",
                "wrong kernel size")
    b = vecs[0] if len(vecs) == 1 and tuple(vecs[0].shape) == (d,) else torch.zeros(d)
    return w, b, conv


@pytest.mark.part("patchify")
@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES / P3(a): Patchification(in_channels, patch_size, embedding_dim): (B, C, H, W) -> "
                  "(B, (H/p)(W/p), embedding_dim)")
def test_patchify_shape(sub, gen):
    """Patchification returns (B, N, embedding_dim), N = (H / p) (W / p)"""
    for (c, h, w), p, d in CASES:
        patchify = sub.new("hw4_vit.Patchification", c, p, d)
        x = torch.randn(2, c, h, w, generator=gen)
        expect.tensor(patchify(x), f"Patchification({c}, {p}, {d}) output for a {(2, c, h, w)} image",
                      shape=(2, (h // p) * (w // p), d), dtype="float")


@pytest.mark.part("patchify")
@pytest.mark.points(3)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P3(a): non-overlapping patches, each projected to embedding_dim by a convolution with kernel size "
                  "= stride = patch_size")
def test_patchify_values(sub, gen):
    """Patchification: every non-overlapping p x p patch projected by your weights, the patches in a fixed order"""
    for (c, h, w), p, d in CASES:
        patchify = sub.new("hw4_vit.Patchification", c, p, d)
        kernel, bias, _ = patch_kernel(randomize(patchify, gen), c, p, d)
        x = torch.randn(2, c, h, w, generator=gen)
        got = expect.tensor(patchify(x), f"Patchification({c}, {p}, {d}) output", shape=(2, (h // p) * (w // p), d))
        grid = F.conv2d(x, kernel, bias, stride=p)  # (B, D, H/p, W/p)
        row_major = grid.flatten(2).transpose(1, 2)
        column_major = grid.transpose(2, 3).flatten(2).transpose(1, 2)  # another fixed order: positions learn it
        if same(got, row_major) or same(got, column_major):
            continue
        expect.close(got, row_major, f"Patchification({c}, {p}, {d}) output", diagnoses={
            "the (B, D, H/p, W/p) grid is reshaped to (B, N, D) without moving the channel axis last (flatten the "
            "grid, then transpose)": grid.reshape(2, -1, d),
            "the convolution's stride is not patch_size (the patches overlap)":
                F.conv2d(x, kernel, bias, stride=1)[..., ::p, ::p].flatten(2).transpose(1, 2),
            "the bias is missing": F.conv2d(x, kernel, None, stride=p).flatten(2).transpose(1, 2),
        })


@pytest.mark.part("patchify")
@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P3(a): 'using convolution layer. You are only allowed to use torch.nn.Conv2d'")
def test_patchify_is_a_convolution(sub):
    """Patchification projects the patches with an nn.Conv2d kernel (not a Linear layer over cut-out patches)"""
    for (c, _, _), p, d in CASES:
        patchify = sub.new("hw4_vit.Patchification", c, p, d)
        params = {q.name: torch.zeros(q.shape) for q in patchify.parameters()}
        _, _, conv = patch_kernel(params, c, p, d)
        expect.true(conv, "Patchification projects the patches with a matrix (a Linear layer), not with an "
                    "nn.Conv2d(in_channels, embedding_dim, kernel_size=patch_size, stride=patch_size) as 3(a) asks",
                    "not a convolution")


# ------------------------------------------------------------------ P3(b) Attention (10 points)


def _prefix(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name else ""


def wirings(params: dict[str, torch.Tensor], d: int, num_heads: int) -> Iterator[tuple[str, list[Affine], Affine | None]]:
    """Every plausible reading of an attention layer's parameters: (label, [q, k, v] affine maps, output map or None).

    Separate (d, d) maps in any order (with or without biases; raw matrices in both orientations), or one fused
    (3d, d) map split as [q|k|v] chunks or per head [q_h|k_h|v_h], with or without a (d, d) output map.
    """
    mats = [(n, t) for n, t in params.items() if t.dim() == 2]
    vectors = [(n, t) for n, t in params.items() if t.dim() == 1]
    vecs = {_prefix(n): t for n, t in vectors}
    if any(t.dim() > 2 for t in params.values()):
        return
    linear = all(n.endswith(".weight") for n, _ in mats)
    by_order = {} if linear or len(vectors) != len(mats) else {n: b for (n, _), (_, b) in zip(mats, vectors, strict=True)}

    def bias_of(name: str, size: int) -> torch.Tensor:
        b = vecs.get(_prefix(name)) if name.endswith(".weight") else by_order.get(name)
        return b if b is not None and b.shape == (size,) else torch.zeros(size)

    def oriented(t: torch.Tensor, flip: bool) -> torch.Tensor:
        return t.T if flip else t

    fused = [(n, t) for n, t in mats if tuple(t.shape) in ((3 * d, d), (d, 3 * d))]
    square = [(n, t) for n, t in mats if tuple(t.shape) == (d, d)]
    flips = (False,) if linear else (False, True)
    if len(fused) == 1 and len(square) in (0, 1) and len(mats) == len(fused) + len(square):
        name, w3 = fused[0]
        w3 = w3 if tuple(w3.shape) == (3 * d, d) else w3.T
        b3 = bias_of(name, 3 * d)
        hs = d // num_heads
        layouts = {"chunks": lambda j: torch.arange(j * d, (j + 1) * d),
                   "per-head": lambda j: torch.cat([torch.arange(h * 3 * hs + j * hs, h * 3 * hs + (j + 1) * hs)
                                                    for h in range(num_heads)])}
        for layout, rows in layouts.items():
            qkv = [(w3[rows(j)], b3[rows(j)]) for j in range(3)]
            for order in itertools.permutations(range(3)):
                maps = [qkv[i] for i in order]
                if not square:
                    yield f"fused {layout} {order}", maps, None
                for flip in flips:
                    for n, w in square:
                        yield f"fused {layout} {order}", maps, (oriented(w, flip), bias_of(n, d))
        return
    if len(square) in (3, 4) and len(mats) == len(square):
        for flip in flips:
            for order in itertools.permutations(range(len(square))):
                maps = [(oriented(square[i][1], flip), bias_of(square[i][0], d)) for i in order]
                yield f"separate {order}", maps[:3], (maps[3] if len(maps) == 4 else None)


def split(x: torch.Tensor, nh: int, interleaved: bool = False) -> torch.Tensor:
    b, n, d = x.shape
    if interleaved:
        return x.reshape(b, n, d // nh, nh).permute(0, 3, 1, 2)  # (B, nh, N, hd), head h takes features h, h + nh, ...
    return x.reshape(b, n, nh, d // nh).transpose(1, 2)  # (B, nh, N, hd)


def merge(y: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    b, nh, n, hs = y.shape
    if interleaved:
        return y.permute(0, 2, 3, 1).reshape(b, n, nh * hs)
    return y.transpose(1, 2).reshape(b, n, nh * hs)


def attend(x: torch.Tensor, maps: list[Affine], out: Affine | None, nh: int, *, scale: float | None = None,
           dim: int = -1, interleaved: bool = False, merge_without_transpose: bool = False) -> torch.Tensor:
    """Multi-head scaled dot-product self-attention with these maps (and named mistakes through the options)."""
    q, k, v = (x @ w.T + b for w, b in maps)  # (B, N, d)
    qh, kh, vh = (split(t, nh, interleaved) for t in (q, k, v))  # (B, nh, N, hd)
    scale = math.sqrt(qh.shape[-1]) if scale is None else scale
    a = torch.softmax(qh @ kh.transpose(-2, -1) / scale, dim=dim)  # (B, nh, N, N)
    y = a @ vh
    y = y.reshape(x.shape) if merge_without_transpose else merge(y, interleaved)
    return y if out is None else y @ out[0].T + out[1]


def new_attention(sub, gen, num_heads):
    attn = sub.new("hw4_vit.Attention", D, num_heads, 0.0)
    attn.call("eval")
    params = randomize(attn, gen)
    return attn, params


@pytest.mark.part("attention")
@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: Attention(dim, num_heads, dropout=0.).forward(x (B, N, dim)) -> (B, N, dim)")
def test_attention_shape(sub, gen):
    """Attention keeps the shape (B, N, dim)"""
    for heads in (1, NH):
        attn = sub.new("hw4_vit.Attention", D, heads, 0.0)
        attn.call("eval")
        x = torch.randn(2, 7, D, generator=gen)
        expect.tensor(attn(x), f"Attention(dim={D}, num_heads={heads}) output", shape=(2, 7, D), dtype="float")


@pytest.mark.part("attention")
@pytest.mark.points(4)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P3(b): Attention(Q, K, V) = softmax(QK^T / sqrt(d_k)) V with learned projections (Attention Is All You "
                  "Need 3.2.1); a correct vanilla attention earns these points")
def test_attention_single_head(sub, gen):
    """Attention with one head: softmax(Q Kᵀ / sqrt(dim)) V (then the output projection), on your own weights"""
    attn, params = new_attention(sub, gen, 1)
    x = torch.randn(2, 7, D, generator=gen)
    got = expect.tensor(attn(x), "Attention(num_heads=1) output", shape=(2, 7, D), dtype="float")
    found = list(wirings(params, D, 1))
    expect.true(bool(found), "cannot read Attention's parameters as query, key and value projections (three (dim, dim) "
                "maps or one fused (3 dim, dim) map, and an output projection): " +
                ", ".join(f"{n} {tuple(t.shape)}" for n, t in params.items()), "projections not found")
    for _, maps, out in found:
        if same(got, attend(x, maps, out, 1)):
            return
    mistakes = {
        "the scores are not divided by sqrt(d_k)": {"scale": 1.0},
        "the scores are divided by d_k instead of sqrt(d_k)": {"scale": float(D)},
        "the softmax is taken over the queries (dim=-2) instead of the keys": {"dim": -2},
    }
    for mistake, options in mistakes.items():
        for _, maps, out in found:
            if same(got, attend(x, maps, out, 1, **options)):  # type: ignore[arg-type]
                expect.fail(f"Attention is wrong: {mistake}", mistake)
    expect.fail("Attention with one head does not compute softmax(Q Kᵀ / sqrt(dim)) V (then the output projection) with "
                "your own projections", "wrong attention")


@pytest.mark.part("attention")
@pytest.mark.points(5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P3(b): multi-head attention (Attention Is All You Need 3.2.2): num_heads heads of dim/num_heads "
                  "features, each scaled by sqrt(d_head), concatenated in order and projected; vanilla attention gets "
                  "at most 5 points")
def test_attention_multi_head(sub, gen):
    """Attention with several heads: each head on its own dim/num_heads features, scaled by sqrt(d_head), concatenated"""
    attn, params = new_attention(sub, gen, NH)
    x = torch.randn(2, 7, D, generator=gen)
    got = expect.tensor(attn(x), f"Attention(num_heads={NH}) output", shape=(2, 7, D), dtype="float")
    found = list(wirings(params, D, NH))
    expect.true(bool(found), "cannot read Attention's parameters as query, key and value projections (three (dim, dim) "
                "maps or one fused (3 dim, dim) map, and an output projection): " +
                ", ".join(f"{n} {tuple(t.shape)}" for n, t in params.items()), "projections not found")
    for _, maps, out in found:
        if same(got, attend(x, maps, out, NH)) or same(got, attend(x, maps, out, NH, interleaved=True)):
            return
    hd = D // NH
    mistakes = {
        "num_heads is ignored: one attention over all dim features (a single, vanilla head). Multi-head attention splits "
        "the projections into num_heads heads; vanilla attention earns at most 5 of the 10 points":
            {"nh": 1},
        "num_heads is ignored and the scores are divided by sqrt(dim / num_heads)": {"nh": 1, "scale": math.sqrt(hd)},
        "the scores are divided by sqrt(dim) instead of sqrt(dim / num_heads), the size of a head":
            {"scale": math.sqrt(D)},
        "the scores are not divided by sqrt(d_head)": {"scale": 1.0},
        "the heads' outputs are reshaped from (B, heads, N, d_head) to (B, N, dim) without moving the head axis back "
        "(transpose before merging), so tokens get mixed": {"merge_without_transpose": True},
        "the softmax is taken over the queries (dim=-2) instead of the keys": {"dim": -2},
    }
    for mistake, options in mistakes.items():
        nh = int(options.pop("nh", NH))
        for _, maps, out in found:
            if same(got, attend(x, maps, out, nh, **options)):  # type: ignore[arg-type]
                expect.fail(f"Attention(num_heads={NH}) is wrong: {mistake}", mistake)
    expect.fail(f"Attention(num_heads={NH}) does not compute multi-head scaled dot-product attention (each head "
                "softmax(Q_h K_hᵀ / sqrt(d_head)) V_h, the heads concatenated in order, then the output projection) with "
                "your own projections", "wrong multi-head attention")


# ------------------------------------------------------------------ P3(c) Block and MLP (10 points)


@pytest.mark.part("block")
@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: Block(dim, num_heads, mlp_dim, dropout=0.).forward(x (B, N, dim)) -> (B, N, dim)")
def test_block_shape(sub, gen):
    """Block keeps the shape (B, N, dim)"""
    block = sub.new("hw4_vit.Block", D, NH, MLP_DIM, 0.0)
    block.call("eval")
    expect.tensor(block(torch.randn(2, 7, D, generator=gen)), "Block output", shape=(2, 7, D), dtype="float")


def mlp_maps(params: dict[str, torch.Tensor]) -> tuple[Affine, Affine]:
    """The MLP's two affine maps (dim -> hidden, hidden -> dim), whatever their names."""
    mats = [(n, t) for n, t in params.items() if t.dim() == 2]
    up = [(n, t) for n, t in mats if tuple(t.shape) in ((MLP_DIM, D), (D, MLP_DIM))]
    expect.true(len(mats) == 2 and len(up) == 2, "MLP should hold two linear layers, dim -> hidden_dim and hidden_dim -> "
                "dim; its parameters: " + ", ".join(f"{n} {tuple(t.shape)}" for n, t in params.items()),
                "not two linear layers")
    vecs = {_prefix(n): t for n, t in params.items() if t.dim() == 1}

    def affine(name: str, t: torch.Tensor, out: int, inp: int) -> Affine:
        w = t if tuple(t.shape) == (out, inp) else t.T
        b = vecs.get(_prefix(name)) if name.endswith(".weight") else None
        return w, (b if b is not None and b.shape == (out,) else torch.zeros(out))

    (n1, t1), (n2, t2) = mats
    if tuple(t1.shape) == (D, MLP_DIM) and tuple(t2.shape) == (MLP_DIM, D) and n1.endswith(".weight"):
        (n1, t1), (n2, t2) = (n2, t2), (n1, t1)  # created in the other order
    return affine(n1, t1, MLP_DIM, D), affine(n2, t2, D, MLP_DIM)


@pytest.mark.part("block")
@pytest.mark.points(4)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P3: the MLP is Linear(dim, hidden) -> GELU -> Linear(hidden, dim), with the ViT paper's GELU")
def test_mlp(sub, gen):
    """MLP: Linear(dim, hidden_dim), GELU, Linear(hidden_dim, dim), on your own weights"""
    mlp = sub.new("hw4_vit.MLP", D, MLP_DIM, 0.0)
    mlp.call("eval")
    (w1, b1), (w2, b2) = mlp_maps(randomize(mlp, gen))
    x = torch.randn(2, 7, D, generator=gen)
    got = expect.tensor(mlp(x), "MLP output", shape=(2, 7, D), dtype="float")
    h = x @ w1.T + b1

    def out(act):
        return act(h) @ w2.T + b2

    if same(got, out(F.gelu)) or same(got, out(lambda z: F.gelu(z, approximate="tanh"))):
        return
    expect.close(got, out(F.gelu), "MLP output", diagnoses={
        "ReLU is used instead of GELU (the ViT paper's MLP uses GELU)": out(torch.relu),
        "there is no activation between the two linear layers": out(lambda z: z),
        "tanh is used instead of GELU": out(torch.tanh),
        "SiLU is used instead of GELU": out(F.silu),
    })


def children(obj) -> list[str]:
    """The names of a remote module's direct submodules that hold parameters, in creation order."""
    out: list[str] = []
    for p in obj.parameters():
        head = p.name.split(".", 1)[0]
        if "." in p.name and head not in out:
            out.append(head)
    return out


@pytest.mark.part("block")
@pytest.mark.points(5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P3(c) / ViT paper eq. 2-3: pre-norm: x = x + Attention(LN(x)), then x = x + MLP(LN(x)), with two "
                  "layer norms")
def test_block_prenorm(sub, gen):
    """Block: x + attn(norm1(x)), then + mlp(norm2(·)), composed from your own submodules"""
    block = sub.new("hw4_vit.Block", D, NH, MLP_DIM, 0.0)
    block.call("eval")
    randomize(block, gen, scale=0.5)  # distinct layer-norm weights, so mixing up the two norms shows
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for p in block.parameters():
        shapes.setdefault(p.name.split(".", 1)[0], []).append(p.shape)
    names = children(block)
    norms = [n for n in names if all(s == (D,) for s in shapes[n])]
    mlps = [n for n in names if any(s in ((MLP_DIM, D), (D, MLP_DIM)) for s in shapes[n])]
    attns = [n for n in names if n not in norms and n not in mlps]
    expect.true(len(norms) == 2 and len(mlps) == 1 and len(attns) == 1, "Block should hold two layer norms, an "
                f"Attention and an MLP as submodules; found {', '.join(names) or 'none'}", "Block's layers not found")
    n1, n2 = (block.get(n) for n in norms)
    attn, mlp = block.get(attns[0]), block.get(mlps[0])
    x = torch.randn(2, 7, D, generator=gen)
    got = expect.tensor(block(x), "Block output", shape=(2, 7, D), dtype="float")

    def t(v, what):
        return expect.tensor(v, what, shape=(2, 7, D), dtype="float", finite=False)

    wanted = []
    for a, b in ((n1, n2), (n2, n1)):  # the norms in either creation order
        y = x + t(attn(t(a(x), "layer norm")), "attention")
        wanted.append(y + t(mlp(t(b(y), "layer norm")), "MLP"))
    if any(same(got, w) for w in wanted):
        return
    post = t(n1(x + t(attn(x), "attention")), "layer norm")
    normed = t(n1(x), "layer norm")
    y = x + t(attn(normed), "attention")
    mistakes = {
        "the block is wired post-norm (LayerNorm after each residual sum, as in the original Transformer); the ViT "
        "normalises the input of each sub-layer (pre-norm)": t(n2(post + t(mlp(post), "MLP")), "layer norm"),
        "the residual is added to the normalised input (norm1(x) + attn(norm1(x))) instead of to x":
            normed + t(attn(normed), "attention") + t(mlp(t(n2(normed + t(attn(normed), "attention")), "layer norm")), "MLP"),
        "the same layer norm is used before both sub-layers": y + t(mlp(t(n1(y), "layer norm")), "MLP"),
        "the MLP sub-layer has no residual connection": t(mlp(t(n2(y), "layer norm")), "MLP"),
        "the attention sub-layer has no residual connection":
            t(attn(normed), "attention") + t(mlp(t(n2(t(attn(normed), "attention")), "layer norm")), "MLP"),
        "the sub-layers run side by side on x instead of one after the other":
            x + t(attn(normed), "attention") + t(mlp(t(n2(x), "layer norm")), "MLP"),
    }
    for mistake, want in mistakes.items():
        if same(got, want):
            expect.fail(f"Block is wrong: {mistake}", mistake)
    expect.fail("Block's output is not x + attn(norm1(x)) followed by + mlp(norm2(·)), computed with your own submodules",
                "wrong block")


# ------------------------------------------------------------------ P3(d) ViT (10 points)

IMAGE, PATCH, DEPTH = (3, 8, 8), 2, 2
N = (IMAGE[1] // PATCH) * (IMAGE[2] // PATCH)


def new_vit(sub, gen):
    vit = sub.new("hw4_vit.ViT", IMAGE, PATCH, CLASSES, D, NH, DEPTH, MLP_DIM, 0.0)
    vit.call("eval")
    randomize(vit, gen, scale=0.5)
    return vit


@pytest.mark.part("vit")
@pytest.mark.points(2)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES: ViT(image_shape, patch_size, num_classes, dim, num_heads, depth, mlp_dim, dropout=0.)"
                  ".forward(x (B, C, H, W)) -> logits (B, num_classes)")
def test_vit_shape(sub, gen):
    """ViT returns logits (B, num_classes)"""
    vit = sub.new("hw4_vit.ViT", IMAGE, PATCH, CLASSES, D, NH, DEPTH, MLP_DIM, 0.0)
    vit.call("eval")
    expect.tensor(vit(torch.randn(3, *IMAGE, generator=gen)), "ViT output", shape=(3, CLASSES), dtype="float")


@pytest.mark.part("vit")
@pytest.mark.points(2)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P3(d): self.patchify, self.cls_token (1, 1, dim) and self.pos_embedding, a learned position for the "
                  "class token and every patch (1, N + 1, dim)")
def test_vit_tokens(sub):
    """ViT: a learned class token (1, 1, dim) and a learned position embedding for the class token and every patch"""
    vit = sub.new("hw4_vit.ViT", IMAGE, PATCH, CLASSES, D, NH, DEPTH, MLP_DIM, 0.0)
    shapes = {p.name: p.shape for p in vit.parameters()}
    expect.true(any(n.startswith("patchify.") for n in shapes), "ViT has no self.patchify (a Patchification)",
                "patchify missing")
    expect.true("cls_token" in shapes, "ViT has no learned parameter self.cls_token", "class token missing")
    expect.true(shapes["cls_token"] in ((1, 1, D), (1, D), (D,)), f"ViT's cls_token has shape {shapes['cls_token']}, "
                f"expected (1, 1, {D})", "class token shape")
    expect.true("pos_embedding" in shapes, "ViT has no learned parameter self.pos_embedding", "positions missing")
    pos = shapes["pos_embedding"]
    if pos in ((1, N, D), (N, D)):
        expect.fail(f"ViT's pos_embedding has shape {pos}: one position per patch, none for the class token; the ViT "
                    f"paper's E_pos is (N + 1) x dim ({(1, N + 1, D)})", "no position for the class token")
    expect.true(pos in ((1, N + 1, D), (N + 1, D)), f"ViT's pos_embedding has shape {pos}, expected {(1, N + 1, D)} "
                f"for {N} patches and the class token", "position embedding shape")


def composed(vit, x, *, variant: str = "") -> torch.Tensor:
    """The ViT forward wired here from the student's own parts (each run in the worker)."""
    patches = expect.tensor(vit.get("patchify")(x), "your patchify's output", shape=(x.shape[0], N, D), dtype="float")
    cls = expect.tensor(vit.get("cls_token"), "cls_token").reshape(1, 1, D).expand(x.shape[0], 1, D)
    pos = expect.tensor(vit.get("pos_embedding"), "pos_embedding")
    pos = pos.reshape(1, -1, D)
    if variant in ("append", "append_first"):
        seq = torch.cat([patches, cls], 1)
    else:
        seq = torch.cat([cls, patches], 1)
    if variant != "no_pos":
        if pos.shape[1] == N + 1:
            seq = seq + pos
        elif pos.shape[1] == N:  # positions for the patches only (graded by test_vit_tokens)
            seq = seq + torch.cat([torch.zeros(1, 1, D), pos], 1) if variant not in ("append", "append_first") \
                else seq + torch.cat([pos, torch.zeros(1, 1, D)], 1)
    h = seq
    blocks = [f"blocks.{i}" for i in range(DEPTH)]
    if variant == "one_block":
        blocks = blocks[:1]
    for name in blocks:
        h = expect.tensor(vit.get(name)(h), f"your {name}'s output", shape=tuple(seq.shape), dtype="float", finite=False)
    if variant != "no_norm":
        h = expect.tensor(vit.get("norm")(h), "your norm's output", shape=tuple(seq.shape), dtype="float", finite=False)
    token = {"append": h[:, -1], "mean": h.mean(1), "patch_mean": h[:, 1:].mean(1)}.get(variant, h[:, 0])
    return expect.tensor(vit.get("head")(token), "your head's output", shape=(x.shape[0], CLASSES), dtype="float",
                         finite=False)


VIT_MISTAKES = {
    "no_pos": "the position embedding is not added",
    "mean": "the tokens are averaged instead of classifying the class token",
    "patch_mean": "the patch tokens are averaged instead of classifying the class token",
    "append_first": "the class token is appended after the patches but position 0 (a patch) is classified",
    "no_norm": "the final layer norm (self.norm) is not applied before the head",
    "one_block": "only the first block is applied",
}


@pytest.mark.part("vit")
@pytest.mark.points(6)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P3(d) / ViT paper eq. 1-4: patches, the class token in front, + positions, the blocks, the final "
                  "layer norm, the head on the class token")
def test_vit_forward(sub, gen):
    """ViT.forward: patchify, class token first, + position embedding, blocks, norm, head on the class token (your parts)"""
    vit = new_vit(sub, gen)
    expect.true(sub.has("hw4_vit.ViT"), "hw4_vit.ipynb defines no ViT")
    x = torch.randn(3, *IMAGE, generator=gen)
    got = expect.tensor(vit(x), "ViT output", shape=(3, CLASSES), dtype="float")
    if same(got, composed(vit, x)) or same(got, composed(vit, x, variant="append")):
        return
    for variant, mistake in VIT_MISTAKES.items():
        if same(got, composed(vit, x, variant=variant)):
            expect.fail(f"ViT.forward is wrong: {mistake}", mistake)
    expect.fail("ViT.forward does not match the ViT composed from your own parts (patchify -> class token in front -> "
                "+ pos_embedding -> blocks -> norm -> head on the class token)", "wrong ViT forward")
