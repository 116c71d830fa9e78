"""Helpers shared by the hidden tests of seq2seq_translation (trusted side only; never sent to the worker).

Weights are moved between the student's modules and the reference with `dlgrade.harness.params`
(creation order, matrices and vectors paired separately). What is here is this course's own: where its
modules live, and adapters to the older versions of its Decoder/Seq2Seq interface.
"""

from __future__ import annotations

from typing import Any

import torch

from dlgrade.harness.remote import RemoteObject, Submission

MODULES = {
    "rnn": "models/naive/RNN", "lstm": "models/naive/LSTM", "encoder": "models/seq2seq/Encoder",
    "decoder": "models/seq2seq/Decoder", "seq2seq": "models/seq2seq/Seq2Seq", "transformer": "models/Transformer",
}


def accepts(sig: list[tuple[str, str, bool]] | None, name: str) -> bool:
    """Does a remote signature take a parameter `name` (or **kwargs)?"""
    return sig is not None and any(n == name or kind == "VAR_KEYWORD" for n, kind, _ in sig)


def new_decoder(sub: Submission, emb: int, enc_h: int, dec_h: int, vocab: int, model_type: str,
                attention: bool) -> tuple[RemoteObject, bool]:
    """The student's Decoder, and whether it has the attention layer.

    `attention` goes to __init__ when it takes it; older versions of the course read it only in
    forward, and always create the attention layer.
    """
    kw: dict[str, Any] = {"dropout": 0.0, "model_type": model_type}
    in_init = accepts(sub.signature("models.seq2seq.Decoder.Decoder"), "attention")
    if in_init:
        kw["attention"] = attention
    dec = sub.new("models.seq2seq.Decoder.Decoder", emb, enc_h, dec_h, vocab, **kw)
    dec.call("eval")
    return dec, attention or not in_init


def decoder_step(dec: RemoteObject, input: torch.Tensor, hidden: Any, encoder_outputs: torch.Tensor | None, attention: bool) -> Any:
    """One call of the student's Decoder.forward, passing `attention` when forward takes it."""
    kw = {"attention": attention} if accepts(dec.signature("forward"), "attention") else {}
    return dec(input, hidden, encoder_outputs, **kw)


def new_seq2seq(sub: Submission, encoder: RemoteObject, decoder: RemoteObject, attention: bool) -> RemoteObject:
    """The student's Seq2Seq over the student's encoder and decoder (older versions take `attention` here)."""
    kw = {"attention": attention} if accepts(sub.signature("models.seq2seq.Seq2Seq.Seq2Seq"), "attention") else {}
    s2s = sub.new("models.seq2seq.Seq2Seq.Seq2Seq", encoder, decoder, "cpu", **kw)
    s2s.call("eval")
    return s2s
