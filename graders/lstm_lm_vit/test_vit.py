"""Hidden tests, Problems 2.6-2.9: patches, the pre-norm block, the ViT forward pass and loss (6 points).

The course's given VisionTransformer.__init__ (kept as shipped, with torch's own nn.LayerNorm in `mlp_head`) is
used as the student submitted it: the ViT is composed from whatever its given layers are.

The blocks and the ViT are checked by composition: their own submodules (the student's
LayerNorm, attention, feed-forward network, input layer, tokens and head) are called in the
worker one at a time, wired here the way the handout says, and the result is compared with the
student's forward. So a mistake in LayerNorm or attention is graded once, in its own part.
"""

import pytest
import torch
import torch.nn.functional as F

from dlgrade.harness import expect
from dlgrade.harness.params import close_scalar, randomize, same

pytestmark = pytest.mark.part("vit")

E, HIDDEN, NH, LAYERS, CLASSES = 12, 16, 3, 2, 5


def new_vit(sub, block="prenorm", patch_size=2, num_patches=12, channels=3):
    vit = sub.new("vit_solution.VisionTransformer", embed_dim=E, hidden_dim=HIDDEN, num_channels=channels,
                  num_heads=NH, num_layers=LAYERS, num_classes=CLASSES, patch_size=patch_size,
                  num_patches=num_patches, block=block, dropout=0.0)
    vit.call("eval")
    return vit


def ref_patches(ref, image, p, flatten=True):
    return ref.module("vit_solution").VisionTransformer.get_patches(None, image, p, flatten_channels=flatten)


