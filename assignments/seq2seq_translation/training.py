"""Training and evaluation loops shared by the notebook, the recipes and the graders.

Only the standard library and torch are used. Three kinds of model are trained the same way;
`kind` says how a model is called and what it returns:

    "seq2seq"  Seq2Seq:                    model(src)      -> (B, T, V) log-probabilities
    "encoder"  TransformerTranslator:      model(src)      -> (B, T, V) logits
    "full"     FullTransformerTranslator:  model(src, tgt) -> (B, T, V) logits

and the output at position t is scored against tgt[:, t]. Use `make_criterion(kind)`:
NLLLoss for log-probabilities, CrossEntropyLoss for logits, both with ignore_index=PAD so a
padded position never counts. Losses are averaged over the real (non-pad) target tokens.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from translation_data import PAD

KINDS = ("seq2seq", "encoder", "full")
SEQ2SEQ_CLIP = 0.5  # gradient-norm clipping for the recurrent models


def make_criterion(kind: str) -> nn.Module:
    """The loss that matches what a model of `kind` returns."""
    _check_kind(kind)
    return nn.NLLLoss(ignore_index=PAD) if kind == "seq2seq" else nn.CrossEntropyLoss(ignore_index=PAD)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")


def model_output(model: nn.Module, kind: str, src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """The (B, T, V) scores the loss compares with `tgt` (teacher forcing for "full")."""
    _check_kind(kind)
    out = model(src, tgt) if kind == "full" else model(src)
    if not isinstance(out, torch.Tensor) or out.dim() != 3 or out.shape[:2] != tgt.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"a {kind!r} model must return (B, T, V) = {tuple(tgt.shape)} + (V,), got {got}")
    return out


def _batch_loss(model, kind, src, tgt, criterion, device):
    src, tgt = src.to(device), tgt.to(device)
    out = model_output(model, kind, src, tgt)  # (B, T, V)
    loss = criterion(out.reshape(-1, out.shape[-1]), tgt.reshape(-1))
    n_tokens = int((tgt != PAD).sum())
    return loss, n_tokens


def train_epoch(
    model: nn.Module,
    kind: str,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    criterion: nn.Module,
    device: torch.device | str,
    clip: float | None = None,
) -> float:
    """One pass over `batches` in train mode; returns the mean loss per real target token.

    Gradients are clipped to norm `clip` (default: 0.5 for "seq2seq", none otherwise).
    """
    _check_kind(kind)
    if clip is None and kind == "seq2seq":
        clip = SEQ2SEQ_CLIP
    model.train()
    total, count = 0.0, 0
    for src, tgt in batches:
        optimizer.zero_grad()
        loss, n_tokens = _batch_loss(model, kind, src, tgt, criterion, device)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        total += loss.item() * n_tokens
        count += n_tokens
    return total / max(count, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    kind: str,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    criterion: nn.Module,
    device: torch.device | str,
) -> tuple[float, float]:
    """Mean loss per real target token in eval mode, and the perplexity exp(loss)."""
    _check_kind(kind)
    model.eval()
    total, count = 0.0, 0
    for src, tgt in batches:
        loss, n_tokens = _batch_loss(model, kind, src, tgt, criterion, device)
        total += loss.item() * n_tokens
        count += n_tokens
    mean = total / max(count, 1)
    return mean, perplexity(mean)


def perplexity(loss: float) -> float:
    """exp(loss), or inf for a loss too large (or not a number) to exponentiate."""
    try:
        return math.exp(loss) if math.isfinite(loss) else math.inf
    except OverflowError:
        return math.inf


@torch.no_grad()
def translate(model: nn.Module, kind: str, src: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """Greedy translations (B, T) of a source batch, without looking at any target.

    Seq2Seq already decodes greedily from its own predictions; the encoder-only Transformer
    predicts every position at once; the full Transformer uses `generate_translation`.
    """
    _check_kind(kind)
    model.eval()
    src = src.to(device)
    scores = model.generate_translation(src) if kind == "full" else model(src)  # (B, T, V)
    return scores.argmax(dim=-1).cpu()
