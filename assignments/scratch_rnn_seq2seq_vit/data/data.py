"""Data utilities for hw4_seq2seq.ipynb (given; you do not need to change this file).

Keep this file in a folder named `data` next to the notebook (in Colab: upload the folder, or put it on your
Drive and change into the folder that holds it). The notebook adds the folder to `sys.path` and imports from here.

The corpus is a tab-separated text file with one sentence pair per line, the source sentence first and its
translation second; any further columns (the attribution column of the Tatoeba/Anki downloads) are ignored:

    Go.<TAB>Va !<TAB>CC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #1158250 (Wittydev)

Batches are batch-first: `src` is (B, S) and `trg` is (B, T), padded with PAD_IDX. Every source sentence ends with
<eos>; every target sentence starts with <sos> and ends with <eos>.
"""

import random
import re
from collections import Counter

import torch
from torch.utils.data import DataLoader, Dataset

PAD_IDX, SOS_IDX, EOS_IDX, UNK_IDX = 0, 1, 2, 3
SPECIALS = ["<pad>", "<sos>", "<eos>", "<unk>"]

_PUNCTUATION = re.compile(r"([.!?,;:\"()¿¡«»])")


def tokenize(sentence):
    """Lower-case words with punctuation split off: "Va, vite !" -> ["va", ",", "vite", "!"]."""
    return _PUNCTUATION.sub(r" \1 ", sentence.lower().replace("\u202f", " ").replace("\xa0", " ")).split()


def read_parallel_corpus(path, max_len=None, limit=None):
    """(source tokens, target tokens) per line of a tab-separated corpus.

    Lines without a tab, or with an empty side, are skipped. With `max_len`, pairs where either side has more
    than `max_len` tokens are left out; with `limit`, at most that many pairs are read.
    """
    pairs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            columns = line.rstrip("\n").split("\t")
            if len(columns) < 2:
                continue
            src, trg = tokenize(columns[0]), tokenize(columns[1])
            if not src or not trg:
                continue
            if max_len is not None and (len(src) > max_len or len(trg) > max_len):
                continue
            pairs.append((src, trg))
            if limit is not None and len(pairs) >= limit:
                break
    return pairs


class Vocab:
    """Token <-> id. The four specials come first; then the tokens seen at least `min_freq` times, most frequent
    first (ties in alphabetical order). Unknown tokens map to UNK_IDX."""

    def __init__(self, token_lists, min_freq=1):
        counts = Counter(t for tokens in token_lists for t in tokens)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], t))
        self.itos = SPECIALS + kept
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens, sos=False, eos=True):
        ids = [self.stoi.get(t, UNK_IDX) for t in tokens]
        return ([SOS_IDX] if sos else []) + ids + ([EOS_IDX] if eos else [])

    def decode(self, ids):
        """Tokens up to the first <eos>, without <sos> and <pad>."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS_IDX:
                break
            if i not in (PAD_IDX, SOS_IDX):
                out.append(self.itos[i] if 0 <= i < len(self.itos) else "<unk>")
        return out


class TranslationDataset(Dataset):
    """Items are (source ids, target ids) as 1-D long tensors: source + <eos>, <sos> + target + <eos>."""

    def __init__(self, pairs, src_vocab, trg_vocab):
        self.items = [(torch.tensor(src_vocab.encode(s), dtype=torch.long),
                       torch.tensor(trg_vocab.encode(t, sos=True), dtype=torch.long)) for s, t in pairs]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def pad(sequences, value=PAD_IDX):
    """1-D long tensors -> (B, longest) padded at the end with `value`."""
    out = torch.full((len(sequences), max(len(s) for s in sequences)), value, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out


def collate_translation(batch):
    """A list of dataset items -> (src (B, S), trg (B, T)), both padded with PAD_IDX."""
    return pad([s for s, _ in batch]), pad([t for _, t in batch])


def split_pairs(pairs, valid_fraction=0.1, test_fraction=0.1, seed=0):
    """Shuffle (with `seed`) and split into train, validation and test lists."""
    pairs = list(pairs)
    random.Random(seed).shuffle(pairs)
    n_test, n_valid = int(len(pairs) * test_fraction), int(len(pairs) * valid_fraction)
    return pairs[n_test + n_valid :], pairs[n_test : n_test + n_valid], pairs[:n_test]


def make_loaders(path, batch_size=128, max_len=12, min_freq=2, limit=None, seed=0):
    """(train, valid, test DataLoaders, source vocabulary, target vocabulary) for the corpus at `path`."""
    train, valid, test = split_pairs(read_parallel_corpus(path, max_len=max_len, limit=limit), seed=seed)
    src_vocab = Vocab([s for s, _ in train], min_freq)
    trg_vocab = Vocab([t for _, t in train], min_freq)

    def loader(pairs, shuffle):
        return DataLoader(TranslationDataset(pairs, src_vocab, trg_vocab), batch_size=batch_size, shuffle=shuffle,
                          collate_fn=collate_translation)

    return loader(train, True), loader(valid, False), loader(test, False), src_vocab, trg_vocab
