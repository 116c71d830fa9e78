"""Threshold tests' trusted side: generated data, token ids from the reference tokenizer, and the metrics.

The worker trains (assignments/transformer_vit_gpt/recipes.py) and returns the ViT's test logits or the GPT's
next-token log-probabilities from prefixes; everything is validated and scored here.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch

from dlgrade.errors import BadAnswer
from graders.transformer_vit_gpt._support import datagen, reference


@lru_cache(maxsize=4)
def vit_data(seed: int, data_args: tuple[tuple[str, Any], ...]) -> dict[str, torch.Tensor]:
    data: dict[str, torch.Tensor] = datagen().vit_data(seed, **dict(data_args))
    return data


@lru_cache(maxsize=4)
def gpt_data(seed: int, data_args: tuple[tuple[str, Any], ...], max_n: int) -> dict[str, Any]:
    """Generated dialogue as right-padded token ids of the reference tokenizer (built from the training text)."""
    blocks = datagen().dialogue_data(seed, **dict(data_args))
    tok = reference().MyTokenizer(datagen().dialogue_text(blocks["train"]))

    def ids(lines: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = tok.pad_examples([tok.encode(line)[:max_n] for line in lines])
        return ids, mask

    train_ids, train_mask = ids(blocks["train"])
    valid_ids, valid_mask = ids(blocks["valid"])
    return {"vocab_size": tok.vocab_size, "train_ids": train_ids, "train_mask": train_mask,
            "valid_ids": valid_ids, "valid_mask": valid_mask}


def accuracy(test_logits: Any, test_labels: torch.Tensor, num_classes: int) -> float:
    shape = (test_labels.shape[0], num_classes)
    if not isinstance(test_logits, torch.Tensor) or tuple(test_logits.shape) != shape:
        got = tuple(test_logits.shape) if isinstance(test_logits, torch.Tensor) else type(test_logits).__name__
        raise BadAnswer(f"the trained ViT's test logits have shape {got}, expected {shape}")
    if not torch.isfinite(test_logits).all():
        raise BadAnswer("the trained ViT's test logits contain NaN or infinite values")
    return float((test_logits.argmax(-1) == test_labels).float().mean())


def perplexity(log_probs: Any, valid_ids: torch.Tensor, valid_mask: torch.Tensor, vocab_size: int) -> float:
    """exp of the mean negative log-likelihood of the real (non-padding) next tokens."""
    n, t = valid_ids.shape
    shape = (n, t - 1, vocab_size)
    if not isinstance(log_probs, torch.Tensor) or tuple(log_probs.shape) != shape:
        got = tuple(log_probs.shape) if isinstance(log_probs, torch.Tensor) else type(log_probs).__name__
        raise BadAnswer(f"the trained DialogueGPT's log-probabilities have shape {got}, expected {shape}")
    lp = log_probs.double()
    if torch.isnan(lp).any():
        raise BadAnswer("the trained DialogueGPT's log-probabilities contain NaN")
    nll = -lp.gather(-1, valid_ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (N, T - 1)
    keep = valid_mask[:, 1:] != 0
    mean = float(nll[keep].mean())
    return math.exp(mean) if mean < 700 else math.inf
