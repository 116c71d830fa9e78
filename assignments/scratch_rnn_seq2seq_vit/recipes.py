"""Training recipes and probes for the hidden tests of scratch_rnn_seq2seq_vit.

A recipe runs inside the sandboxed worker, next to the classes of your notebooks: it builds or receives your model,
runs it and returns plain data; the grader computes every expected value and metric on its side. The training
recipes use a plain cross-entropy written here, so a mistake in your own loss code is graded by its own tests only.

- ``train_rnn``: trains your ``RNN`` on generated news snippets, returns its test probabilities.
- ``rnn_pipeline``: runs your ``train`` (one epoch) and ``evaluate`` on a small probe classifier defined here, with
  the pipeline's scheduler (``OneCycleLR``, stepped per batch), and reports what they did.
- ``seq2seq_probe``: runs your ``LSTMSeq2Seq`` once in eval mode and records what its given layers received and
  returned (hooks on the encoder's and decoder's LSTM, the decoder's embedding and its ``fc``).
- ``train_seq2seq``: trains your ``LSTMSeq2Seq`` on a generated parallel corpus, returns validation log-probabilities.
- ``train_vit``: trains your ``ViT`` on generated images, returns its test logits.

Recipes are public and you may run them (with datagen.py and dlgrade_training.py from the release). Only the
standard library, torch, numpy and dlgrade_training are imported.
"""

import torch
import torch.nn.functional as F
from dlgrade_training import first, fit, predict


def _plain(value):
    """Tensors detached onto the CPU (inside tuples, lists and dicts too); other values as they are."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, (tuple, list)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# ----------------------------------------------------------------------------- Problem 1: the RNN


def log_probabilities(out):
    """Log-probabilities from the RNN's output: its probabilities, or, when the rows are not probabilities (a forward
    that returns scores, graded by its own test), a log-softmax of them."""
    rows = out.detach().sum(1)
    if bool((out.detach() >= 0).all()) and bool(torch.allclose(rows, torch.ones_like(rows), atol=1e-3)):
        return torch.log(out.clamp_min(1e-12))
    return torch.log_softmax(out, dim=1)


def train_rnn(ctx, *, model_args, train_text, train_lengths, train_labels, test_text, test_lengths, steps,
              batch_size, lr, seed, pad_to=None, pad_idx=1, warmup_steps=0, decay=False, clip=None,
              eval_batch_size=500):
    """Train `RNN(**model_args)` on (train_text (L, N) ids, train_lengths (N,), train_labels (N,)).

    Each batch is cut to its longest text, or, with `pad_to`, padded with `pad_idx` to `pad_to` steps (test batches
    too), so that every text is followed by many padding steps. The loss is -log(probability of the true class),
    averaged. Returns {"test_probs": (M, num_class) or None when training diverged, "train_losses": [...], ...}.
    """
    ctx.seed(int(seed))
    model = ctx.new("hw4_rnn.RNN", **model_args).to(ctx.device)

    def padded(t):
        if pad_to is None or t.shape[0] >= pad_to:
            return t
        return torch.cat([t, torch.full((pad_to - t.shape[0], t.shape[1]), pad_idx, dtype=t.dtype)], 0)

    train_text, test_text = padded(train_text), padded(test_text)
    text, lengths, labels = train_text.to(ctx.device), train_lengths.to(ctx.device), train_labels.to(ctx.device)

    def rows(index_lengths):
        return text.shape[0] if pad_to is not None else int(index_lengths.max())

    def step_loss(index):
        n = rows(lengths[index])
        return F.nll_loss(log_probabilities(first(model(text[:n, index], lengths[index]))), labels[index])

    log = fit(model, step_loss, n=text.shape[1], steps=steps, batch_size=batch_size, lr=lr, seed=seed,
              warmup_steps=warmup_steps, decay=decay, clip=clip)
    probs = None
    if not log["diverged"]:
        model.eval()
        chunks = []
        with torch.no_grad():
            for i in range(0, test_text.shape[1], eval_batch_size):
                cols = test_lengths[i : i + eval_batch_size]
                n = test_text.shape[0] if pad_to is not None else int(cols.max())
                x = test_text[:n, i : i + eval_batch_size].to(ctx.device)
                chunks.append(first(model(x, cols.to(ctx.device))).detach().float().cpu())
        probs = torch.cat(chunks)
    return {"test_probs": probs, **log}


def rnn_loss_gradient(ctx, *, model_args, prediction, label):
    """The gradient of your compute_loss's loss with respect to the probabilities it is given (loss.backward())."""
    ctx.seed(0)
    model = ctx.new("hw4_rnn.RNN", **model_args)
    leaf = prediction.clone().to(ctx.device).requires_grad_(True)
    loss, _ = model.compute_loss(leaf, label.to(ctx.device))
    loss.backward()
    return {"grad": None if leaf.grad is None else leaf.grad.detach().cpu()}


