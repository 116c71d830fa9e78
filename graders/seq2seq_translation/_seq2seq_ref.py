"""Reference computations of the seq2seq tests, with known mistakes as variants (trusted side only)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def encoder(enc: torch.nn.Module, source: torch.Tensor, variant: str | None = None) -> tuple[torch.Tensor, Any]:
    """The reference Encoder's forward (eval mode); variants: no_tanh, no_relu, cell_transformed."""
    output, hidden = enc.rnn(enc.embedding(source))

    def stack(h: torch.Tensor) -> torch.Tensor:
        mid = enc.linear1(h) if variant == "no_relu" else enc.relu(enc.linear1(h))
        out = enc.linear2(mid)
        return out if variant == "no_tanh" else torch.tanh(out)

    if isinstance(hidden, tuple):
        h, c = hidden
        return output, (stack(h), stack(c) if variant == "cell_transformed" else c)
    return output, stack(hidden)


def attention(query: torch.Tensor, keys: torch.Tensor, variant: str | None = None) -> torch.Tensor:
    """(1, B, H) query, (B, T, H) keys -> (B, 1, T) weights; variants: dot, key_axis_1, batch_axis, no_softmax."""
    q = query.transpose(0, 1)  # (B, 1, H)
    dots = q @ keys.transpose(1, 2)  # (B, 1, T)
    cos = F.cosine_similarity(q, keys, dim=2).unsqueeze(1)  # (B, 1, T)
    if variant == "dot":
        return torch.softmax(dots, dim=2)
    if variant == "key_axis_1":
        return torch.softmax(cos, dim=1)
    if variant == "batch_axis":
        return torch.softmax(cos, dim=0)
    if variant == "no_softmax":
        return cos
    return torch.softmax(cos, dim=2)


def decoder_step(dec: torch.nn.Module, input: torch.Tensor, hidden: Any, enc_out: torch.Tensor | None, use_attention: bool,
                 variant: str | None = None, version: str = "current") -> tuple[torch.Tensor, Any]:
    """The reference Decoder's forward (eval mode); variants: concat_order, query_cell, no_context, dot, no_log_softmax.

    ``version`` "v23f" (Fall 2023 / Summer 2024): attention replaces the recurrent state by the attention-weighted
    encoder outputs (h and, for an LSTM, c); variant "cell_by_h" weights the cell state with h's attention."""
    embedded = dec.embedding(input)  # (B, 1, emb)
    if use_attention and version == "v23f":
        assert enc_out is not None

        def attend(query: torch.Tensor) -> torch.Tensor:
            w = attention(query, enc_out, "dot" if variant == "dot" else None)  # (B, 1, T)
            return (w @ enc_out).transpose(0, 1)  # (1, B, H)

        if isinstance(hidden, tuple):
            h, c = hidden
            hidden = (attend(h), attend(h if variant == "cell_by_h" else c) if variant != "cell_kept" else c)
        else:
            hidden = attend(hidden)
    elif use_attention:
        assert enc_out is not None
        if isinstance(hidden, tuple):
            query = hidden[1] if variant == "query_cell" else hidden[0]
        else:
            query = hidden
        weights = attention(query, enc_out, "dot" if variant == "dot" else None)
        context = weights @ enc_out  # (B, 1, H)
        if variant == "no_context":
            context = torch.zeros_like(context)
        parts = (embedded, context) if variant == "concat_order" else (context, embedded)
        embedded = dec.attention_linear(torch.cat(parts, dim=2))
    output, hidden = dec.rnn(embedded, hidden)
    scores = dec.linear(output[:, 0, :])
    return (scores if variant == "no_log_softmax" else torch.log_softmax(scores, dim=1)), hidden


def seq2seq(enc: torch.nn.Module, dec: torch.nn.Module, source: torch.Tensor, use_attention: bool,
            variant: str | None = None, version: str = "current", dec_variant: str | None = None) -> torch.Tensor:
    """Greedy decoding; variants: feed_source, always_start, start_pad, start_zero."""
    B, T = source.shape
    enc_out, hidden = encoder(enc, source)
    outputs = []
    if variant == "start_pad":
        token = torch.ones_like(source[:, :1])
    elif variant == "start_zero":
        token = torch.zeros_like(source[:, :1])
    else:
        token = source[:, :1]
    for t in range(T):
        out, hidden = decoder_step(dec, token, hidden, enc_out, use_attention, dec_variant, version=version)
        outputs.append(out)
        if variant == "feed_source":
            token = source[:, min(t + 1, T - 1)].unsqueeze(1)
        elif variant == "always_start":
            token = source[:, :1]
        else:
            token = out.argmax(dim=1, keepdim=True)
    return torch.stack(outputs, dim=1)
