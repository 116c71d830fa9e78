"""Training recipes for the threshold tests of transformer_vit_gpt.

A recipe runs inside the sandboxed worker, next to the classes of your notebook: it builds your model,
trains it for a fixed budget and returns plain data; the grader computes the metric from what comes back.
Both recipes train with a plain cross-entropy written here, so that a mistake in DialogueLoss is graded by
the loss tests alone.

- ``train_vit`` trains your VisionTransformer (with your PatchEmbed and Transformer) and returns its logits
  on test images whose labels stay with the grader.
- ``train_gpt`` trains your DialogueGPT on token ids (made by the reference tokenizer) and returns, for each
  validation position, the log-probabilities your model gives the next token when it sees only the prefix
  up to that position, the way the model is used when it generates text.

Recipes are public and you may run them (with datagen.py and dlgrade_training.py from the release).
Only the standard library, torch, numpy and dlgrade_training are imported.
"""

import torch
import torch.nn.functional as F
from dlgrade_training import first, fit, predict


def train_vit(ctx, *, model_args, train_images, train_labels, test_images, steps, batch_size, lr, seed,
              warmup_steps=0, decay=False, eval_batch_size=512):
    """Train `VisionTransformer(**model_args)` on (train_images (N, C, S, S), train_labels (N,)).

    Returns {"test_logits": (M, nout) or None when training diverged, "train_losses": [...], "seconds": float,
    "diverged": bool, "diverged_at": step or None}.
    """
    ctx.seed(int(seed))
    model = ctx.new("transformer_vit_gpt.VisionTransformer", **model_args).to(ctx.device)
    images = train_images.to(ctx.device).float()
    labels = train_labels.to(ctx.device).long()

    def step_loss(index):
        return F.cross_entropy(first(model(images[index])), labels[index])

    log = fit(model, step_loss, n=len(images), steps=steps, batch_size=batch_size, lr=lr, seed=seed,
              warmup_steps=warmup_steps, decay=decay)
    logits = None
    if not log["diverged"]:
        logits = predict(model, lambda batch: model(batch.float()), test_images, eval_batch_size, ctx.device)
    return {"test_logits": logits, **log}


def next_token_loss(logits, ids, mask):
    """Mean cross-entropy of logits[:, i] against ids[:, i + 1] over targets that are not padding."""
    targets = ids[:, 1:]
    real = mask[:, 1:] != 0
    return F.cross_entropy(logits[:, :-1][real], targets[real])


def prefix_log_probs(model, ids, device):
    """(N, T - 1, V): log-probabilities of the token after each position, from the prefix ids[:, :t + 1] alone."""
    model.eval()
    out = []
    with torch.no_grad():
        ids = ids.to(device)
        for t in range(1, ids.shape[1]):
            logits = first(model(ids[:, :t]))  # (N, t, V)
            out.append(torch.log_softmax(logits[:, -1].float(), dim=-1).cpu())
    return torch.stack(out, dim=1)


def train_gpt(ctx, *, model_args, train_ids, train_mask, valid_ids, steps, batch_size, lr, seed,
              warmup_steps=0, decay=False):
    """Train `DialogueGPT(**model_args)` on right-padded (train_ids, train_mask), each (N, T) long.

    Returns {"valid_log_probs": (M, T - 1, V) or None when training diverged, "train_losses": [...],
    "seconds": float, "diverged": bool, "diverged_at": step or None}.
    """
    ctx.seed(int(seed))
    model = ctx.new("transformer_vit_gpt.DialogueGPT", **model_args).to(ctx.device)
    ids = train_ids.to(ctx.device).long()
    mask = train_mask.to(ctx.device).long()

    def step_loss(index):
        return next_token_loss(first(model(ids[index])), ids[index], mask[index])

    log = fit(model, step_loss, n=len(ids), steps=steps, batch_size=batch_size, lr=lr, seed=seed,
              warmup_steps=warmup_steps, decay=decay)
    log_probs = None if log["diverged"] else prefix_log_probs(model, valid_ids.long(), ctx.device)
    return {"valid_log_probs": log_probs, **log}


def gpt_attention_mask(ctx, *, model_args, input_ids):
    """The attention mask your DialogueGPT.forward passes to its Transformer, as {0, 1} floats broadcast to (B, T, T).

    The grader asks for it when your GPT does not behave causally, to tell a wrong mask (P4(c)) from attention
    that ignores a right mask (P2, graded there). Returns {"mask": tensor or None, "kind": what was passed}.
    """
    ctx.seed(0)
    model = ctx.new("transformer_vit_gpt.DialogueGPT", **model_args)
    inner = model.transformer
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, x, attn_mask=None, return_attn=False):
            seen["mask"] = attn_mask
            return inner(x, attn_mask, return_attn=return_attn)

    model.transformer = Recorder()
    model.eval()
    try:
        with torch.no_grad():
            model(input_ids)
    except Exception:  # noqa: BLE001 - only the mask matters here
        pass
    mask = seen.get("mask")
    if not isinstance(mask, torch.Tensor):
        return {"mask": None, "kind": type(mask).__name__}
    b, t = input_ids.shape
    try:
        full = (mask != 0).float().expand(b, t, t).cpu().clone()
    except RuntimeError:
        return {"mask": None, "kind": f"a tensor of shape {tuple(mask.shape)}"}
    return {"mask": full, "kind": str(mask.dtype)}
