"""Tests of the released data and training modules of `seq2seq_translation`.

`translation_data.py` and `training.py` are plain modules in the assignment folder (students,
recipes and graders import them by name); the `s2s` fixture puts that folder on sys.path and
removes the modules again afterwards.
"""

from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path

import pytest
import torch

ASSIGNMENT_DIR = Path(__file__).resolve().parents[1] / "assignments" / "seq2seq_translation"
MODULES = ("translation_data", "training")


@pytest.fixture
def s2s(monkeypatch):
    """`s2s("translation_data")` imports a released module of the assignment folder."""
    saved = {name: sys.modules.pop(name) for name in MODULES if name in sys.modules}
    monkeypatch.syspath_prepend(str(ASSIGNMENT_DIR))
    try:
        yield importlib.import_module
    finally:
        for name in MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


@pytest.fixture
def td(s2s):
    return s2s("translation_data")


# ----------------------------------------------------------------------------- vocabulary


def test_special_ids_follow_the_multi30k_convention(td):
    vocab = td.Vocab.build([["b", "a", "b"], ["c"]])
    assert td.SPECIALS == ("<unk>", "<pad>", "<sos>", "<eos>")
    assert (td.UNK, td.PAD, td.SOS, td.EOS) == (0, 1, 2, 3)
    assert [vocab.stoi[s] for s in td.SPECIALS] == [0, 1, 2, 3]
    # words by decreasing frequency, ties alphabetically
    assert vocab.itos[4:] == ["b", "a", "c"]
    assert len(vocab) == 7


def test_min_freq_and_unknown_words(td):
    vocab = td.Vocab.build([["x", "x", "y"]], min_freq=2)
    assert "y" not in vocab and "x" in vocab
    assert vocab.encode(["x", "y", "never"]) == [vocab.stoi["x"], td.UNK, td.UNK]


def test_encode_decode_round_trip(td):
    sentences = [["the", "dog", "sees", "a", "cat"], ["a", "bird"]]
    vocab = td.Vocab.build(sentences)
    for words in sentences:
        ids = [td.SOS, *vocab.encode(words), td.EOS, td.PAD, td.PAD]
        assert vocab.decode(ids) == words
        assert vocab.decode(torch.tensor(ids)) == words
        assert vocab.decode(ids, strip=False) == ["<sos>", *words, "<eos>", "<pad>", "<pad>"]


# ----------------------------------------------------------------------------- real text


def test_tokenize_lowercases_and_splits_punctuation(td):
    assert td.tokenize("A Dog, running  fast.\n") == ["a", "dog", ",", "running", "fast", "."]


