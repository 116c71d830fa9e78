"""Threshold tests' trusted side (budgets: ``config.thresholds``), the generated data, the metric.

The worker trains the student's models (``assignments/seq2seq_translation/recipes.py``) and
returns their scores on the validation sources; the validation targets stay here, and the
perplexity is computed here: exp of the mean negative log-likelihood of the real (non-pad)
target tokens.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F

from dlgrade.config import Threshold
from dlgrade.errors import BadAnswer

ASSIGNMENT_DIR = Path(__file__).resolve().parents[2] / "assignments" / "seq2seq_translation"
PAD = 1

def translation_data() -> ModuleType:
    """The released data module, loaded under a private name (it is given code, not the student's)."""
    name = "_dlgrade_seq2seq_translation_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ASSIGNMENT_DIR / "translation_data.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # dataclasses look their module up while the class is created
        spec.loader.exec_module(mod)
    return sys.modules[name]


@lru_cache(maxsize=8)
def data(seed: int, data_args: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """Train/validation tensors of ``make_dataset(seed, **data_args)`` and the vocabulary sizes."""
    d = translation_data().make_dataset(seed, **dict(data_args))
    return {"train_src": d.train_src, "train_tgt": d.train_tgt, "valid_src": d.valid_src, "valid_tgt": d.valid_tgt,
            "src_vocab": len(d.src_vocab), "tgt_vocab": len(d.tgt_vocab)}


def recipe_kwargs(b: Threshold, d: dict[str, Any], seed: int) -> dict[str, Any]:
    """Keyword arguments of the threshold's recipe (recipes.py) for data `d`."""
    kw = b.recipe_kwargs()
    kw["model_args"] = {"src_vocab": d["src_vocab"], "tgt_vocab": d["tgt_vocab"], **b.model_args}
    return {**kw, "train_src": d["train_src"], "train_tgt": d["train_tgt"], "valid_src": d["valid_src"], "seed": seed}


def perplexity(scores: Any, valid_tgt: torch.Tensor, log_probs: bool, skip_first: bool = False) -> float:
    """exp(mean NLL of the real target tokens) from (M, T, V) scores the worker returned.

    With `skip_first`, position 0 (always <sos>) is not scored: a greedy generate_translation may leave it
    as the given start token instead of scoring it (the handout allows both)."""
    if skip_first and isinstance(scores, torch.Tensor) and scores.dim() == 3:
        scores, valid_tgt = scores[:, 1:], valid_tgt[:, 1:]
    m, t = valid_tgt.shape
    if not isinstance(scores, torch.Tensor) or scores.dim() != 3 or tuple(scores.shape[:2]) != (m, t):
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise BadAnswer(f"the trained model's validation scores have shape {got}, expected ({m}, {t}, vocabulary)")
    if not scores.is_floating_point():
        raise BadAnswer("the trained model's validation scores are not floating point")
    flat = scores.reshape(m * t, -1).double()
    if int(valid_tgt.max()) >= flat.shape[1]:
        raise BadAnswer(f"the trained model scores {flat.shape[1]} target words; the target vocabulary is larger")
    if not log_probs:
        flat = F.log_softmax(flat, dim=-1)
    flat = torch.nan_to_num(flat, nan=-math.inf)
    nll = float(F.nll_loss(flat, valid_tgt.reshape(-1), ignore_index=PAD))
    if not math.isfinite(nll) or nll > 700:  # exp overflows past ~709
        return math.inf
    return math.exp(nll)
