"""Helpers shared by the hidden tests of seq2seq_translation (trusted side only; never sent to the worker).

Weights are moved between the student's modules and the reference with `dlgrade.harness.params`
(creation order, matrices and vectors paired separately). What is here is this course's own: where its
modules live, and adapters to the older versions of its Decoder/Seq2Seq interface.
"""

from __future__ import annotations

from typing import Any

import torch

from dlgrade.errors import GradingError
from dlgrade.harness.remote import RemoteObject, Submission

MODULES = {
    "rnn": "models/naive/RNN", "lstm": "models/naive/LSTM", "encoder": "models/seq2seq/Encoder",
    "decoder": "models/seq2seq/Decoder", "seq2seq": "models/seq2seq/Seq2Seq", "transformer": "models/Transformer",
}


def accepts(sig: list[tuple[str, str, bool]] | None, name: str) -> bool:
    """Does a remote signature take a parameter `name` (or **kwargs)?"""
    return sig is not None and any(n == name or kind == "VAR_KEYWORD" for n, kind, _ in sig)


VERSIONS = {
    "current": "this term's interface (the Decoder takes `attention` in __init__ and creates the attention Linear)",
    "v23f": "the Fall 2023 / Summer 2024 interface (attention passed to Seq2Seq and Decoder.forward; the Decoder has "
            "no attention Linear: attention replaces the recurrent state by the attention-weighted encoder outputs)",
    "v22": "the older interface (attention passed to Seq2Seq and Decoder.forward; the attention Linear is always "
           "created and maps [context; embedded input] to emb_size)",
}


def interface_version(sub: Submission, config: Any, notes: list[str] | None = None) -> str:
    """Which version of the course's seq2seq interface to grade against.

    `[interface] version` of assignment.toml ("current", "v23f", "v22") or "auto" (the default): detected from the
    Decoder's signature and parameters; the choice is added to the student's summary when it is not "current".
    """
    declared = str(config.raw.get("interface", {}).get("version", "auto"))
    if declared not in (*VERSIONS, "auto"):
        raise ValueError(f"[interface] version must be one of {', '.join(VERSIONS)} or auto, got {declared!r}")
    version = declared
    if declared == "auto":
        version = getattr(sub, "_seq2seq_version", None) or _detect(sub)
        sub._seq2seq_version = version  # type: ignore[attr-defined]
    if notes is not None and version != "current":
        how = "set by your instructor" if declared != "auto" else "detected from your Decoder's signature and layers"
        notes.append(f"Graded against {VERSIONS[version]} ({how}).")
    return version


def _detect(sub: Submission) -> str:
    try:
        if accepts(sub.signature("models.seq2seq.Decoder.Decoder"), "attention"):
            return "current"
        dec = sub.new("models.seq2seq.Decoder.Decoder", 4, 4, 4, 5, dropout=0.0, model_type="RNN")
        matrices = [p for p in dec.parameters() if len(p.shape) >= 2]
    except GradingError:  # the tests themselves report what is wrong with the Decoder
        return "current"
    return "v22" if len(matrices) == 5 else "v23f" if len(matrices) == 4 else "current"


def new_decoder(sub: Submission, emb: int, enc_h: int, dec_h: int, vocab: int, model_type: str,
                attention: bool, version: str = "current") -> tuple[RemoteObject, bool]:
    """The student's Decoder, and whether it has the attention layer.

    `attention` goes to __init__ when it takes it; the older interface (v22) reads it only in forward and always
    creates the attention layer; the Fall 2023 one (v23f) has no attention layer at all.
    """
    kw: dict[str, Any] = {"dropout": 0.0, "model_type": model_type}
    in_init = accepts(sub.signature("models.seq2seq.Decoder.Decoder"), "attention")
    if in_init:
        kw["attention"] = attention
    dec = sub.new("models.seq2seq.Decoder.Decoder", emb, enc_h, dec_h, vocab, **kw)
    dec.call("eval")
    if version == "v23f":
        return dec, False
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
