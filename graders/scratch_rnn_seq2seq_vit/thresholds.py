"""Threshold tests' trusted side: generated data turned into tensors, and the metrics.

The worker trains (assignments/scratch_rnn_seq2seq_vit/recipes.py) and returns the RNN's test probabilities, the
Seq2Seq model's validation log-probabilities or the ViT's test logits; everything is validated and scored here.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch

from dlgrade.errors import BadAnswer
from graders.scratch_rnn_seq2seq_vit._support import course_data, datagen, graded_vocab


def _ids(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(L, N) token ids of the grader's vocabulary, padded at the end, and the lengths."""
    g = graded_vocab()
    ids = [g["vocab"](g["tokenizer"](t)) for t in texts]
    out = torch.full((max(len(i) for i in ids), len(ids)), g["vocab"]["<pad>"], dtype=torch.long)
    for k, i in enumerate(ids):
        out[: len(i), k] = torch.tensor(i)
    return out, torch.tensor([len(i) for i in ids])


@lru_cache(maxsize=4)
def rnn_data(seed: int, data_args: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    data = datagen().news_data(seed, **dict(data_args))
    train_text, train_lengths = _ids([t for _, t in data["train"]])
    test_text, test_lengths = _ids([t for _, t in data["test"]])
    return {"vocab_size": len(graded_vocab()["vocab"]), "train_text": train_text, "train_lengths": train_lengths,
            "train_labels": torch.tensor([lab for lab, _ in data["train"]]), "test_text": test_text,
            "test_lengths": test_lengths, "test_labels": torch.tensor([lab for lab, _ in data["test"]])}


@lru_cache(maxsize=4)
def seq2seq_data(seed: int, data_args: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """The generated corpus through the course's data module: vocabularies from the training pairs, batch-first ids."""
    cd = course_data()
    pairs = datagen().translation_pairs(seed, **dict(data_args))
    train = [(cd.tokenize(s), cd.tokenize(t)) for s, t in pairs["train"]]
    valid = [(cd.tokenize(s), cd.tokenize(t)) for s, t in pairs["valid"]]
    src_vocab, trg_vocab = cd.Vocab([s for s, _ in train]), cd.Vocab([t for _, t in train])

    def tensors(items: list[tuple[list[str], list[str]]]) -> tuple[torch.Tensor, torch.Tensor]:
        return cd.collate_translation(cd.TranslationDataset(items, src_vocab, trg_vocab).items)

    train_src, train_trg = tensors(train)
    valid_src, valid_trg = tensors(valid)
    return {"in_dim": len(src_vocab), "out_dim": len(trg_vocab), "pad_idx": cd.PAD_IDX, "train_src": train_src,
            "train_trg": train_trg, "valid_src": valid_src, "valid_trg": valid_trg}


@lru_cache(maxsize=4)
def vit_data(seed: int, data_args: tuple[tuple[str, Any], ...]) -> dict[str, torch.Tensor]:
    data: dict[str, torch.Tensor] = datagen().square_images(seed, **dict(data_args))
    return data


def accuracy(scores: Any, labels: torch.Tensor, num_classes: int, what: str) -> float:
    shape = (labels.shape[0], num_classes)
    if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != shape:
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise BadAnswer(f"the trained {what}'s test outputs have shape {got}, expected {shape}")
    if torch.isnan(scores).any():
        raise BadAnswer(f"the trained {what}'s test outputs contain NaN")
    return float((scores.argmax(-1) == labels).float().mean())


def perplexity(log_probs: Any, valid_trg: torch.Tensor, out_dim: int, pad_idx: int) -> float:
    """exp of the mean negative log-likelihood of the real (non-padding) target tokens after <sos>."""
    n, t = valid_trg.shape
    shape = (n, out_dim, t - 1)
    if not isinstance(log_probs, torch.Tensor) or tuple(log_probs.shape) != shape:
        got = tuple(log_probs.shape) if isinstance(log_probs, torch.Tensor) else type(log_probs).__name__
        raise BadAnswer(f"the trained Seq2Seq model's log-probabilities have shape {got}, expected {shape}")
    lp = log_probs.double()
    if torch.isnan(lp).any():
        raise BadAnswer("the trained Seq2Seq model's log-probabilities contain NaN")
    targets = valid_trg[:, 1:]
    nll = -lp.gather(1, targets.unsqueeze(1)).squeeze(1)  # (N, T - 1)
    mean = float(nll[targets != pad_idx].mean())
    return math.exp(mean) if mean < 700 else math.inf