def test_load_parallel_tsv_reads_pairs_and_skips_blank_and_comment_lines(td, tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("# de\ten\nEin Hund.\tA dog.\n\n  \nZwei Männer laufen\tTwo men run\n", encoding="utf-8")
    pairs = td.load_parallel_tsv(path)
    assert pairs == [(["ein", "hund", "."], ["a", "dog", "."]), (["zwei", "männer", "laufen"], ["two", "men", "run"])]


@pytest.mark.parametrize("bad", ["no tab on this line", "one\ttab\ttoo many", "   \tonly a target"])
def test_load_parallel_tsv_names_the_malformed_line(td, tmp_path, bad):
    path = tmp_path / "pairs.tsv"
    path.write_text(f"ein hund\ta dog\n\n{bad}\nzwei\ttwo\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 3\b"):
        td.load_parallel_tsv(path)


def test_load_parallel_files_aligned_and_unequal(td, tmp_path):
    de, en = tmp_path / "train.de", tmp_path / "train.en"
    de.write_text("Ein Hund.\nZwei Katzen\n", encoding="utf-8")
    en.write_text("A dog.\nTwo cats\n", encoding="utf-8")
    assert td.load_parallel_files(de, en) == [(["ein", "hund", "."], ["a", "dog", "."]), (["zwei", "katzen"], ["two", "cats"])]
    en.write_text("A dog.\nTwo cats\nOne more\n", encoding="utf-8")
    with pytest.raises(ValueError, match="2 lines.*3"):
        td.load_parallel_files(de, en)


# ----------------------------------------------------------------------------- generated corpus


def test_generate_corpus_is_deterministic_and_leaves_global_rng_alone(td):
    import random

    random.seed(123)
    torch.manual_seed(123)
    py_state, torch_state = random.getstate(), torch.get_rng_state()
    a = td.generate_corpus(200, seed=7)
    assert random.getstate() == py_state and torch.equal(torch.get_rng_state(), torch_state)
    assert a == td.generate_corpus(200, seed=7)
    assert a != td.generate_corpus(200, seed=8)
    assert td.generate_corpus(50, seed=7) == a[:50]


def test_generated_pairs_have_bounded_lengths_small_vocabularies_and_reordering(td):
    pairs = td.generate_corpus(2000, seed=0)
    lengths = {len(s) for s, _ in pairs}
    assert lengths == set(range(3, 9))
    assert all(len(s) == len(t) for s, t in pairs)
    src_words = {w for s, _ in pairs for w in s}
    tgt_words = {w for _, t in pairs for w in t}
    assert 20 <= len(src_words) <= 60 and 20 <= len(tgt_words) <= 60
    # the translation is deterministic: the same source always gives the same target
    seen = {}
    for s, t in pairs:
        assert seen.setdefault(tuple(s), t) == t
        assert td.translate_toy(s) == t
    # word order differs: translating word by word in place is wrong for most sentences
    in_place = sum([td.LEXICON[w] for w in s] == t for s, t in pairs)
    assert in_place < 0.2 * len(pairs)
    short = td.generate_corpus(300, seed=1, min_len=3, max_len=4)
    assert {len(s) for s, _ in short} == {3, 4}


def test_encode_pairs_pads_and_truncates_keeping_eos(td):
    pairs = [(["a", "b", "c"], ["x", "y"]), (["a", "b", "c", "d", "e", "f"], ["x", "y", "z", "w", "v", "u"])]
    src_vocab = td.Vocab.build(p[0] for p in pairs)
    tgt_vocab = td.Vocab.build(p[1] for p in pairs)
    src, tgt = td.encode_pairs(pairs, src_vocab, tgt_vocab, max_length=6)
    assert src.dtype == tgt.dtype == torch.long and src.shape == tgt.shape == (2, 6)
    a, b, c = src_vocab.encode(["a", "b", "c"])
    assert src[0].tolist() == [td.SOS, a, b, c, td.EOS, td.PAD]
    assert tgt[0].tolist() == [td.SOS, *tgt_vocab.encode(["x", "y"]), td.EOS, td.PAD, td.PAD]
    # too long: cut to 4 words, <eos> still last
    assert src[1].tolist() == [td.SOS, *src_vocab.encode(["a", "b", "c", "d"]), td.EOS]
    assert tgt_vocab.decode(tgt[1]) == ["x", "y", "z", "w"]
    with pytest.raises(ValueError):
        td.encode_pairs(pairs, src_vocab, tgt_vocab, max_length=1)


def test_make_dataset_shapes_and_round_trip(td):
    data = td.make_dataset(seed=3, n_train=300, n_valid=50, max_length=10)
    assert data.train_src.shape == data.train_tgt.shape == (300, 10)
    assert data.valid_src.shape == data.valid_tgt.shape == (50, 10)
    assert (data.train_src[:, 0] == td.SOS).all() and (data.valid_tgt[:, 0] == td.SOS).all()
    assert ((data.train_src == td.EOS).sum(dim=1) == 1).all()
    pairs = td.generate_corpus(350, seed=3)
    for i in range(0, 300, 37):
        assert data.src_vocab.decode(data.train_src[i]) == pairs[i][0]
        assert data.tgt_vocab.decode(data.train_tgt[i]) == pairs[i][1]
    again = td.make_dataset(seed=3, n_train=300, n_valid=50, max_length=10)
    assert torch.equal(again.valid_tgt, data.valid_tgt) and again.tgt_vocab.itos == data.tgt_vocab.itos


@pytest.mark.parametrize("shuffle,seed", [(False, None), (True, 5), (True, None)])
def test_batches_cover_every_row_once(td, shuffle, seed):
    src = torch.arange(23).unsqueeze(1).repeat(1, 4)  # row i holds i
    tgt = src + 100
    got = list(td.batches(src, tgt, batch_size=5, shuffle=shuffle, seed=seed))
    assert [len(s) for s, _ in got] == [5, 5, 5, 5, 3]
    rows = torch.cat([s[:, 0] for s, _ in got])
    assert sorted(rows.tolist()) == list(range(23))
    assert all(torch.equal(t, s + 100) for s, t in got)
    if not shuffle:
        assert rows.tolist() == list(range(23))
    if seed is not None:
        again = torch.cat([s[:, 0] for s, _ in td.batches(src, tgt, 5, shuffle=True, seed=seed)])
        assert torch.equal(rows, again)


# ----------------------------------------------------------------------------- training loops


class _Lookup(torch.nn.Module):
    """A model that predicts target token t from source token t through a learned table."""

    def __init__(self, vocab_in, vocab_out, log_probs):
        super().__init__()
        self.table = torch.nn.Embedding(vocab_in, vocab_out)
        self.log_probs = log_probs

    def forward(self, src, tgt=None):
        out = self.table(src)  # (B, T, V)
        return out.log_softmax(-1) if self.log_probs else out


@pytest.mark.parametrize("kind", ["seq2seq", "encoder", "full"])
def test_training_loops_learn_and_ignore_padding(s2s, td, kind):
    training = s2s("training")
    torch.manual_seed(0)
    # position-wise task: the target is a fixed permutation of the source vocabulary
    data = td.make_dataset(seed=1, n_train=256, n_valid=64, max_length=12)
    perm = torch.randperm(40) + 4
    to_tgt = torch.cat([torch.arange(4), perm])
    train_tgt, valid_tgt = to_tgt[data.train_src], to_tgt[data.valid_src]
    model = _Lookup(len(data.src_vocab), 44, log_probs=kind == "seq2seq")
    criterion = training.make_criterion(kind)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    before, ppl_before = training.evaluate(model, kind, td.batches(data.valid_src, valid_tgt, 32, False), criterion, "cpu")
    assert ppl_before == pytest.approx(math.exp(before))
    for epoch in range(5):
        loss = training.train_epoch(model, kind, td.batches(data.train_src, train_tgt, 32, True, epoch), optimizer, criterion, "cpu")
    after, ppl_after = training.evaluate(model, kind, td.batches(data.valid_src, valid_tgt, 32, False), criterion, "cpu")
    assert after < 0.2 < before and loss < 0.5 and ppl_after < 1.3
    guess = training.translate(model, "encoder" if kind == "full" else kind, data.valid_src[:8])
    real = valid_tgt[:8] != td.PAD  # padded positions are never trained, so anything goes there
    assert torch.equal(guess[real], valid_tgt[:8][real])

    # changing what the model predicts at padded positions leaves the loss unchanged
    with torch.no_grad():
        model.table.weight[td.PAD] = torch.randn(44) * 10
    again, _ = training.evaluate(model, kind, td.batches(data.valid_src, valid_tgt, 32, False), criterion, "cpu")
    assert again == pytest.approx(after, rel=1e-5, abs=1e-6)


def test_loss_is_a_mean_over_real_tokens_not_over_batches(s2s, td):
    training = s2s("training")
    # two batches, one with 1 real token and one with 3: the epoch mean weights tokens equally
    src = torch.tensor([[4, 1, 1, 1], [5, 6, 7, 1]])
    model = _Lookup(8, 8, log_probs=False)
    with torch.no_grad():
        model.table.weight.zero_()
    loss, ppl = training.evaluate(model, "encoder", td.batches(src, src, 1, False), training.make_criterion("encoder"), "cpu")
    assert loss == pytest.approx(math.log(8)) and ppl == pytest.approx(8.0)
    with pytest.raises(ValueError, match="kind"):
        training.make_criterion("decoder")
    assert training.perplexity(1e6) == math.inf and training.perplexity(float("nan")) == math.inf