class ProbeClassifier(torch.nn.Module):
    """A small classifier with the interface of the notebook's RNN (forward(text, length) -> probabilities, and
    compute_loss), written with plain torch; it records the mode and the gradient setting of each forward call."""

    def __init__(self, vocab_size, num_class, dim=6):
        super().__init__()
        # small weights keep the gradient norm under the lab's clipping threshold (0.1): clipping or not, the same step
        self.embedding = torch.nn.Parameter(0.02 * torch.randn(vocab_size, dim))
        self.weight = torch.nn.Parameter(0.02 * torch.randn(dim, num_class))
        self.calls = []

    def forward(self, text, length):
        mask = (torch.arange(text.shape[0], device=text.device)[:, None] < length[None, :]).float()  # (L, B)
        features = (self.embedding[text] * mask[..., None]).sum(0) / length[:, None].float()  # (B, dim)
        self.calls.append({"training": self.training, "grad": torch.is_grad_enabled()})
        return torch.softmax(features @ self.weight, dim=-1)

    def compute_loss(self, prediction, label):
        picked = prediction.gather(1, label.unsqueeze(1)).squeeze(1)
        return -torch.log(picked).mean(), int((prediction.argmax(1) == label).sum())


def rnn_pipeline(ctx, *, train_batches, eval_batches, vocab_size, num_class, lr, seed):
    """Run the notebook's train (one epoch over train_batches, Adam + OneCycleLR counted in batches) and then its
    evaluate (over eval_batches) on a ProbeClassifier. Each batch is (text (L, B), label (B,), length (B,)).

    Returns what train and evaluate returned, the learning rate and the scheduler's step count after each, the
    parameters after each, and the mode of every forward call.
    """
    ctx.seed(int(seed))
    notebook = ctx.module("hw4_rnn")
    model = ProbeClassifier(vocab_size, num_class).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=len(train_batches))

    def moved(batches):
        return [tuple(t.to(ctx.device) for t in batch) for batch in batches]

    out = {"initial_params": [_plain(p) for p in model.parameters()]}
    result = notebook.train(model, moved(train_batches), optimizer, scheduler)
    out["train_result"] = _plain(result)
    out["train_lr"] = float(optimizer.param_groups[0]["lr"])
    out["train_scheduler_steps"] = int(scheduler.last_epoch)
    out["train_params"] = [_plain(p) for p in model.parameters()]
    out["train_calls"] = list(model.calls)
    model.calls.clear()
    result = notebook.evaluate(model, moved(eval_batches))
    out["eval_result"] = _plain(result)
    out["eval_scheduler_steps"] = int(scheduler.last_epoch)
    out["eval_params"] = [_plain(p) for p in model.parameters()]
    out["eval_calls"] = list(model.calls)
    return out


# ----------------------------------------------------------------------------- Problem 2: Seq2Seq


def seq2seq_probe(ctx, *, model_args, values, src, trg):
    """Build `LSTMSeq2Seq(**model_args, device=...)` with the given parameter values (in registration order), run
    `model(src, trg)` once in eval mode without gradients, and record through hooks what the given layers saw: per
    call, the encoder LSTM's outputs and final state, the decoder embedding's input ids, the decoder LSTM's input,
    initial state and outputs, and the decoder fc's input and output. A missing layer is reported by name."""
    model = ctx.new("hw4_seq2seq.LSTMSeq2Seq", **model_args, device=ctx.device).to(ctx.device)
    params = list(model.parameters())
    if len(params) != len(values):
        raise ValueError(f"the model has {len(params)} parameters, the grader expected {len(values)}")
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v.to(p.device, p.dtype))
    record = {"missing": []}

    def layer(path):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                record["missing"].append(path)
                return None
        return obj

    hooks = []

    def argument(args, kwargs, i, name):
        return args[i] if len(args) > i else kwargs.get(name)

    def on(path, key, keep):
        """Record keep(args, kwargs, output) at every call of the layer at `path`."""
        module = layer(path)
        if module is None:
            return
        record[key] = []
        hooks.append(module.register_forward_hook(
            lambda m, args, kwargs, output: record[key].append(_plain(keep(args, kwargs, output))), with_kwargs=True))

    on("encoder", "encoder_returned", lambda a, k, out: out)
    on("encoder.lstm", "encoder_lstm_out", lambda a, k, out: out[0])
    on("encoder.lstm", "encoder_lstm_state", lambda a, k, out: out[1])
    on("decoder.embedding", "decoder_ids", lambda a, k, out: argument(a, k, 0, "input"))
    on("decoder.lstm", "decoder_lstm_in", lambda a, k, out: argument(a, k, 0, "input"))
    on("decoder.lstm", "decoder_lstm_hx", lambda a, k, out: argument(a, k, 1, "hx"))
    on("decoder.lstm", "decoder_lstm_out", lambda a, k, out: out[0])
    on("decoder.fc", "fc_in", lambda a, k, out: argument(a, k, 0, "input"))
    on("decoder.fc", "fc_out", lambda a, k, out: out)
    model.eval()
    try:
        with torch.no_grad():
            record["outputs"] = _plain(model(src.to(ctx.device), trg.to(ctx.device)))
    finally:
        for h in hooks:
            h.remove()
    return record


