"""Hidden tests, Problem 4: MyTokenizer (2 points), DialogueGPT (2), DialogueLoss (2), advice on the given dataset.

The tokenizer is checked against the student's own vocabulary (built by the given __init__), on generated
dialogue (no full stops: nltk tokenizes it the same with or without its sentence model; see offline_nltk.py).
DialogueGPT is checked through behaviour (its layer names are the student's): causality and the use of
positions. DialogueLoss is compared with the shifted cross-entropy over non-padding targets.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dlgrade.harness import expect
from dlgrade.harness.params import close_scalar, same
from graders.transformer_vit_gpt._support import datagen, first, name, reference

V, MAXN = 40, 10
GPT_ARGS = dict(vocab_size=V, max_N=MAXN, dim=16, attn_dim=8, mlp_dim=32, num_heads=2, num_layers=2)


def corpus(seed: int, n: int = 40) -> list[str]:
    return datagen().dialogue_data(seed, n_train=n, n_valid=8)["train"]


def tokens(text: str) -> list[str]:
    return list(reference().word_tokenize(text))


def new_tokenizer(sub, seed):
    blocks = corpus(seed)
    tok = sub.new(name("MyTokenizer"), datagen().dialogue_text(blocks))
    vocab = tok.get("vocab")
    start, unk = tok.get("start_id"), tok.get("unk_id")
    expect.true(isinstance(vocab, list) and all(isinstance(w, str) for w in vocab) and isinstance(start, int)
                and isinstance(unk, int), "MyTokenizer no longer has the given vocab (a list of tokens), start_id and "
                "unk_id; keep the given __init__", "given __init__ changed")
    return tok, vocab, start, unk, blocks


def expected_ids(vocab: list[str], start: int, unk: int, text: str) -> torch.Tensor:
    index = {w: i for i, w in enumerate(vocab)}
    return torch.tensor([start] + [index.get(w, unk) for w in tokens(text)], dtype=torch.long)


# ------------------------------------------------------------------ P4(a) MyTokenizer (2 points)


@pytest.mark.part("tokenizer")
@pytest.mark.points(1)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P4(a): encode converts a string to token ids (word_tokenize) and prepends the start token's id; "
                  "INTERFACES: a LongTensor")
def test_encode(sub, seed):
    """MyTokenizer.encode: a LongTensor of the start id, then the id of each word_tokenize token"""
    tok, vocab, start, unk, blocks = new_tokenizer(sub, seed)
    for text in blocks[:4] + ["ROMEO:\nthe rose is red!", "Alas, JULIET! thou sought the ring; the ring is golden?"]:
        got = expect.tensor(tok.call("encode", text), f"encode({text!r})", dtype="long")
        want = expected_ids(vocab, start, unk, text)
        expect.true(got.dim() == 1, f"encode({text!r}) returns shape {tuple(got.shape)}; it should be 1-D (one id per token)")
        if got.shape == want.shape and torch.equal(got, want):
            continue
        if got.shape[0] == want.shape[0] - 1 and torch.equal(got, want[1:]):
            expect.fail("encode does not put the start token's id first", "no start token")
        split = torch.tensor([start] + [vocab.index(w) if w in vocab else unk for w in text.split()])
        if got.shape == split.shape and torch.equal(got, split):
            expect.fail("encode splits on whitespace; use word_tokenize, which also separates punctuation", "whitespace split")
        expect.fail(f"encode({text!r}) does not give the start id followed by the ids of word_tokenize's tokens")


@pytest.mark.part("tokenizer")
@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P4(a): unk is used when encountering a word not in the vocabulary")
def test_encode_unknown_words(sub, seed):
    """MyTokenizer.encode: words that are not in the vocabulary get the unk id"""
    tok, vocab, start, unk, _ = new_tokenizer(sub, seed)
    text = "Alas, Horatio! I saw the comet; the comet is wondrous!"
    got = expect.tensor(tok.call("encode", text), f"encode({text!r})", dtype="long")
    want = expected_ids(vocab, start, unk, text)
    if got.shape == want.shape and torch.equal(got, want):
        return
    pad = tok.get("pad_id")
    alt = want.clone()
    alt[want == unk] = pad if isinstance(pad, int) else -1
    if got.shape == want.shape and torch.equal(got, alt):
        expect.fail("unknown words get the pad id instead of the unk id", "unknown words padded")
    expect.fail(f"encode({text!r}) must give unk_id to the words that are not in the vocabulary")


@pytest.mark.part("tokenizer")
@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P4(a): decode converts an array of token ids back into tokens, joined with a space")
def test_decode(sub, seed, gen):
    """MyTokenizer.decode: the tokens of the ids, joined with single spaces (for a list and a tensor of ids)"""
    tok, vocab, *_ = new_tokenizer(sub, seed)
    ids = torch.randint(3, len(vocab), (9,), generator=gen)
    want = " ".join(vocab[int(i)] for i in ids)
    for arg, label in ((ids, "a LongTensor"), ([int(i) for i in ids], "a list")):
        got = tok.call("decode", arg)
        expect.true(isinstance(got, str), f"decode({label}) should return a string")
        if got == want:
            continue
        if got == "".join(vocab[int(i)] for i in ids):
            expect.fail("decode joins the tokens without spaces; join them with single spaces", "no spaces")
        expect.fail(f"decode({label}) does not give the tokens of the ids joined with single spaces")


@pytest.mark.part("tokenizer")
@pytest.mark.advice
@pytest.mark.visibility("after_published")
@pytest.mark.spec("Given code (P4(b)): DialogueDataset cuts each example to max_N tokens; collate_fn right-pads with "
                  "input_mask 0 on padding; advice only")
def test_given_dataset_and_collate(sub, seed):
    """Advice: the given DialogueDataset and collate_fn still cut to max_N and right-pad, with your encode"""
    blocks = corpus(seed, 12)
    tok = sub.new(name("MyTokenizer"), datagen().dialogue_text(blocks))
    max_n = 14
    ds = sub.new(name("DialogueDataset"), tok, blocks[:5], max_n)
    items = [expect.tensor(ds.call("__getitem__", i), f"dataset item {i}", dtype="long") for i in range(5)]
    full = [expect.tensor(tok.call("encode", b), "encode", dtype="long") for b in blocks[:5]]
    for i, (item, whole) in enumerate(zip(items, full, strict=True)):
        expect.true(torch.equal(item, whole[:max_n]), f"dataset item {i} is not encode(line)[:max_N]", "max_N not applied")
    short = [item[: 3 + i] for i, item in enumerate(items)]
    batch = ds.call("collate_fn", short)
    expect.true(isinstance(batch, dict) and {"input_ids", "input_mask"} <= set(batch),
                "collate_fn must return a dict with input_ids and input_mask")
    ids = expect.tensor(batch["input_ids"], "input_ids", shape=(5, 7), dtype="long")
    mask = expect.tensor(batch["input_mask"], "input_mask", shape=(5, 7))
    for i, item in enumerate(short):
        n = len(item)
        expect.true(torch.equal(ids[i, :n], item) and bool((mask[i, :n] != 0).all()) and bool((mask[i, n:] == 0).all()),
                    f"collate_fn: example {i} is not right-padded with input_mask 0 on its padding", "padding wrong")


# ------------------------------------------------------------------ P4(c) DialogueGPT (2 points)


def new_gpt(sub):
    gpt = sub.new(name("DialogueGPT"), **GPT_ARGS)
    gpt.call("eval")
    return gpt


def logits_of(gpt, ids, what, finite=True):
    b, t = ids.shape
    return expect.tensor(first(gpt(ids)), what, shape=(b, t, V), dtype="float", finite=finite)


@pytest.mark.part("gpt")
@pytest.mark.points(0.5)
@pytest.mark.visibility("visible")
@pytest.mark.spec("P4(c) / INTERFACES: DialogueGPT.forward(input_ids (B, T)) -> logits (B, T, V), for any T <= max_N")
def test_gpt_shape(sub, gen):
    """DialogueGPT returns logits (B, T, vocab_size), for T = max_N and shorter inputs"""
    gpt = new_gpt(sub)
    for t in (MAXN, 4, 1):
        # NaN from attention that masks a whole row is graded in Problem 2
        logits_of(gpt, torch.randint(0, V, (3, t), generator=gen), f"DialogueGPT logits for T = {t}", finite=False)


@pytest.mark.part("gpt")
@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P4(c): a causal attention mask: every token only depends on itself and the tokens before it")
def test_gpt_is_causal(sub, gen):
    """DialogueGPT is causal: changing a token never changes the logits at earlier positions"""
    gpt = new_gpt(sub)
    ids = torch.randint(3, V, (3, MAXN), generator=gen)
    probe = sub.run_recipe("gpt_attention_mask", model_args=GPT_ARGS, input_ids=ids)
    mask = probe.get("mask") if isinstance(probe, dict) else None
    if isinstance(mask, torch.Tensor) and tuple(mask.shape) == (3, MAXN, MAXN):
        causal = torch.tril(torch.ones(MAXN, MAXN)).expand(3, MAXN, MAXN)
        if torch.equal(mask, causal):
            return  # the right mask; whether attention applies it is graded in Problem 2
    base = logits_of(gpt, ids, "DialogueGPT logits")
    for j in (MAXN - 1, MAXN // 2, 1):
        changed = ids.clone()
        changed[:, j] = (changed[:, j] + 1 + torch.randint(0, V - 4, (3,), generator=gen)) % (V - 3) + 3
        got = logits_of(gpt, changed, "DialogueGPT logits")
        if not same(got[:, :j], base[:, :j]):
            expect.fail(f"changing the token at position {j} changes the logits at earlier positions: the model looks "
                        "at later tokens; use a causal mask (token i may attend to tokens j <= i)", "not causal")
        expect.true(not same(got[:, j:], base[:, j:], atol=1e-7, rtol=0),
                    f"changing the token at position {j} changes none of the logits from position {j} on: the "
                    "model does not use its input (or masks too much)", "ignores its input")
    expect.true(same(logits_of(gpt, ids[:, :4], "DialogueGPT logits for a prefix"), base[:, :4]),
                "the logits of a prefix differ from the first logits of the whole sequence: the model is not causal",
                "not causal")


@pytest.mark.part("gpt")
@pytest.mark.points(0.5)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P4(c): given the token ids, retrieve the token embeddings and add a learned positional embedding")
def test_gpt_uses_positions(sub, gen):
    """DialogueGPT adds position embeddings: one token repeated gives different logits at different positions"""
    gpt = new_gpt(sub)
    token = int(torch.randint(3, V, (1,), generator=gen))
    logits = logits_of(gpt, torch.full((2, MAXN), token), "DialogueGPT logits", finite=False)
    keep = torch.isfinite(logits).all(-1).all(0)  # positions without NaN (a mistake of Problem 2's attention)
    logits = logits[:, keep]
    expect.true(logits.shape[1] >= 2, "DialogueGPT's logits are NaN or infinite at almost every position")
    expect.true(not same(logits[:, 1:], logits[:, :1].expand(-1, logits.shape[1] - 1, -1), atol=1e-6, rtol=0),
                "with the same token at every position, every position gets the same logits: the position embeddings "
                "are not added to the token embeddings", "no position embeddings")


# ------------------------------------------------------------------ P4(d) DialogueLoss (2 points)


def loss_inputs(gen, lengths, t=7):
    b = len(lengths)
    logits = 2.0 * torch.randn(b, t, V, generator=gen)
    ids = torch.randint(3, V, (b, t), generator=gen)
    ids[:, 0] = 0
    mask = torch.zeros(b, t, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        ids[i, n:] = 1
    return logits, ids, mask


def shifted(logits, ids, mask, per_sequence=False):
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")  # (B, T - 1)
    keep = (mask[:, 1:] != 0).double()
    if per_sequence:
        return float(((nll * keep).sum(1) / keep.sum(1)).mean())
    return float((nll * keep).sum() / keep.sum())


@pytest.mark.part("gpt_loss")
@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P4(d): T-1 classification losses: logit O[i] predicts token i+1 by cross entropy (the start token is "
                  "not supervised, the last logit is unused)")
def test_loss_is_shifted(sub, gen):
    """DialogueLoss without padding: the mean cross-entropy of logits[:, i] against input_ids[:, i + 1]"""
    logits, ids, mask = loss_inputs(gen, [7, 7, 7])
    got = sub.new(name("DialogueLoss"))(logits, ids, mask)
    flat = F.cross_entropy(logits.reshape(-1, V), ids.reshape(-1))
    close_scalar(got, shifted(logits, ids, mask), "DialogueLoss", {
        "logits[:, i] is compared with input_ids[:, i] (not shifted by one)": float(flat),
        "the losses are summed instead of averaged": float(F.cross_entropy(logits[:, :-1].reshape(-1, V),
                                                                           ids[:, 1:].reshape(-1), reduction="sum")),
        "logits[:, i + 1] is compared with input_ids[:, i] (shifted the wrong way)":
            float(F.cross_entropy(logits[:, 1:].reshape(-1, V), ids[:, :-1].reshape(-1))),
    })


@pytest.mark.part("gpt_loss")
@pytest.mark.points(1)
@pytest.mark.visibility("after_published")
@pytest.mark.spec("P4(d): take inp_mask into account to ignore supervising tokens that correspond to padding")
def test_loss_ignores_padding(sub, gen):
    """DialogueLoss with padding: padding targets are ignored (the mean over the real targets)"""
    logits, ids, mask = loss_inputs(gen, [7, 4, 2, 5])
    got = sub.new(name("DialogueLoss"))(logits, ids, mask)
    value = expect.scalar(got, "DialogueLoss")
    accepted = [shifted(logits, ids, mask), shifted(logits, ids, mask, per_sequence=True)]
    if any(abs(value - a) <= 1e-5 + 1e-4 * abs(a) for a in accepted):
        return
    everything = torch.ones_like(mask)
    close_scalar(got, accepted[0], "DialogueLoss with padding", {
        "padding targets are counted in the loss": shifted(logits, ids, everything),
        "the mask is not shifted with the targets (inp_mask[:, :-1] is used for the targets input_ids[:, 1:])":
            float((F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
                   * mask[:, :-1]).sum() / mask[:, :-1].sum()),
        "the masked losses are summed and divided by the number of all positions":
            float((F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
                   * mask[:, 1:]).sum() / mask[:, 1:].numel()),
    })
