"""Reference attention operations, with the usual mistakes as named variants (trusted side).

Every suite that grades attention computes its expected values here, so that a mistake gets the same
name (and the same message) in every assignment. Shapes: B batch, nh heads, T length, hs head size.
"""

from __future__ import annotations

import math

import torch


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, nh·hs) -> (B, nh, T, hs), with y[b, h, t, i] = x[b, t, h·hs + i]."""
    b, t, d = x.shape
    return x.reshape(b, t, num_heads, d // num_heads).transpose(1, 2)  # (B, nh, T, hs)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, hs) -> (B, T, nh·hs): the exact inverse of :func:`split_heads`."""
    b, nh, t, hs = y.shape
    return y.transpose(1, 2).reshape(b, t, nh * hs)  # (B, T, nh*hs)


def causal_mask(t: int) -> torch.Tensor:
    """(T, T) of {0, 1}: 1 where query i may attend to key j (j <= i)."""
    return torch.tril(torch.ones(t, t))


def softmax_weights(q: torch.Tensor, k: torch.Tensor, scale: float | None = None, dim: int = -1,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(q kᵀ / scale) (scale defaults to sqrt of the last size of q); ``mask == 0`` entries are exactly 0.

    q: (..., Tq, d), k: (..., Tk, d) -> (..., Tq, Tk). A mask broadcasts against the scores; a row whose keys are
    all masked comes out as zeros (never NaN).
    """
    scale = math.sqrt(q.shape[-1]) if scale is None else scale
    scores = q @ k.transpose(-2, -1) / scale  # (..., Tq, Tk)
    if mask is None:
        return torch.softmax(scores, dim=dim)
    keep = mask.to(torch.bool)
    weights = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=dim)
    return torch.nan_to_num(weights, nan=0.0) * keep


def weight_mistakes(q: torch.Tensor, k: torch.Tensor, num_heads: int | None = None) -> dict[str, torch.Tensor]:
    """Named wrong versions of :func:`softmax_weights` for (B, nh, T, hs) queries and keys, for diagnoses."""
    hs = q.shape[-1]
    nh = num_heads if num_heads is not None else (q.shape[1] if q.dim() == 4 else 1)
    t = q.shape[-2]
    out = {
        "the softmax is taken over the query axis (dim=-2) instead of the key axis (dim=-1)": softmax_weights(q, k, dim=-2),
        "the scores are not divided by sqrt(head_size)": softmax_weights(q, k, scale=1.0),
        "the scores are divided by sqrt(num_heads * head_size) (the model width) instead of sqrt(head_size)":
            softmax_weights(q, k, scale=math.sqrt(nh * hs)),
        "the scores are divided by sqrt(num_heads) instead of sqrt(head_size)": softmax_weights(q, k, scale=math.sqrt(nh)),
        "the scores are divided by head_size instead of sqrt(head_size)": softmax_weights(q, k, scale=float(hs)),
        "queries and keys are swapped (the weight matrix is transposed)": softmax_weights(k, q),
        "the softmax is taken over the query axis and the scores are not scaled": softmax_weights(q, k, scale=1.0, dim=-2),
        "a causal mask is applied (each query sees only earlier keys); this attention must see every position":
            softmax_weights(q, k, mask=causal_mask(t)),
    }
    if nh == 1:  # with one head, the width and the head size are the same: keep the names that can be told apart
        out = {name: w for name, w in out.items() if "num_heads" not in name}
    return out


def masked_mistakes(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Named wrong ways of applying a {0, 1} mask (0: query i must not attend to key j)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    keep = mask.to(torch.bool)
    return {
        "the mask is ignored": torch.softmax(scores, dim=-1),
        "the mask is applied with the opposite meaning (1 masks a key out)": softmax_weights(q, k, mask=~keep),
        "the weights are multiplied by the mask after the softmax without renormalising (rows no longer sum to 1)":
            torch.softmax(scores, dim=-1) * keep,
        "the mask is added to the scores instead of excluding masked keys": torch.softmax(scores + mask, dim=-1),
        "the mask is applied before scaling with a finite fill that the scale then weakens":
            torch.softmax(scores.masked_fill(~keep, -1.0), dim=-1),
    }
