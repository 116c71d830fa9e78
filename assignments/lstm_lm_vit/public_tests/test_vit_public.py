"""Public tests for Problem 2: LayerNorm, multi-head attention and the ViT in vit_solution.py.

Run them from the release folder with `python -m pytest` (or `dlgrade check`). Sizes are
tiny, so the whole file runs in a few seconds on a CPU.
"""

import ast
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from checks import assert_close, require

HEAD_SIZE, NUM_HEADS, SEQ = 3, 4, 5  # head_size != num_heads on purpose
WIDTH = HEAD_SIZE * NUM_HEADS


def same(actual, expected):
    return (
        isinstance(actual, torch.Tensor)
        and actual.shape == expected.shape
        and torch.allclose(actual.detach().to(expected.dtype), expected, atol=1e-5, rtol=1e-4)
    )


# ---------------------------------------------------------------------------------------
# Forbidden APIs (checked on your source file; the autograder checks this too, also while your code runs)

def dotted(node):
    """'a.b.c' for an attribute chain, None for anything else."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


# Where the handout forbids them: in your LayerNorm class (no torch LayerNorm) and in your
# MultiHeadedAttention class (no torch multi-head attention). The given VisionTransformer head
# uses torch's nn.LayerNorm, and that is fine.
SCOPES = {"LayerNorm": {"LayerNorm", "layer_norm", "native_layer_norm"},
          "MultiHeadedAttention": {"MultiheadAttention", "multi_head_attention_forward", "scaled_dot_product_attention"}}


@pytest.mark.points(0)
def test_no_forbidden_apis(vit_solution):
    """LayerNorm and MultiHeadedAttention do not use torch's built-in versions."""
    source = Path(vit_solution.__file__).read_text()
    found = []
    for cls in ast.parse(source).body:
        if not (isinstance(cls, ast.ClassDef) and cls.name in SCOPES):
            continue
        for node in ast.walk(cls):
            if isinstance(node, ast.Attribute) and node.attr in SCOPES[cls.name]:
                base = dotted(node.value) or ""
                if base.split(".")[0] in {"torch", "nn", "F", "functional"} or base.endswith("nn"):
                    found.append((node.lineno, cls.name, node.attr))
    require(
        not found,
        "forbidden APIs: " + "; ".join(f"line {line} (in {where}): {api}" for line, where, api in found)
        + ". Write LayerNorm and attention with basic tensor operations; the autograder gives 0 "
        "for the parts that use these.",
    )


# ---------------------------------------------------------------------------------------
# Problem 2.1: LayerNorm


def random_affine(ln, size):
    with torch.no_grad():
        ln.weight.copy_(torch.randn(size))
        ln.bias.copy_(torch.randn(size))


@pytest.mark.part("layernorm")
@pytest.mark.points(1)
def test_layernorm_parameters(vit_solution):
    """LayerNorm(H) has parameters `weight` and `bias`, each of shape (H,)."""
    ln = vit_solution.LayerNorm(6)
    for name in ("weight", "bias"):
        value = getattr(ln, name, None)
        require(isinstance(value, nn.Parameter), f"LayerNorm.{name} must be an nn.Parameter")
        require(
            value.shape == (6,), f"LayerNorm.{name} has shape {tuple(value.shape)}, expected (6,)"
        )


def check_layernorm(ln, x, what):
    """Compare ln(x) with torch's layer norm, naming the usual mistakes when it differs."""
    w, b, eps = ln.weight.detach(), ln.bias.detach(), ln.eps
    with torch.no_grad():
        y = ln(x)
    want = F.layer_norm(x, x.shape[-1:], w, b, eps=eps)
    mean = x.mean(-1, keepdim=True)
    centred = x - mean
    biased_var = (centred**2).mean(-1, keepdim=True)
    diagnoses = [
        (
            "uses the unbiased variance (dividing by n - 1, torch.var's default); use the "
            "biased one, the mean of the squared deviations (dividing by n)",
            centred / torch.sqrt(x.var(-1, keepdim=True, unbiased=True) + eps) * w + b,
        ),
        ("forgets to multiply by `weight` and add `bias`", F.layer_norm(x, x.shape[-1:], eps=eps)),
        (
            "adds eps outside the square root; use sqrt(var + eps)",
            centred / (torch.sqrt(biased_var) + eps) * w + b,
        ),
    ]
    if not same(y, want):
        for message, alternative in diagnoses:
            if same(y, alternative):
                raise AssertionError(f"LayerNorm {message}")
    assert_close(
        y,
        want,
        what,
        "Expected (x - mean) / sqrt(var + eps) * weight + bias, with the mean and the biased "
        "variance taken over the last axis.",
    )


