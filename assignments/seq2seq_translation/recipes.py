"""Training recipes for the threshold tests of seq2seq_translation.

A recipe runs inside the sandboxed worker. It builds the student's models through `ctx`,
trains them for a fixed budget on the generated translation task, and returns plain data:
the trained model's scores on the validation sources. The validation targets never reach
the worker; the grader scores the returned outputs itself (perplexity over real tokens).

Losses follow `training.py`: negative log-likelihood of the target token at every position,
averaged over the tokens that are not padding (id 1); recurrent models clip the gradient
norm at 0.5. Recipes are public and students may run them; only the standard library, torch,
numpy and `dlgrade_training` (the shared training loop, shipped with the release as
`dlgrade_training.py`) may be imported here.
"""

import inspect

import torch
import torch.nn.functional as F
from dlgrade_training import fit, predict

PAD = 1


def _accepts(fn, name):
    """Does `fn` (a function or class) take a parameter called `name` (or **kwargs)?"""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def build_seq2seq(ctx, model_args):
    """The student's Encoder, Decoder and Seq2Seq, wired as the handout says.

    `attention` is passed to the Decoder's __init__ and to Seq2Seq's __init__ when they take it
    (older versions of the course passed it to Seq2Seq, which passed it to the decoder's forward).
    """
    a = dict(model_args)
    encoder = ctx.new(
        "models.seq2seq.Encoder.Encoder",
        a["src_vocab"],
        a["emb_size"],
        a["encoder_hidden_size"],
        a["decoder_hidden_size"],
        dropout=a.get("dropout", 0.0),
        model_type=a["model_type"],
    )
    dec_cls = ctx.module("models.seq2seq.Decoder").Decoder
    dec_kwargs = {"dropout": a.get("dropout", 0.0), "model_type": a["model_type"]}
    if _accepts(dec_cls, "attention"):
        dec_kwargs["attention"] = bool(a["attention"])
    decoder = dec_cls(a["emb_size"], a["encoder_hidden_size"], a["decoder_hidden_size"], a["tgt_vocab"], **dec_kwargs)
    s2s_cls = ctx.module("models.seq2seq.Seq2Seq").Seq2Seq
    s2s_kwargs = {"attention": bool(a["attention"])} if _accepts(s2s_cls, "attention") else {}
    return s2s_cls(encoder, decoder, ctx.device, **s2s_kwargs)


def _nll(scores, target, log_probs):
    """Mean NLL over non-pad target tokens; `scores` (B, T, V) are log-probabilities or logits."""
    if not isinstance(scores, torch.Tensor) or scores.dim() != 3 or tuple(scores.shape[:2]) != tuple(target.shape):
        got = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"the model must return (B, T, V) scores for targets of shape {tuple(target.shape)}, got {got}")
    flat = scores.reshape(-1, scores.shape[-1]).float()
    if not log_probs:
        flat = F.log_softmax(flat, dim=-1)
    return F.nll_loss(flat, target.reshape(-1), ignore_index=PAD)


def _train(model, step_scores, log_probs, src, tgt, steps, batch_size, lr, seed, clip, decay=False):
    """Adam over mini-batches (with `decay`, the learning rate falls linearly to 0 over the steps)."""
    return fit(model, lambda index: _nll(step_scores(src[index], tgt[index]), tgt[index], log_probs), n=src.shape[0],
               steps=steps, batch_size=batch_size, lr=lr, seed=seed, decay=decay, clip=clip)


def _result(model, predict_fn, valid_src, log, eval_batch_size=256):
    scores = None if log["diverged"] else predict(model, predict_fn, valid_src, eval_batch_size)
    return {"valid_scores": scores, **log}


def train_seq2seq(ctx, *, model_args, train_src, train_tgt, valid_src, steps, batch_size, lr, seed, clip=0.5, decay=False):
    """Train the student's Seq2Seq (greedy decoding, as its forward does) and score the validation sources.

    Args:
        model_args: src_vocab, tgt_vocab, emb_size, encoder_hidden_size, decoder_hidden_size,
            dropout, model_type ("RNN" or "LSTM"), attention (bool).
        train_src, train_tgt: LongTensor (N, T); valid_src: LongTensor (M, T).
        steps, batch_size, lr, seed, clip, decay: the budget (Adam, gradient-norm clipping, linear decay of the
            learning rate to 0).

    Returns:
        {"valid_scores": (M, T, V) log-probabilities or None if training diverged,
         "train_losses": [float per step], "seconds", "diverged", "diverged_at"}
    """
    ctx.seed(int(seed))
    model = build_seq2seq(ctx, model_args).to(ctx.device)
    src, tgt = train_src.to(ctx.device).long(), train_tgt.to(ctx.device).long()
    out = _train(model, lambda s, t: model(s), True, src, tgt, steps, batch_size, lr, seed, clip, decay)
    return _result(model, lambda s: model(s.to(ctx.device).long()), valid_src, out)


def train_transformer(ctx, *, kind, model_args, train_src, train_tgt, valid_src, steps, batch_size, lr, seed, clip=None):
    """Train the student's TransformerTranslator (kind "encoder") or FullTransformerTranslator ("full").

    The encoder-only model reads the source alone; the full model is trained with teacher
    forcing, model(src, tgt), and scores the validation sources with `generate_translation`
    (greedy, from its own predictions), so a decoder that peeks at later target tokens does
    not profit from it.

    Returns: as `train_seq2seq`, with logits as "valid_scores".
    """
    ctx.seed(int(seed))
    name = {"encoder": "TransformerTranslator", "full": "FullTransformerTranslator"}[kind]
    model = ctx.new(
        f"models.Transformer.{name}",
        model_args["src_vocab"],
        model_args["tgt_vocab"],
        ctx.device,
        **{k: v for k, v in model_args.items() if k not in ("src_vocab", "tgt_vocab")},
    )
    model = model.to(ctx.device)
    src, tgt = train_src.to(ctx.device).long(), train_tgt.to(ctx.device).long()
    if kind == "encoder":
        out = _train(model, lambda s, t: model(s), False, src, tgt, steps, batch_size, lr, seed, clip)
        return _result(model, lambda s: model(s.to(ctx.device).long()), valid_src, out)
    out = _train(model, lambda s, t: model(s, t), False, src, tgt, steps, batch_size, lr, seed, clip)
    return _result(model, lambda s: model.generate_translation(s.to(ctx.device).long()), valid_src, out)
