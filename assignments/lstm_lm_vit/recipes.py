"""Training recipes for the threshold tests of lstm_lm_vit.

A recipe runs inside the sandboxed worker: it builds the student's model through `ctx`,
trains it for a fixed budget with the student's own `forward` and `loss`, and returns plain
data (numbers, lists, tensors). The trusted side scores what comes back:

- `train_lm` returns the trained weights; the grader loads them into the reference LSTM and
  measures the validation perplexity itself.
- `train_vit` returns logits on test images whose labels never leave the trusted side.

Recipes are public, and students may run them: nothing here is secret. Only the standard
library, torch and numpy may be imported (the worker has nothing else).

`ctx` offers `ctx.new("module.Class", *args, **kwargs)` (a real object of the student's
module), `ctx.module(name)`, `ctx.device` (where to train) and `ctx.seed(n)` (seeds torch).
"""

import math
import time

import torch


def _scalar_loss(loss):
    """The student's loss as a float32 scalar tensor that can be back-propagated.

    A loss of dtype float64 or of shape (1,) is accepted; anything else that is not a
    single-element floating tensor is a real mistake and is reported as such.
    """
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"loss() must return a torch.Tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"loss() must return a scalar, got a tensor of shape {tuple(loss.shape)}")
    if not loss.is_floating_point():
        raise TypeError(f"loss() must return a floating-point tensor, got {loss.dtype}")
    return loss.reshape(()).to(torch.float32)


def _first(output):
    """`forward` may return a tuple (LSTM: log-probabilities and states); keep the first."""
    if isinstance(output, (tuple, list)):
        if not output:
            raise ValueError("forward() returned an empty tuple")
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise TypeError(f"forward() must return a tensor, got {type(output).__name__}")
    return output


def _lr_factor(step, steps, warmup_steps, decay):
    """Linear warm-up over `warmup_steps`, then (if `decay`) linear decay to 0 at `steps`."""
    factor = 1.0
    if warmup_steps > 0:
        factor = min(1.0, (step + 1) / warmup_steps)
    if decay:
        factor *= max(0.0, 1.0 - step / steps)
    return factor


def _batches(n, batch_size, steps, seed):
    """Index tensors for `steps` mini-batches: shuffled epochs from a local generator."""
    gen = torch.Generator().manual_seed(int(seed))
    batch_size = min(int(batch_size), n)
    perm, pos = torch.randperm(n, generator=gen), 0
    for _ in range(int(steps)):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=gen), 0
        yield perm[pos : pos + batch_size]
        pos += batch_size


def _train(model, steps, lr, warmup_steps, decay, seed, n, batch_size, step_loss):
    """Adam on the trainable parameters; stops at the first non-finite loss.

    Returns (train_losses, diverged, diverged_at, seconds).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.Adam(params, lr=lr)
    losses, diverged, diverged_at = [], False, None
    model.train()
    start = time.perf_counter()
    for step, index in enumerate(_batches(n, batch_size, steps, seed)):
        for group in optimizer.param_groups:
            group["lr"] = lr * _lr_factor(step, steps, warmup_steps, decay)
        loss = _scalar_loss(step_loss(index))
        value = float(loss.detach())
        if not math.isfinite(value):
            diverged, diverged_at = True, step
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(value)
    seconds = time.perf_counter() - start
    return losses, diverged, diverged_at, seconds


def train_lm(
    ctx,
    *,
    model_args,
    train,
    steps,
    batch_size,
    lr,
    seed,
    warmup_steps=0,
    decay=False,
):
    """Train the student's `lstm_solution.LSTM` as a language model.

    Args:
        model_args: keyword arguments of `LSTM(...)` (vocabulary_size, embedding_size,
            hidden_size, num_layers, learn_embeddings).
        train: dict of `source`, `target` (LongTensor (N, T)) and `mask` (float (N, T)).
        steps, batch_size, lr: the budget: Adam for `steps` mini-batches.
        seed: seeds the initial weights and the order of the mini-batches.
        warmup_steps, decay: learning-rate schedule (linear warm-up, linear decay to 0).

    Returns:
        {"state_dict": {name: tensor}, "train_losses": [float per step], "seconds": float,
         "diverged": bool, "diverged_at": step or None}
    """
    ctx.seed(int(seed))
    model = ctx.new("lstm_solution.LSTM", **model_args)
    model = model.to(ctx.device)
    source = train["source"].to(ctx.device).long()
    target = train["target"].to(ctx.device).long()
    mask = train["mask"].to(ctx.device).float()
    num_layers = int(model_args.get("num_layers", 1))
    hidden_size = int(model_args["hidden_size"])

    def step_loss(index):
        shape = (num_layers, len(index), hidden_size)
        # zero initial states, built here so that the recipe does not depend on helpers
        states = (torch.zeros(shape, device=ctx.device), torch.zeros(shape, device=ctx.device))
        log_probas = _first(model(source[index], states))
        return model.loss(log_probas, target[index], mask[index])

    losses, diverged, diverged_at, seconds = _train(
        model, steps, lr, warmup_steps, decay, seed, len(source), batch_size, step_loss
    )
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {
        "state_dict": state_dict,
        "train_losses": losses,
        "seconds": seconds,
        "diverged": diverged,
        "diverged_at": diverged_at,
    }


def train_vit(
    ctx,
    *,
    model_args,
    train_images,
    train_labels,
    test_images,
    steps,
    batch_size,
    lr,
    seed,
    warmup_steps=0,
    decay=False,
    eval_batch_size=512,
):
    """Train the student's `vit_solution.VisionTransformer` and classify the test images.

    Args:
        model_args: keyword arguments of `VisionTransformer(...)`.
        train_images: float (N, C, S, S); train_labels: LongTensor (N,).
        test_images: float (M, C, S, S); their labels stay on the trusted side.
        steps, batch_size, lr, seed, warmup_steps, decay: as in `train_lm`.

    Returns:
        {"test_logits": float tensor (M, num_classes), "train_losses": [float per step],
         "seconds": float, "diverged": bool, "diverged_at": step or None}
        `test_logits` is None when training diverged.
    """
    ctx.seed(int(seed))
    model = ctx.new("vit_solution.VisionTransformer", **model_args)
    model = model.to(ctx.device)
    images = train_images.to(ctx.device).float()
    labels = train_labels.to(ctx.device).long()

    def step_loss(index):
        preds = _first(model(images[index]))
        return model.loss(preds, labels[index])

    losses, diverged, diverged_at, seconds = _train(
        model, steps, lr, warmup_steps, decay, seed, len(images), batch_size, step_loss
    )
    logits = None
    if not diverged:
        model.eval()
        chunks = []
        with torch.no_grad():
            for start in range(0, len(test_images), eval_batch_size):
                batch = test_images[start : start + eval_batch_size].to(ctx.device).float()
                chunks.append(_first(model(batch)).detach().float().cpu())
        logits = torch.cat(chunks) if chunks else torch.zeros(0)
    return {
        "test_logits": logits,
        "train_losses": losses,
        "seconds": seconds,
        "diverged": diverged,
        "diverged_at": diverged_at,
    }