@pytest.mark.part("layernorm")
@pytest.mark.points(2)
def test_layernorm_matches_torch(vit_solution):
    """LayerNorm normalises over the last axis with the biased variance, then scales and shifts."""
    ln = vit_solution.LayerNorm(16)
    random_affine(ln, 16)
    check_layernorm(ln, torch.randn(4, 5, 16) * 3 + 2, "LayerNorm output")


@pytest.mark.part("layernorm")
@pytest.mark.points(1)
def test_layernorm_any_leading_dims(vit_solution):
    """LayerNorm works on inputs with any number of leading dimensions."""
    ln = vit_solution.LayerNorm(8)
    random_affine(ln, 8)
    for shape in [(8,), (7, 8), (2, 3, 4, 8)]:
        check_layernorm(ln, torch.randn(shape) * 2 - 1, f"LayerNorm output for shape {shape}")


@pytest.mark.part("layernorm")
@pytest.mark.points(1)
def test_layernorm_uses_eps(vit_solution):
    """LayerNorm uses its own eps; a constant vector gives `bias`, not NaN."""
    ln = vit_solution.LayerNorm(8, eps=0.1)
    random_affine(ln, 8)
    if getattr(ln, "eps", None) != 0.1:
        raise AssertionError("LayerNorm(8, eps=0.1).eps should be 0.1 (keep the given __init__)")
    with torch.no_grad():
        y = ln(torch.full((2, 8), 3.0))
    require(torch.isfinite(y).all(), "LayerNorm of a constant vector gives NaN or inf")
    assert_close(y, ln.bias.detach().expand(2, 8), "LayerNorm of a constant vector")
    x = torch.randn(3, 8) * 0.5
    with torch.no_grad():
        y = ln(x)
    if same(y, F.layer_norm(x, (8,), ln.weight.detach(), ln.bias.detach(), eps=1e-5)):
        raise AssertionError("LayerNorm ignores its eps argument: use self.eps, not 1e-5")
    check_layernorm(ln, x, "LayerNorm output with eps=0.1")


# ---------------------------------------------------------------------------------------
# Problem 2.2-2.5: multi-head attention


@pytest.fixture
def attention(vit_solution):
    return vit_solution.MultiHeadedAttention(HEAD_SIZE, NUM_HEADS, SEQ)


def heads(batch=2):
    """Random (queries, keys, values), each (B, num_heads, T, head_size)."""
    return tuple(torch.randn(batch, NUM_HEADS, SEQ, HEAD_SIZE) for _ in range(3))


def expected_weights(q, k, scale=HEAD_SIZE):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(scale), dim=-1)


@pytest.mark.part("attention")
@pytest.mark.points(2)
def test_split_heads_index_mapping(attention):
    """split_heads: (B, T, heads*d) -> (B, heads, T, d) with y[b,h,t,i] = x[b,t,h*head_size+i]."""
    x = torch.arange(2 * SEQ * WIDTH, dtype=torch.float).reshape(2, SEQ, WIDTH)
    y = attention.split_heads(x)
    require(isinstance(y, torch.Tensor), "split_heads must return a tensor")
    require(
        y.shape == (2, NUM_HEADS, SEQ, HEAD_SIZE),
        f"split_heads returned shape {tuple(y.shape)}; expected (B, num_heads, T, head_size) = "
        f"{(2, NUM_HEADS, SEQ, HEAD_SIZE)}",
    )
    if same(y, x.reshape(2, NUM_HEADS, SEQ, HEAD_SIZE)):
        raise AssertionError(
            "split_heads reshapes straight to (B, heads, T, d), which mixes time steps into "
            "heads: reshape to (B, T, heads, d) first, then swap the T and heads axes"
        )
    for b, h, t, i in [(0, 1, 2, 0), (1, 3, 0, 2), (0, 0, 4, 1), (1, 2, 3, 2)]:
        require(
            y[b, h, t, i] == x[b, t, h * HEAD_SIZE + i],
            f"split_heads: y[{b}, {h}, {t}, {i}] should be x[{b}, {t}, {h} * head_size + {i}] = "
            f"{x[b, t, h * HEAD_SIZE + i].item():g}, got {y[b, h, t, i].item():g} "
            f"(head_size = {HEAD_SIZE}, num_heads = {NUM_HEADS})",
        )
    want = torch.stack(
        [x[:, :, h * HEAD_SIZE : (h + 1) * HEAD_SIZE] for h in range(NUM_HEADS)], dim=1
    )
    assert_close(y, want, "split_heads output")


