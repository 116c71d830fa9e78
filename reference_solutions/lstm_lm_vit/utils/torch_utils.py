"""Small torch helpers shared by the experiment runners."""

import random

import numpy as np
import torch


def seed_experiment(seed):
    """Seed Python, NumPy and torch (all devices) so that a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def to_device(tensors, device):
    """Move a tensor, or tensors nested in dicts, lists and tuples, to `device`.

    Anything that is not a tensor is returned unchanged.
    """
    if isinstance(tensors, torch.Tensor):
        return tensors.to(device)
    if isinstance(tensors, dict):
        return {key: to_device(value, device) for key, value in tensors.items()}
    if isinstance(tensors, (list, tuple)):
        return type(tensors)(to_device(value, device) for value in tensors)
    return tensors
