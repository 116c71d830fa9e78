"""The small suite graded by both tools in the otter-grader side-by-side (scripts/bench_peers/run.py).

Written once: otter's test files and dlgrade's hidden tests are thin wrappers that call these functions. A check
reaches the student's code only through an ``api``, so the same check runs against live objects in otter's kernel
(:class:`LocalApi`) and against objects in dlgrade's sandboxed worker (``RemoteApi`` in the dlgrade test file).
Each check raises ``AssertionError`` with a message for the student; expected values are computed here.

The student's notebook defines ``LayerNorm(hidden_size, eps=1e-5)`` (biased variance over the last axis) and
``MultiHeadedAttention(head_size, num_heads)`` with ``split_heads`` (B, T, heads*d) -> (B, heads, T, d),
``merge_heads`` (its inverse) and ``get_attention_weights(queries, keys)`` = softmax(Q K^T / sqrt(d)) over the keys.
"""

from __future__ import annotations

import math
from typing import Any

import torch

POINTS = {"layernorm": 2, "heads": 2, "attention": 2}


class LocalApi:
    """The student's names as live objects (otter: the notebook's global environment)."""

    def __init__(self, env: dict[str, Any]) -> None:
        self.env = env

    def new(self, name: str, *args: Any) -> Any:
        return self.env[name](*args)

    def call(self, obj: Any, method: str, *args: Any) -> Any:
        return getattr(obj, method)(*args)

    def forward(self, obj: Any, *args: Any) -> Any:
        return obj(*args)


def _close(actual: Any, expected: torch.Tensor, what: str) -> None:
    assert isinstance(actual, torch.Tensor), f"{what}: expected a tensor, got {type(actual).__name__}"
    assert tuple(actual.shape) == tuple(expected.shape), f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    assert torch.allclose(actual.double(), expected.double(), atol=1e-5, rtol=1e-4), f"{what}: wrong values"


def check_layernorm(api: Any, seed: int = 0) -> None:
    """LayerNorm normalises over the last axis with the biased variance, then scales and shifts."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 7, 16, generator=gen) * 3 + 1
    ln = api.new("LayerNorm", 16)
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    _close(api.forward(ln, x), (x - mean) / torch.sqrt(var + 1e-5), "LayerNorm output (weight 1, bias 0)")


def check_heads(api: Any, seed: int = 0) -> None:
    """split_heads gives (B, heads, T, d); merge_heads is its exact inverse."""
    gen = torch.Generator().manual_seed(seed)
    B, T, heads, d = 2, 5, 3, 4
    x = torch.randn(B, T, heads * d, generator=gen)
    attn = api.new("MultiHeadedAttention", d, heads)
    split = api.call(attn, "split_heads", x)
    _close(split, x.view(B, T, heads, d).transpose(1, 2), "split_heads")
    _close(api.call(attn, "merge_heads", split), x, "merge_heads(split_heads(x))")


def check_attention(api: Any, seed: int = 0) -> None:
    """get_attention_weights is softmax(Q K^T / sqrt(d)) over the keys: each row sums to 1."""
    gen = torch.Generator().manual_seed(seed)
    B, heads, T, d = 2, 3, 5, 4
    q, k = torch.randn(B, heads, T, d, generator=gen), torch.randn(B, heads, T, d, generator=gen)
    attn = api.new("MultiHeadedAttention", d, heads)
    weights = api.call(attn, "get_attention_weights", q, k)
    _close(weights, torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1), "attention weights")


CHECKS = {"layernorm": check_layernorm, "heads": check_heads, "attention": check_attention}


# ----------------------------------------------------------------------------- the three submissions (notebook code)

CORRECT = '''\
import math
import torch
import torch.nn as nn


class LayerNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, inputs):
        mean = inputs.mean(dim=-1, keepdim=True)
        var = ((inputs - mean) ** 2).mean(dim=-1, keepdim=True)
        return self.weight * (inputs - mean) / torch.sqrt(var + self.eps) + self.bias


class MultiHeadedAttention(nn.Module):
    def __init__(self, head_size, num_heads):
        super().__init__()
        self.head_size, self.num_heads = head_size, num_heads

    def split_heads(self, tensor):
        B, T, _ = tensor.shape
        return tensor.view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, heads, T, d)

    def merge_heads(self, tensor):
        B, _, T, _ = tensor.shape
        return tensor.transpose(1, 2).reshape(B, T, self.num_heads * self.head_size)

    def get_attention_weights(self, queries, keys):
        scores = queries @ keys.transpose(-1, -2) / math.sqrt(self.head_size)
        return torch.softmax(scores, dim=-1)
'''

# two classic mistakes: the unbiased variance, and attention scores left unscaled
BUGGY = CORRECT.replace("var = ((inputs - mean) ** 2).mean(dim=-1, keepdim=True)", "var = inputs.var(dim=-1, keepdim=True)") \
               .replace("scores = queries @ keys.transpose(-1, -2) / math.sqrt(self.head_size)",
                        "scores = queries @ keys.transpose(-1, -2)")

BLANK = '''\
import math
import torch
import torch.nn as nn


class LayerNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, inputs):
        raise NotImplementedError("LayerNorm.forward")


class MultiHeadedAttention(nn.Module):
    def __init__(self, head_size, num_heads):
        super().__init__()
        self.head_size, self.num_heads = head_size, num_heads

    def split_heads(self, tensor):
        raise NotImplementedError("split_heads")

    def merge_heads(self, tensor):
        raise NotImplementedError("merge_heads")

    def get_attention_weights(self, queries, keys):
        raise NotImplementedError("get_attention_weights")
'''

SUBMISSIONS = {"correct": CORRECT, "buggy": BUGGY, "blank": BLANK}
EXPECTED = {"correct": 6.0, "buggy": 2.0, "blank": 0.0}   # buggy: only split/merge heads is right
