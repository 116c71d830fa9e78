"""Threshold tests' trusted side: budgets from assignment.toml, data, and metric computation.

The worker trains the student's model (``assignments/lstm_lm_vit/recipes.py``); what comes
back is validated here and the metric is computed here, never by the worker:
- the language model's trained weights are loaded into the REFERENCE LSTM (the architecture
  is given, so names and shapes are fixed) and its perplexity is measured on held-out data;
- the ViT's logits on test images are scored against labels the worker never saw.
"""

from __future__ import annotations

import importlib.util
import math
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from dlgrade.errors import BadAnswer

ASSIGNMENT_DIR = Path(__file__).resolve().parents[2] / "assignments" / "lstm_lm_vit"

def datagen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_dlgrade_lstm_lm_vit_datagen", ASSIGNMENT_DIR / "datagen.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@lru_cache(maxsize=8)
def lm_data(seed: int, data_args: tuple[tuple[str, Any], ...]) -> dict[str, dict[str, torch.Tensor]]:
    data: dict[str, dict[str, torch.Tensor]] = datagen().lm_data(seed, **dict(data_args))
    return data


@lru_cache(maxsize=8)
def vit_data(seed: int, data_args: tuple[tuple[str, Any], ...]) -> dict[str, torch.Tensor]:
    data: dict[str, torch.Tensor] = datagen().vit_data(seed, **dict(data_args))
    return data


def lm_perplexity(reference: ModuleType, model_args: dict[str, Any], state_dict: Any, valid: dict[str, torch.Tensor]) -> float:
    """Perplexity of the reference LSTM carrying the student's trained weights, over real tokens."""
    model = reference.LSTM(**model_args)
    want = model.state_dict()
    if not isinstance(state_dict, dict) or set(state_dict) != set(want):
        got = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise BadAnswer(f"the trained LSTM's weights do not have the given layers' names ({got}); "
                        "keep the given __init__ unchanged")
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(want[name].shape):
            raise BadAnswer(f"the trained weight {name} has the wrong shape")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise BadAnswer(f"training made the weight {name} NaN or infinite")
    tied = ("embedding.weight", "classifier.2.weight")
    if all(k in state_dict for k in tied) and not torch.equal(state_dict[tied[0]], state_dict[tied[1]]):
        raise BadAnswer("after training, the classifier's output weight differs from the embedding weight; "
                        "the given __init__ ties them, keep it unchanged")
    model.load_state_dict({k: v.to(want[k].dtype) for k, v in state_dict.items()})
    model.eval()
    with torch.no_grad():
        source, target, mask = valid["source"], valid["target"], valid["mask"]
        log_probas, _ = model(source, model.initial_states(source.shape[0]))
        nll = -log_probas.gather(-1, target.unsqueeze(-1)).squeeze(-1)  # (N, T)
        mean_nll = float((nll * mask).sum() / mask.sum())
    return math.exp(mean_nll) if mean_nll < 700 else math.inf  # exp overflows past ~709


def accuracy(test_logits: Any, test_labels: torch.Tensor, num_classes: int) -> float:
    shape = (test_labels.shape[0], num_classes)
    if not isinstance(test_logits, torch.Tensor) or tuple(test_logits.shape) != shape:
        got = tuple(test_logits.shape) if isinstance(test_logits, torch.Tensor) else type(test_logits).__name__
        raise BadAnswer(f"the trained ViT's test logits have shape {got}, expected {shape}")
    if not torch.isfinite(test_logits).all():
        raise BadAnswer("the trained ViT's test logits contain NaN or infinite values")
    return float((test_logits.argmax(-1) == test_labels).float().mean())