def patch_diagnoses(image, p):
    b, c, h, w = image.shape
    n = (h // p) * (w // p)
    grid = image.reshape(b, c, h // p, p, w // p, p)
    return {
        "the patches are listed column by column (top to bottom first); the order is row-major: left to right, "
        "then top to bottom": grid.permute(0, 4, 2, 1, 3, 5).reshape(b, n, c * p * p),
        "each patch is flattened channel-last (row, column, channel); flatten it as a (C, p, p) tensor, channel "
        "first": grid.permute(0, 2, 4, 3, 5, 1).reshape(b, n, c * p * p),
        "each patch is flattened column first: within a patch the order is channel, then row, then column":
            grid.permute(0, 2, 4, 1, 5, 3).reshape(b, n, c * p * p),
        "the image is reshaped straight to (B, patches, C·p·p) without first moving the patch-grid axes to the front":
            image.reshape(b, n, c * p * p),
    }


# ------------------------------------------------------------------ get_patches (2 points)


@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P2.6 / INTERFACES: get_patches(image (B, C, H, W), patch_size) -> (B, num_patches, C*p*p), "
                  "num_patches = (H/p)(W/p)")
def test_get_patches_shape(sub, gen):
    """get_patches returns (B, patches, C·p·p)"""
    vit = new_vit(sub)
    for shape, p, n in [((2, 3, 6, 8), 2, 12), ((1, 1, 4, 6), 2, 6)]:
        image = torch.randn(*shape, generator=gen)
        expect.tensor(vit.call("get_patches", image, p), f"get_patches output for a {shape} image, p = {p}",
                      shape=(shape[0], n, shape[1] * p * p))


@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.6 / docstring: the patches in row-major order, each flattened as a (C, p, p) tensor (the order "
                  "the given input_layer reads)")
def test_get_patches_values(sub, ref, gen):
    """get_patches: row-major patch order, each patch flattened channel, row, column"""
    vit = new_vit(sub)
    for shape, p in [((2, 3, 6, 8), 2), ((2, 3, 8, 12), 4), ((1, 1, 4, 6), 2), ((2, 2, 3, 3), 1)]:
        image = torch.randn(*shape, generator=gen)
        expect.close(vit.call("get_patches", image, p), ref_patches(ref, image, p),
                     f"get_patches output for a {shape} image with p = {p}", atol=1e-6, rtol=0,
                     diagnoses=patch_diagnoses(image, p))


def grid_readings(image, p, flat):
    """What "an image grid" may mean for flatten_channels=False, each with the flattened patches it holds."""
    b, c, h, w = image.shape
    n = flat.shape[1]
    cells = flat.reshape(b, h // p, w // p, c, p, p)
    return {(b, n, c, p, p): cells.reshape(b, n, c, p, p), (b, h // p, w // p, c, p, p): cells,
            (b, n, p, p, c): cells.reshape(b, n, c, p, p).permute(0, 1, 3, 4, 2),
            (b, h // p, w // p, p, p, c): cells.permute(0, 1, 2, 4, 5, 3)}


@pytest.mark.advice
@pytest.mark.visibility("after_published")
@pytest.mark.spec("INTERFACES: the handout only calls flatten_channels=False 'an image grid'; its layout is not fixed: "
                  "advice only")
def test_get_patches_unflattened(sub, ref, gen):
    """Advice: get_patches(..., flatten_channels=False) holds the same patches as an image grid"""
    vit = new_vit(sub)
    image = torch.randn(2, 3, 4, 6, generator=gen)
    flat = ref_patches(ref, image, 2)
    got = expect.tensor(vit.call("get_patches", image, 2, flatten_channels=False),
                        "get_patches output with flatten_channels=False")
    readings = grid_readings(image, 2, flat)
    expect.true(tuple(got.shape) in readings, f"get_patches(flatten_channels=False) has shape {tuple(got.shape)}; an image "
                "grid of patches is usually (B, patches, C, p, p) or (B, H/p, W/p, C, p, p)")
    expect.close(got, readings[tuple(got.shape)], "get_patches output with flatten_channels=False", atol=1e-6, rtol=0)


# ------------------------------------------------------------------ pre-norm block (1 point)


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.7 / INTERFACES: PreNormAttentionBlock.forward: x + attn(layer_norm_1(x)), then + "
                  "linear(layer_norm_2(.)) (Figure 1)")
def test_prenorm_block_forward(sub, gen):
    """PreNormAttentionBlock: x + attn(ln1(x)), then + linear(ln2(·)), with your own submodules"""
    t = 5
    block = sub.new("vit_solution.PreNormAttentionBlock", E, HIDDEN, NH, t)
    block.call("eval")
    randomize(block, gen)  # distinct LayerNorm weights, so mixing up ln1 and ln2 shows
    ln1, attn, ln2, mlp = (block.get(name) for name in ("layer_norm_1", "attn", "layer_norm_2", "linear"))
    x = torch.randn(2, t, E, generator=gen)
    got = expect.tensor(block(x), "PreNormAttentionBlock output", shape=(2, t, E))

    y = x + attn(ln1(x))
    want = expect.tensor(y + mlp(ln2(y)), "x + attn(ln1(x)) + linear(ln2(·)) computed with your submodules",
                         shape=(2, t, E))
    if same(got, want):
        return
    post = ln1(x + attn(x))
    n = ln1(x)
    from_norm = n + attn(n)
    expect.close(got, want, "PreNormAttentionBlock output", diagnoses={
        "the block is wired post-norm (LayerNorm after each residual sum); pre-norm normalises the input of each "
        "sub-layer and adds to the un-normalised x": ln2(post + mlp(post)),
        "the residual is added to the normalised input (ln1(x) + attn(ln1(x))) instead of to x":
            from_norm + mlp(ln2(from_norm)),
        "layer_norm_1 is used in front of both sub-layers; the feed-forward network takes layer_norm_2":
            y + mlp(ln1(y)),
        "the feed-forward sub-layer has no residual connection": mlp(ln2(y)),
        "the attention sub-layer has no residual connection": attn(ln1(x)) + mlp(ln2(attn(ln1(x)))),
    })


# ------------------------------------------------------------------ ViT forward (2 points)


def composed(vit, x, variant=None):
    """The ViT forward wired here from the student's own parts (each run in the worker)."""
    p = vit.get("patch_size")
    patches = expect.tensor(vit.call("get_patches", x, p), "get_patches output", dtype="float")
    tokens = expect.tensor(vit.get("input_layer")(patches), "input_layer output", dtype="float")  # (B, N, E)
    cls, pos = vit.get("cls_token"), vit.get("pos_embedding")
    b, n = tokens.shape[:2]
    c = cls.expand(b, -1, -1)  # (B, 1, E)
    seq = torch.cat([tokens, c], 1) if variant in ("append", "append_first") else torch.cat([c, tokens], 1)
    if variant != "no_pos":
        seq = seq + pos[:, : n + 1]
    h = vit.get("transformer")(seq)  # (B, N+1, E)
    pick = {"last": h[:, -1], "append": h[:, -1], "mean": h.mean(1)}.get(variant, h[:, 0])
    return vit.get("mlp_head")(pick)


VIT_MISTAKES = {
    "last": "the class is read from the last token instead of the [CLS] token at position 0",
    "append": "the [CLS] token is appended after the patches instead of prepended",
    "append_first": "the [CLS] token is appended after the patches (and position 0, a patch, is classified)",
    "no_pos": "the position embeddings are not added",
    "mean": "the tokens are averaged instead of reading the [CLS] token",
}


def check_forward(vit, x, what):
    got = expect.tensor(vit(x), what, shape=(x.shape[0], CLASSES), dtype="float")
    want = expect.tensor(composed(vit, x), "the ViT composed from your parts", shape=(x.shape[0], CLASSES))
    if same(got, want):
        return
    for variant, name in VIT_MISTAKES.items():
        if same(got, composed(vit, x, variant)):
            expect.fail(f"{what} is wrong: {name}", name)
    expect.fail(f"{what} does not match the ViT composed from your own parts (get_patches -> input_layer -> prepend "
                "cls_token -> add pos_embedding[:, :N+1] -> transformer -> mlp_head on token 0)")


@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P2.8: VisionTransformer.forward returns logits (B, num_classes), for block='prenorm' and 'postnorm'")
def test_vit_forward_shape(sub, gen):
    """VisionTransformer forward returns logits (B, num_classes), with pre-norm and post-norm blocks"""
    x = torch.randn(2, 3, 6, 8, generator=gen)
    for block in ("prenorm", "postnorm"):
        expect.tensor(new_vit(sub, block)(x), f"VisionTransformer(block={block!r}) output", shape=(2, CLASSES),
                      dtype="float")


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.8: patches -> input_layer -> prepend the cls_token -> add pos_embedding -> transformer -> "
                  "mlp_head on the [CLS] token")
def test_vit_forward_values(sub, gen):
    """VisionTransformer forward: patches, embed, prepend [CLS], add positions, transformer, head on [CLS]"""
    vit = new_vit(sub)
    check_forward(vit, torch.randn(3, 3, 6, 8, generator=gen), "VisionTransformer output")


@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.8 / INTERFACES: num_patches is the largest number of patches; post-norm blocks work the same way")
def test_vit_forward_postnorm_and_fewer_patches(sub, gen):
    """VisionTransformer forward: post-norm blocks, and images with fewer patches than num_patches"""
    vit = new_vit(sub, "postnorm")
    check_forward(vit, torch.randn(2, 3, 6, 8, generator=gen), "VisionTransformer(block='postnorm') output")
    vit = new_vit(sub, num_patches=12)
    check_forward(vit, torch.randn(2, 3, 4, 6, generator=gen),
                  "VisionTransformer output for a 4×6 image (6 patches, num_patches=12)")


# ------------------------------------------------------------------ loss (1 point)


@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P2.9: loss() returns the cross entropy of the mini-batch (the mean)")
def test_vit_loss(sub, gen):
    """VisionTransformer.loss: the mean cross-entropy of the logits"""
    vit = new_vit(sub)
    preds = 2.0 * torch.randn(6, CLASSES, generator=gen)
    labels = torch.randint(0, CLASSES, (6,), generator=gen)
    close_scalar(vit.call("loss", preds, labels), float(F.cross_entropy(preds, labels)), "VisionTransformer.loss", {
        "sums the per-example losses instead of averaging them": float(F.cross_entropy(preds, labels, reduction="sum")),
        "applies softmax before cross_entropy (cross_entropy already includes log_softmax)":
            float(F.cross_entropy(preds.softmax(-1), labels)),
        "takes the negative logit of the label without log_softmax": float(F.nll_loss(preds, labels)),
    })
