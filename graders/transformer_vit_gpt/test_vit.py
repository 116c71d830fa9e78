"""Hidden tests, Problem 3(a): PatchEmbed (2 points), and advice on the given VisionTransformer.

PatchEmbed is checked on the student's own weights: a (nout, nin, p, p) convolution kernel (or the same
numbers as a (nout, nin·p·p) linear map over flattened patches) applied with stride p.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlgrade.harness import expect
from dlgrade.harness.params import randomize, same
from graders.transformer_vit_gpt._support import first, name

pytestmark = pytest.mark.part("patch_embed")

CASES = [(8, 2, 3, 10), (12, 4, 2, 7), (6, 3, 1, 5)]  # (img_size, patch_size, nin, nout)


def kernel(params: dict[str, torch.Tensor], p: int, nin: int, nout: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's patch projection as a conv kernel (nout, nin, p, p) and bias."""
    mats = [t for t in params.values() if t.dim() >= 2]
    vecs = [t for t in params.values() if t.dim() == 1]
    shapes = ", ".join(f"{n} {tuple(t.shape)}" for n, t in params.items()) or "none"
    expect.true(len(mats) == 1, f"PatchEmbed should have one projection (an nn.Conv2d with kernel size and stride "
                f"patch_size); its parameters: {shapes}", "not one projection")
    w = mats[0]
    if tuple(w.shape) == (nout, nin * p * p):
        w = w.reshape(nout, nin, p, p)  # a linear map over patches flattened channel, row, column
    expect.true(tuple(w.shape) == (nout, nin, p, p), f"PatchEmbed's projection has shape {tuple(w.shape)}; for nin={nin}, "
                f"nout={nout}, patch_size={p} an nn.Conv2d kernel is {(nout, nin, p, p)}", "wrong kernel size")
    b = vecs[0] if len(vecs) == 1 and tuple(vecs[0].shape) == (nout,) else torch.zeros(nout)
    return w, b


@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("INTERFACES / P3(a): PatchEmbed (B, nin, S, S) -> (B, (S/p)^2, nout); e.g. (3, 32, 32) with 4x4 "
                  "patches -> 64 patches of 128")
def test_patch_embed_shape(sub, gen):
    """PatchEmbed returns (B, (S/p)², nout)"""
    for s, p, nin, nout in CASES:
        pe = sub.new(name("PatchEmbed"), s, p, nin, nout)
        x = torch.randn(2, nin, s, s, generator=gen)
        expect.tensor(pe(x), f"PatchEmbed({s}, {p}, {nin}, {nout}) output", shape=(2, (s // p) ** 2, nout), dtype="float")


@pytest.mark.points(1.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P3(a): each patch is flattened and linearly projected: nn.Conv2d with kernel size = stride = patch_size")
def test_patch_embed_values(sub, gen):
    """PatchEmbed: each non-overlapping p×p patch projected by your weights, patches row by row"""
    for s, p, nin, nout in CASES:
        pe = sub.new(name("PatchEmbed"), s, p, nin, nout)
        params = randomize(pe, gen)
        w, b = kernel(params, p, nin, nout)
        x = torch.randn(2, nin, s, s, generator=gen)
        got = expect.tensor(pe(x), f"PatchEmbed({s}, {p}, {nin}, {nout}) output", shape=(2, (s // p) ** 2, nout))
        grid = F.conv2d(x, w, b, stride=p)  # (B, nout, S/p, S/p)
        row_major = grid.flatten(2).transpose(1, 2)
        column_major = grid.transpose(2, 3).flatten(2).transpose(1, 2)  # another fixed order: the positions learn it
        if same(got, row_major) or same(got, column_major):
            continue
        expect.close(got, row_major, f"PatchEmbed({s}, {p}, {nin}, {nout}) output", diagnoses={
            "the (B, nout, S/p, S/p) grid is reshaped to (B, patches, nout) without moving the channel axis last "
            "(flatten the grid, then transpose)": grid.reshape(2, -1, nout),
            "the convolution's stride is not patch_size (patches overlap)": F.conv2d(x, w, b, stride=1)[..., ::p, ::p]
            .flatten(2).transpose(1, 2),
            "the bias is missing": F.conv2d(x, w, None, stride=p).flatten(2).transpose(1, 2),
        })


@pytest.mark.advice
@pytest.mark.visibility("after_published")
@pytest.mark.spec("Given code (P3(b)): VisionTransformer adds learned positions to the patches, puts the class token "
                  "first and classifies it; advice only")
def test_given_vit_class_token_and_positions(sub, gen):
    """Advice: the given VisionTransformer still reads the class token at position 0, after adding learned positions"""
    vit = sub.new(name("VisionTransformer"), 3, 4, 8, 2, 12, 4, 16, 2, 1)
    vit.call("eval")
    randomize(vit, gen)
    x = torch.randn(2, 3, 8, 8, generator=gen)
    logits, alphas = expect.pair(vit(x, return_attn=True), "VisionTransformer output with return_attn=True")
    logits = expect.tensor(logits, "VisionTransformer logits", shape=(2, 4), dtype="float")
    expect.tensor(alphas, "VisionTransformer alphas", shape=(2, 1, 2, 17, 17), dtype="float")
    patches = expect.tensor(vit.get("patch_embed")(x), "the patch embedding", shape=(2, 16, 12))
    pos = expect.tensor(vit.get("pos_E")(torch.arange(16)), "the position embedding", shape=(16, 12))
    cls = expect.tensor(vit.get("cls_token"), "the class token", shape=(1, 1, 12))
    seq = torch.cat([cls.expand(2, -1, -1), patches + pos], 1)
    h, _ = expect.pair(vit.get("transformer")(seq, None), "the transformer")
    want = expect.tensor(vit.get("head")(h[:, 0]), "the head", shape=(2, 4))
    expect.true(same(first(logits), want), "VisionTransformer.forward no longer does what the given code does (patch "
                "embedding + learned positions, class token first, transformer, head on the class token); restore it",
                "given VisionTransformer changed")