@pytest.mark.part("attention")
@pytest.mark.points(2)
def test_merge_heads_inverts_split(attention):
    """merge_heads: (B, heads, T, d) -> (B, T, heads*d), the exact inverse of split_heads."""
    y = torch.arange(2 * NUM_HEADS * SEQ * HEAD_SIZE, dtype=torch.float).reshape(
        2, NUM_HEADS, SEQ, HEAD_SIZE
    )
    x = attention.merge_heads(y)
    require(isinstance(x, torch.Tensor), "merge_heads must return a tensor")
    require(
        x.shape == (2, SEQ, WIDTH),
        f"merge_heads returned shape {tuple(x.shape)}; expected (B, T, num_heads * head_size) = "
        f"{(2, SEQ, WIDTH)}",
    )
    want = torch.cat([y[:, h] for h in range(NUM_HEADS)], dim=-1)  # heads side by side
    assert_close(x, want, "merge_heads output", "x[b, t, h * head_size + i] must be y[b, h, t, i].")
    z = torch.randn(2, SEQ, WIDTH)
    assert_close(
        attention.merge_heads(attention.split_heads(z)),
        z,
        "merge_heads(split_heads(x))",
        "The two functions must undo each other.",
    )


@pytest.mark.part("attention")
@pytest.mark.points(1)
def test_attention_weights_shape(attention):
    """get_attention_weights returns (B, heads, T, T)."""
    q, k, _ = heads()
    weights = attention.get_attention_weights(q, k)
    require(isinstance(weights, torch.Tensor), "get_attention_weights must return a tensor")
    require(
        weights.shape == (2, NUM_HEADS, SEQ, SEQ),
        f"get_attention_weights returned shape {tuple(weights.shape)}; expected "
        f"(B, num_heads, T, T) = {(2, NUM_HEADS, SEQ, SEQ)}",
    )


@pytest.mark.part("attention")
@pytest.mark.points(2)
def test_attention_weights_rows_sum_to_one(attention):
    """each query's weights over the keys (the last axis) are >= 0 and sum to 1."""
    q, k, _ = heads()
    weights = attention.get_attention_weights(q, k).detach()
    require(weights.shape == (2, NUM_HEADS, SEQ, SEQ), "wrong shape (see the shape test)")
    require((weights >= 0).all(), "attention weights must be non-negative (a softmax output)")
    ones = torch.ones(2, NUM_HEADS, SEQ)
    if not torch.allclose(weights.sum(-1), ones, atol=1e-5) and torch.allclose(
        weights.sum(-2), ones, atol=1e-5
    ):
        raise AssertionError(
            "the softmax is taken over the query axis (dim=-2); take it over the keys, the "
            "last axis (dim=-1), so each query's weights sum to 1"
        )
    require(
        torch.allclose(weights.sum(-1), ones, atol=1e-5),
        "attention weights do not sum to 1 over the last axis (the keys)",
    )