def train_seq2seq(ctx, *, model_args, train_src, train_trg, valid_src, valid_trg, pad_idx, steps, batch_size, lr,
                  seed, warmup_steps=0, decay=False, clip=1.0, eval_batch_size=256):
    """Train `LSTMSeq2Seq(**model_args, device=...)` on batch-first (train_src (N, S), train_trg (N, T)).

    Each batch is cut to its longest source and target. The loss is the cross-entropy of outputs[:, :, 1:] against
    trg[:, 1:], padding ignored. Returns {"valid_log_probs": (M, out_dim, T - 1) log-softmax of the outputs, or None
    when training diverged, "train_losses": [...], ...}.
    """
    ctx.seed(int(seed))
    model = ctx.new("hw4_seq2seq.LSTMSeq2Seq", **model_args, device=ctx.device).to(ctx.device)
    src_all, trg_all = train_src.to(ctx.device), train_trg.to(ctx.device)
    src_len, trg_len = (src_all != pad_idx).sum(1), (trg_all != pad_idx).sum(1)

    def step_loss(index):
        src, trg = src_all[index, : int(src_len[index].max())], trg_all[index, : int(trg_len[index].max())]
        outputs = first(model(src, trg))
        return F.cross_entropy(outputs[:, :, 1:], trg[:, 1:], ignore_index=pad_idx)

    log = fit(model, step_loss, n=len(src_all), steps=steps, batch_size=batch_size, lr=lr, seed=seed,
              warmup_steps=warmup_steps, decay=decay, clip=clip)
    log_probs = None
    if not log["diverged"]:
        model.eval()
        chunks = []
        with torch.no_grad():
            for i in range(0, len(valid_src), eval_batch_size):
                src, trg = valid_src[i : i + eval_batch_size].to(ctx.device), valid_trg[i : i + eval_batch_size].to(ctx.device)
                outputs = first(model(src, trg)).float()
                chunks.append(torch.log_softmax(outputs[:, :, 1:], dim=1).cpu())
        log_probs = torch.cat(chunks)
    return {"valid_log_probs": log_probs, **log}


# ----------------------------------------------------------------------------- Problem 3: the ViT


def train_vit(ctx, *, model_args, train_images, train_labels, test_images, steps, batch_size, lr, seed,
              warmup_steps=0, decay=False, clip=None, eval_batch_size=512):
    """Train `ViT(**model_args)` on (train_images (N, C, H, W), train_labels (N,)).

    Returns {"test_logits": (M, num_classes) or None when training diverged, "train_losses": [...], ...}.
    """
    ctx.seed(int(seed))
    args = dict(model_args)
    args["image_shape"] = tuple(args["image_shape"])
    model = ctx.new("hw4_vit.ViT", **args).to(ctx.device)
    images, labels = train_images.to(ctx.device).float(), train_labels.to(ctx.device).long()

    def step_loss(index):
        return F.cross_entropy(first(model(images[index])), labels[index])

    log = fit(model, step_loss, n=len(images), steps=steps, batch_size=batch_size, lr=lr, seed=seed,
              warmup_steps=warmup_steps, decay=decay, clip=clip)
    logits = None
    if not log["diverged"]:
        logits = predict(model, lambda batch: model(batch.float()), test_images, eval_batch_size, ctx.device)
    return {"test_logits": logits, **log}
