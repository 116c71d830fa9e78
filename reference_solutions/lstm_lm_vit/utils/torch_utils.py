"""Small torch helpers shared by the experiment runners."""

import json
import os
import random
import time

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


def make_optimizer(name, parameters, lr, weight_decay):
    """The optimizer a configuration names: adam, adamw, sgd or momentum (SGD with 0.9)."""
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


def fit(run_epoch, model, train_loader, valid_loader, device, optimizer, epochs, metric, log):
    """Train for `epochs` epochs, evaluating after each one.

    `run_epoch(model, loader, device, optimizer=None)` returns (mean loss, metric); without an
    optimizer it only evaluates. Per-epoch numbers are appended to the lists of `log` under
    train_loss, train_<metric>, valid_loss, valid_<metric>, train_time (seconds of training in
    the epoch) and time (wall-clock seconds since the start), and printed.
    """
    start = time.perf_counter()
    for epoch in range(epochs):
        epoch_start = time.perf_counter()
        train_loss, train_metric = run_epoch(model, train_loader, device, optimizer)
        train_time = time.perf_counter() - epoch_start
        valid_loss, valid_metric = run_epoch(model, valid_loader, device)
        row = {"train_loss": train_loss, f"train_{metric}": train_metric, "valid_loss": valid_loss,
               f"valid_{metric}": valid_metric, "train_time": train_time, "time": time.perf_counter() - start}
        for key, value in row.items():
            log.setdefault(key, []).append(value)
        print(f"epoch {epoch + 1}/{epochs}: train loss {train_loss:.3f} {metric} {train_metric:.3f} | "
              f"valid loss {valid_loss:.3f} {metric} {valid_metric:.3f} | {row['time']:.1f}s")
    return log


def save_log(log, log_dir, name):
    """Write `log` as JSON to `log_dir/name` and return the path."""
    os.makedirs(log_dir, exist_ok=True)
    path = os.path.join(log_dir, name)
    with open(path, "w") as f:
        json.dump(log, f, indent=2)
    print(f"wrote {path}")
    return path