@pytest.mark.part("attention")
@pytest.mark.points(5)
def test_attention_weights_values(attention):
    """get_attention_weights computes softmax(q k^T / sqrt(head_size))."""
    q, k, _ = heads()
    weights = attention.get_attention_weights(q, k)
    diagnoses = [
        ("the scores are not divided by sqrt(head_size)", expected_weights(q, k, scale=1)),
        (
            "the scores are divided by sqrt(num_heads * head_size); divide by sqrt(head_size)",
            expected_weights(q, k, scale=WIDTH),
        ),
        (
            "the scores are divided by sqrt(num_heads); divide by sqrt(head_size)",
            expected_weights(q, k, scale=NUM_HEADS),
        ),
        (
            "the scores are divided by head_size; divide by its square root",
            expected_weights(q, k, scale=HEAD_SIZE**2),
        ),
        (
            "queries and keys are swapped (k q^T): row t must hold query t's weights over keys",
            expected_weights(k, q),
        ),
    ]
    for message, alternative in diagnoses:
        if same(weights, alternative):
            raise AssertionError(f"get_attention_weights: {message}")
    assert_close(
        weights,
        expected_weights(q, k),
        "attention weights",
        "Expected softmax(q @ k^T / sqrt(head_size)) over the last axis.",
    )


@pytest.mark.part("attention")
@pytest.mark.points(1)
def test_apply_attention_shape(attention):
    """apply_attention returns the concatenated heads, (B, T, heads*head_size)."""
    out = attention.apply_attention(*heads())
    require(isinstance(out, torch.Tensor), "apply_attention must return a tensor")
    require(
        out.shape == (2, SEQ, WIDTH),
        f"apply_attention returned shape {tuple(out.shape)}; expected (B, T, num_heads * "
        f"head_size) = {(2, SEQ, WIDTH)}: merge the heads before returning",
    )


@pytest.mark.part("attention")
@pytest.mark.points(1)
def test_apply_attention_values(attention):
    """apply_attention computes concat(A_1 v_1, ..., A_m v_m)."""
    q, k, v = heads()
    out = attention.apply_attention(q, k, v)
    per_head = expected_weights(q, k) @ v  # (B, heads, T, d)
    want = torch.cat([per_head[:, h] for h in range(NUM_HEADS)], dim=-1)  # (B, T, heads*d)
    assert_close(
        out,
        want,
        "apply_attention output",
        "Multiply the attention weights by the values, then merge the heads.",
    )


@pytest.mark.part("attention")
@pytest.mark.points(1)
def test_attention_forward_shape(attention):
    """forward maps (B, T, heads*head_size) to the same shape."""
    x = torch.randn(2, SEQ, WIDTH)
    out = attention(x)
    require(isinstance(out, torch.Tensor), "MultiHeadedAttention.forward must return a tensor")
    require(
        out.shape == x.shape,
        f"MultiHeadedAttention.forward returned shape {tuple(out.shape)}; expected the input's "
        f"shape {tuple(x.shape)}",
    )


@pytest.mark.part("attention")
@pytest.mark.points(1)
def test_attention_parameter_count(vit_solution):
    """the module has 4 (d^2 + d) parameters, d = num_heads * head_size."""
    for head_size, num_heads in [(HEAD_SIZE, NUM_HEADS), (5, 2)]:
        module = vit_solution.MultiHeadedAttention(head_size, num_heads, SEQ)
        d = head_size * num_heads
        count = sum(p.numel() for p in module.parameters())
        require(
            count == 4 * (d * d + d),
            f"MultiHeadedAttention(head_size={head_size}, num_heads={num_heads}) has {count} "
            f"parameters; expected 4 * (d^2 + d) = {4 * (d * d + d)} with d = {d}: one d x d "
            "projection with a bias for each of queries, keys, values and the output. Create "
            "them in __init__.",
        )


@pytest.mark.part("attention")
@pytest.mark.points(1)
def test_attention_forward_equivariant_and_trainable(attention):
    """reordering the tokens reorders the output; every parameter receives a gradient."""
    x = torch.randn(2, SEQ, WIDTH)
    order = torch.tensor([3, 0, 4, 1, 2])
    out = attention(x)
    out_permuted = attention(x[:, order])
    assert_close(
        out_permuted,
        out.detach()[:, order],
        "output for reordered tokens",
        "Self-attention without positions treats the tokens as a set: permuting the "
        "input tokens must permute the output the same way. Check the axes you "
        "reshape, transpose and softmax over.",
    )
    out.pow(2).sum().backward()
    names = [
        name
        for name, p in attention.named_parameters()
        if p.grad is None or p.grad.abs().sum() == 0
    ]
    require(
        not names,
        f"these parameters receive no gradient from forward: {names}. Use all four projections.",
    )


