"""The training loop that threshold recipes share (it runs in the worker, next to the student's code).

Recipes (``assignments/<id>/recipes.py``) import it as ``dlgrade_training``: the worker registers this
module under that name before running a recipe, and the student release ships a copy named
``dlgrade_training.py``, so students can run the recipes themselves. Only the standard library and
torch are used here.

``fit`` trains with Adam for a fixed number of mini-batches drawn from a private generator, with an
optional linear warm-up, linear decay of the learning rate to 0, and gradient-norm clipping; it stops
at the first non-finite loss and says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def scalar_loss(loss: Any) -> torch.Tensor:
    """The student's loss as a float32 scalar tensor that can be back-propagated.

    A loss of dtype float64 or of shape (1,) is accepted; anything else that is not a single-element
    floating tensor is a real mistake and is reported as such.
    """
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"the loss must be a torch.Tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"the loss must be a scalar, got a tensor of shape {tuple(loss.shape)}")
    if not loss.is_floating_point():
        raise TypeError(f"the loss must be a floating-point tensor, got {loss.dtype}")
    return loss.reshape(()).to(torch.float32)


def first(output: Any) -> torch.Tensor:
    """`forward` may return a tuple (an LSTM: log-probabilities and states); keep the first element."""
    if isinstance(output, (tuple, list)):
        if not output:
            raise ValueError("forward() returned an empty tuple")
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"forward() must return a tensor, got {type(output).__name__}")
    return output


def lr_factor(step: int, steps: int, warmup_steps: int = 0, decay: bool = False) -> float:
    """Linear warm-up over `warmup_steps`, then (with `decay`) linear decay to 0 at `steps`."""
    factor = 1.0
    if warmup_steps > 0:
        factor = min(1.0, (step + 1) / warmup_steps)
    if decay:
        factor *= max(0.0, 1.0 - step / steps)
    return factor


def batches(n: int, batch_size: int, steps: int, seed: int) -> Iterator[torch.Tensor]:
    """Index tensors for `steps` mini-batches: shuffled epochs from a private generator."""
    gen = torch.Generator().manual_seed(int(seed))
    batch_size = min(int(batch_size), n)
    perm, pos = torch.randperm(n, generator=gen), 0
    for _ in range(int(steps)):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        yield perm[pos : pos + batch_size]
        pos += batch_size


def fit(model: torch.nn.Module, step_loss: Callable[[torch.Tensor], Any], *, n: int, steps: int, batch_size: int,
        lr: float, seed: int, warmup_steps: int = 0, decay: bool = False, clip: float | None = None) -> dict[str, Any]:
    """Train ``model`` on ``steps`` mini-batches; ``step_loss(index)`` returns the loss of one batch.

    Returns ``{"train_losses": [float per step], "diverged": bool, "diverged_at": step or None, "seconds": float}``.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=lr)
    losses: list[float] = []
    diverged, diverged_at = False, None
    model.train()
    start = time.perf_counter()
    for step, index in enumerate(batches(n, batch_size, steps, seed)):
        for group in optimizer.param_groups:
            group["lr"] = lr * lr_factor(step, steps, warmup_steps, decay)
        loss = scalar_loss(step_loss(index))
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged, diverged_at = True, step
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        losses.append(value)
    return {"train_losses": losses, "diverged": diverged, "diverged_at": diverged_at, "seconds": time.perf_counter() - start}


def predict(model: torch.nn.Module, fn: Callable[[torch.Tensor], Any], inputs: torch.Tensor, batch_size: int = 256,
            device: Any = "cpu") -> torch.Tensor:
    """``fn`` over ``inputs`` in chunks, in eval mode without gradients; float32 on the CPU."""
    model.eval()
    chunks = []
    with torch.no_grad():
        for i in range(0, inputs.shape[0], batch_size):
            chunks.append(first(fn(inputs[i : i + batch_size].to(device))).detach().float().cpu())
    return torch.cat(chunks) if chunks else torch.zeros(0)
