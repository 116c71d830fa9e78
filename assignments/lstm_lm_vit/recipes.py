"""Training recipes for the threshold tests of lstm_lm_vit.

A recipe runs inside the sandboxed worker: it builds the student's model through `ctx`,
trains it for a fixed budget with the student's own `forward` and `loss`, and returns plain
data (numbers, lists, tensors). The trusted side scores what comes back:

- `train_lm` returns the trained weights; the grader loads them into the reference LSTM and
  measures the validation perplexity itself.
- `train_vit` returns logits on test images whose labels never leave the trusted side.

Recipes are public, and students may run them: nothing here is secret. Only the standard
library, torch, numpy and `dlgrade_training` (the shared training loop, shipped with the release
as `dlgrade_training.py`) may be imported (the worker has nothing else).

`ctx` offers `ctx.new("module.Class", *args, **kwargs)` (a real object of the student's
module), `ctx.module(name)`, `ctx.device` (where to train) and `ctx.seed(n)` (seeds torch).
"""

import torch
from dlgrade_training import first, fit, predict


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
        log_probas = first(model(source[index], states))
        return model.loss(log_probas, target[index], mask[index])

    log = fit(model, step_loss, n=len(source), steps=steps, batch_size=batch_size, lr=lr, seed=seed,
              warmup_steps=warmup_steps, decay=decay)
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"state_dict": state_dict, **log}


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
        preds = first(model(images[index]))
        return model.loss(preds, labels[index])

    log = fit(model, step_loss, n=len(images), steps=steps, batch_size=batch_size, lr=lr, seed=seed,
              warmup_steps=warmup_steps, decay=decay)
    logits = None
    if not log["diverged"]:
        logits = predict(model, lambda batch: model(batch.float()), test_images, eval_batch_size, ctx.device)
    return {"test_logits": logits, **log}