# ---------------------------------------------------------------------------------------
# Problem 2.6-2.9: patches, pre-norm block, ViT


def expected_patches(image, p, flatten=True):
    """Row-major list of p x p patches, each a (C, p, p) block (flattened when asked)."""
    B, C, H, W = image.shape
    patches = [
        image[:, :, r * p : (r + 1) * p, s * p : (s + 1) * p]  # (B, C, p, p)
        for r in range(H // p)
        for s in range(W // p)
    ]
    out = torch.stack(patches, dim=1)  # (B, N, C, p, p)
    return out.reshape(B, len(patches), C * p * p) if flatten else out


def labelled_image():
    """(2, 3, 4, 6) image whose pixel value spells its index: 1000 b + 100 c + 10 i + j."""
    b, c, i, j = torch.meshgrid(
        torch.arange(2), torch.arange(3), torch.arange(4), torch.arange(6), indexing="ij"
    )
    return (1000 * b + 100 * c + 10 * i + j).float()


@pytest.fixture
def vit_model(vit_solution):
    model = vit_solution.VisionTransformer(
        embed_dim=16,
        hidden_dim=24,
        num_channels=3,
        num_heads=2,
        num_layers=2,
        num_classes=5,
        patch_size=4,
        num_patches=4,
        block="prenorm",
    )
    return model.eval()


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_get_patches_flattened(vit_model):
    """get_patches lists patches row by row, each flattened in (C, p, p) order."""
    image = labelled_image()
    patches = vit_model.get_patches(image, 2)
    require(isinstance(patches, torch.Tensor), "get_patches must return a tensor")
    require(
        patches.shape == (2, 6, 12),
        f"get_patches of a (2, 3, 4, 6) image with patch_size 2 returned shape "
        f"{tuple(patches.shape)}; expected (B, (H/p) * (W/p), C * p * p) = (2, 6, 12)",
    )
    want = expected_patches(image, 2)
    column_major = torch.stack([want[:, r * 3 + s] for s in range(3) for r in range(2)], dim=1)
    if same(patches, column_major):
        raise AssertionError(
            "get_patches lists patches column by column; list them row by row (left to "
            "right along the top row of patches, then the next row)"
        )
    channel_last = (
        expected_patches(image, 2, flatten=False).permute(0, 1, 3, 4, 2).reshape(2, 6, 12)
    )
    if same(patches, channel_last):
        raise AssertionError(
            "get_patches flattens each patch with the channel varying fastest; flatten a "
            "(C, p, p) block instead (channel first, then row, then column)"
        )
    assert_close(
        patches,
        want,
        "patches",
        "Pixel values in this test encode their index as 1000 b + 100 c + 10 row + col.",
    )


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_get_patches_unflattened(vit_model):
    """get_patches(..., flatten_channels=False) returns (B, N, C, p, p)."""
    image = labelled_image()
    patches = vit_model.get_patches(image, 2, flatten_channels=False)
    require(isinstance(patches, torch.Tensor), "get_patches must return a tensor")
    require(
        patches.shape == (2, 6, 3, 2, 2),
        f"get_patches(flatten_channels=False) returned shape {tuple(patches.shape)}; expected "
        "(B, num_patches, C, p, p) = (2, 6, 3, 2, 2)",
    )
    assert_close(
        patches,
        expected_patches(image, 2, flatten=False),
        "unflattened patches",
        "Pixel values in this test encode their index as 1000 b + 100 c + 10 row + col.",
    )


class Affine(nn.Module):
    """Stand-in for a sub-layer: x * scale + shift (easy to tell apart)."""

    def __init__(self, scale, shift):
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x):
        return x * self.scale + self.shift


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_prenorm_block_wiring(vit_solution):
    """PreNormAttentionBlock: x + attn(ln1(x)), then that + linear(ln2(that))."""
    block = vit_solution.PreNormAttentionBlock(8, 16, 2, SEQ)
    # Replace the sub-layers by simple stand-ins, so that only the wiring is tested.
    block.layer_norm_1 = Affine(2.0, 0.5)
    block.layer_norm_2 = Affine(-1.0, 0.25)
    block.attn = nn.Linear(8, 8)
    block.linear = nn.Sequential(nn.Linear(8, 8), nn.Tanh())
    block.eval()
    x = torch.randn(2, SEQ, 8)
    with torch.no_grad():
        out = block(x)
        middle = x + block.attn(block.layer_norm_1(x))
        want = middle + block.linear(block.layer_norm_2(middle))
        post_norm = block.layer_norm_1(x + block.attn(x))
        post_norm = block.layer_norm_2(post_norm + block.linear(post_norm))
    if same(out, post_norm):
        raise AssertionError(
            "this is the post-norm wiring; normalise the input of each sub-layer instead of the sum"
        )
    assert_close(
        out,
        want,
        "PreNormAttentionBlock output",
        "Expected x = x + attn(layer_norm_1(x)); x = x + linear(layer_norm_2(x)).",
    )


def correct_get_patches(image, patch_size, flatten_channels=True):
    return expected_patches(image, patch_size, flatten=flatten_channels)


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_forward_shape(vit_solution):
    """forward maps (B, C, H, W) images to (B, num_classes) logits, for both block types."""
    for block in ("prenorm", "postnorm"):
        model = vit_solution.VisionTransformer(
            embed_dim=16,
            hidden_dim=24,
            num_channels=3,
            num_heads=2,
            num_layers=2,
            num_classes=5,
            patch_size=4,
            num_patches=4,
            block=block,
        ).eval()
        with torch.no_grad():
            logits = model(torch.randn(3, 3, 8, 8))
        require(isinstance(logits, torch.Tensor), "VisionTransformer.forward must return a tensor")
        require(
            logits.shape == (3, 5),
            f"VisionTransformer(block={block!r}).forward returned shape {tuple(logits.shape)}; "
            "expected (B, num_classes) = (3, 5)",
        )
        require(torch.isfinite(logits).all(), f"block={block!r}: the logits contain NaN or inf")


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_forward_uses_cls_token(vit_model):
    """forward: embed patches, prepend [CLS], add positions, transformer, mlp_head on [CLS]."""
    # Use a correct get_patches here, so that this test checks forward alone.
    vit_model.get_patches = correct_get_patches
    images = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        logits = vit_model(images)
        tokens = vit_model.input_layer(expected_patches(images, 4))  # (B, N, E)
        cls = vit_model.cls_token.expand(3, -1, -1)  # (B, 1, E)
        tokens = torch.cat([cls, tokens], dim=1)  # (B, N + 1, E)
        tokens = tokens + vit_model.pos_embedding[:, : tokens.shape[1]]
        want = vit_model.mlp_head(vit_model.transformer(tokens)[:, 0])  # (B, classes)
        last = vit_model.mlp_head(vit_model.transformer(tokens)[:, -1])
    if same(logits, last):
        raise AssertionError(
            "forward classifies the last token; put [CLS] first and classify position 0"
        )
    assert_close(
        logits,
        want,
        "ViT logits",
        "Expected mlp_head(transformer(cat([cls_token, input_layer(patches)]) + "
        "pos_embedding)[:, 0]).",
    )


@pytest.mark.part("vit")
@pytest.mark.points(1)
def test_vit_loss(vit_model):
    """loss is the mean cross-entropy of the logits against the labels."""
    preds = torch.randn(6, 5, requires_grad=True)
    labels = torch.tensor([0, 4, 2, 2, 1, 3])
    loss = vit_model.loss(preds, labels)
    require(
        isinstance(loss, torch.Tensor) and loss.dim() == 0,
        "VisionTransformer.loss must return a scalar tensor",
    )
    want = F.cross_entropy(preds.detach(), labels)
    if torch.isclose(loss.detach().double(), want.double() * 6, atol=1e-5):
        raise AssertionError("loss sums over the batch; take the mean")
    assert_close(
        loss,
        want,
        "ViT loss",
        "Expected the mean cross-entropy over the batch; preds are logits (not probabilities).",
    )
    loss.backward()
    require(preds.grad is not None, "no gradient reaches preds through the loss")
