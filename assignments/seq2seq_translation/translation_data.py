"""Data for the translation assignment: vocabularies, loaders, a generated toy corpus, batches.

Only the standard library and torch are used, so this file also works inside the autograder's
sandbox. Token ids follow the torchtext / Multi30k convention the models assume:

    <unk> = 0, <pad> = 1, <sos> = 2, <eos> = 3, then the words.

A sentence becomes `<sos> w1 ... wn <eos>` followed by `<pad>` up to a fixed length, so every
row of a batch starts with the start token (Seq2Seq reads it from `source[:, 0]`) and padded
positions can be skipped by a loss with `ignore_index=PAD`.

The generated corpus (`generate_corpus`, `make_dataset`) is a small invented language and its
word-by-word translation into English words, with a different word order on each side, so a
model has to learn both a lexicon and where each word goes. Attention helps with the second.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

SPECIALS = ("<unk>", "<pad>", "<sos>", "<eos>")
UNK, PAD, SOS, EOS = 0, 1, 2, 3

Pair = tuple[list[str], list[str]]

# ----------------------------------------------------------------------------- vocabulary


class Vocab:
    """A bijection between tokens and ids; the four specials always take ids 0-3."""

    def __init__(self, itos: Sequence[str]):
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        if len(set(itos)) != len(itos):
            raise ValueError("a vocabulary must not list a token twice")
        self.itos: list[str] = list(itos)
        self.stoi: dict[str, int] = {tok: i for i, tok in enumerate(self.itos)}

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_freq: int = 1) -> Vocab:
        """The specials, then every token seen at least `min_freq` times.

        Words are ordered by decreasing frequency, ties alphabetically, so the same sentences
        always give the same ids.
        """
        counts = Counter(tok for sentence in sentences for tok in sentence if tok not in SPECIALS)
        words = sorted((tok for tok, n in counts.items() if n >= min_freq), key=lambda tok: (-counts[tok], tok))
        return cls([*SPECIALS, *words])

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens)"

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of `tokens`; a token not in the vocabulary becomes UNK."""
        return [self.stoi.get(tok, UNK) for tok in tokens]

    def decode(self, ids: Iterable[int], strip: bool = True) -> list[str]:
        """Tokens of `ids` (a list or a 1-D tensor).

        With `strip`, a leading `<sos>` is dropped, decoding stops at the first `<eos>` and
        `<pad>` is skipped: what is left is the sentence itself.
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for position, i in enumerate(ids):
            i = int(i)
            if strip:
                if i == EOS:
                    break
                if i == PAD or (i == SOS and position == 0):
                    continue
            out.append(self.itos[i] if 0 <= i < len(self.itos) else SPECIALS[UNK])
        return out


# ----------------------------------------------------------------------------- real text

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(line: str) -> list[str]:
    """Lower-cased words and punctuation marks: "A dog, running." -> [a, dog, ",", running, "."]."""
    return _TOKEN.findall(line.lower())


def _content_lines(path: Path) -> Iterator[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            yield lineno, line.rstrip("\r\n")


def load_parallel_tsv(path: str | Path) -> list[Pair]:
    """Sentence pairs from a UTF-8 file with one `source<TAB>target` pair per line.

    Blank lines and lines starting with `#` are skipped. A line without exactly one tab, or
    with an empty side, raises ValueError naming the file and the line number.
    """
    path = Path(path)
    pairs = []
    for lineno, line in _content_lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            raise ValueError(f"{path}, line {lineno}: expected 'source<TAB>target', found {len(fields) - 1} tabs")
        src, tgt = tokenize(fields[0]), tokenize(fields[1])
        if not src or not tgt:
            side = "source" if not src else "target"
            raise ValueError(f"{path}, line {lineno}: the {side} sentence is empty")
        pairs.append((src, tgt))
    return pairs


def load_parallel_files(src_path: str | Path, tgt_path: str | Path) -> list[Pair]:
    """Sentence pairs from two aligned files, one sentence per line (the Multi30k layout).

    Line i of one file translates line i of the other, so the files must have the same number
    of lines (ValueError otherwise). A pair where either line is blank is skipped.
    """
    src_lines = [line for _, line in _content_lines(Path(src_path))]
    tgt_lines = [line for _, line in _content_lines(Path(tgt_path))]
    if len(src_lines) != len(tgt_lines):
        raise ValueError(f"{src_path} has {len(src_lines)} lines but {tgt_path} has {len(tgt_lines)}: aligned files need the same number")
    pairs = []
    for src_line, tgt_line in zip(src_lines, tgt_lines, strict=True):
        src, tgt = tokenize(src_line), tokenize(tgt_line)
        if src and tgt:
            pairs.append((src, tgt))
    return pairs


# ----------------------------------------------------------------------------- the toy language
#
# Source sentence:  [adverb] subject [object] verb        (verb last, adverb first)
# Target sentence:  subject verb [object] [adverb]        (verb second, adverb last)
# A noun phrase is  determiner noun [adjective]  in the source and
#                   determiner [adjective] noun  in the target.
# Every source word has exactly one target word, so lengths match; only the order differs.

_DETERMINERS = {"en": "the", "ul": "a", "sim": "this"}
_NOUNS = {
    "vasko": "dog", "meli": "cat", "toran": "bird", "pesu": "child", "kalda": "farmer",
    "ribo": "horse", "sunta": "teacher", "dolem": "boat", "fira": "apple", "gomo": "river",
    "lanti": "house", "neku": "book", "ostra": "garden", "purel": "song",
}  # fmt: skip
_ADJECTIVES = {
    "tiva": "small", "brano": "big", "selu": "red", "moka": "old",
    "ketri": "happy", "zul": "green", "vento": "quiet", "hara": "young",
}  # fmt: skip
_VERBS = {
    "dalen": "sees", "koruk": "likes", "miten": "finds", "parsa": "carries",
    "susek": "hears", "tobri": "draws", "lemuk": "follows", "grasen": "paints",
}  # fmt: skip
_ADVERBS = {"oko": "today", "pelt": "often", "rask": "again", "nume": "slowly"}

LEXICON: dict[str, str] = {**_DETERMINERS, **_NOUNS, **_ADJECTIVES, **_VERBS, **_ADVERBS}


def _noun_phrase(rng: random.Random) -> Pair:
    det, noun = rng.choice(sorted(_DETERMINERS)), rng.choice(sorted(_NOUNS))
    if rng.random() < 0.5:
        adj = rng.choice(sorted(_ADJECTIVES))
        return [det, noun, adj], [LEXICON[det], LEXICON[adj], LEXICON[noun]]
    return [det, noun], [LEXICON[det], LEXICON[noun]]


def _sentence(rng: random.Random) -> Pair:
    subj_src, subj_tgt = _noun_phrase(rng)
    obj_src, obj_tgt = _noun_phrase(rng) if rng.random() < 0.7 else ([], [])
    verb = rng.choice(sorted(_VERBS))
    adverb = [rng.choice(sorted(_ADVERBS))] if rng.random() < 0.4 else []
    source = adverb + subj_src + obj_src + [verb]
    target = subj_tgt + [LEXICON[verb]] + obj_tgt + [LEXICON[a] for a in adverb]
    return source, target


def translate_toy(source: Sequence[str]) -> list[str]:
    """The exact translation of a generated source sentence (a list of words).

    Handy to check a model's output by eye; raises ValueError for a sentence the generator
    cannot produce.
    """
    words = list(source)
    adverb = [words.pop(0)] if words and words[0] in _ADVERBS else []
    if not words or words[-1] not in _VERBS:
        raise ValueError(f"not a sentence of the toy language (it must end with a verb): {source}")
    verb = words.pop()
    phrases = []
    while words:
        if len(words) < 2 or words[0] not in _DETERMINERS or words[1] not in _NOUNS:
            raise ValueError(f"not a sentence of the toy language (bad noun phrase): {source}")
        det, noun = words.pop(0), words.pop(0)
        adj = [words.pop(0)] if words and words[0] in _ADJECTIVES else []
        phrases.append([LEXICON[det], *(LEXICON[a] for a in adj), LEXICON[noun]])
    if len(phrases) not in (1, 2):
        raise ValueError(f"not a sentence of the toy language (needs a subject and at most one object): {source}")
    return phrases[0] + [LEXICON[verb]] + (phrases[1] if len(phrases) == 2 else []) + [LEXICON[a] for a in adverb]


def generate_corpus(n_pairs: int, seed: int, min_len: int = 3, max_len: int = 8) -> list[Pair]:
    """`n_pairs` (source words, target words) pairs of the toy language, 3 to 8 words each.

    The same seed gives the same pairs; no global random state is read or changed.
    Source and target of a pair have the same length, between `min_len` and `max_len`.
    """
    if not 3 <= min_len <= max_len or max_len > 8:
        raise ValueError(f"sentence lengths must satisfy 3 <= min_len <= max_len <= 8, got {min_len}..{max_len}")
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0, got {n_pairs}")
    rng = random.Random(seed)
    pairs: list[Pair] = []
    while len(pairs) < n_pairs:
        source, target = _sentence(rng)
        if min_len <= len(source) <= max_len:
            pairs.append((source, target))
    return pairs


# ----------------------------------------------------------------------------- tensors


def encode_pairs(pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two LongTensors (N, max_length): `<sos> w1 ... wn <eos> <pad> ...` per sentence.

    A sentence longer than max_length - 2 words is cut, and still ends with `<eos>`.
    """
    if max_length < 2:
        raise ValueError(f"max_length must leave room for <sos> and <eos>, got {max_length}")

    def rows(sentences: Iterable[list[str]], vocab: Vocab) -> torch.Tensor:
        out = torch.full((len(pairs), max_length), PAD, dtype=torch.long)
        for i, words in enumerate(sentences):
            ids = [SOS, *vocab.encode(words[: max_length - 2]), EOS]
            out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    return rows((p[0] for p in pairs), src_vocab), rows((p[1] for p in pairs), tgt_vocab)


@dataclass(frozen=True)
class TranslationData:
    """Encoded train/validation splits and their vocabularies (built from the training pairs)."""

    train_src: torch.Tensor  # (n_train, max_length) long
    train_tgt: torch.Tensor  # (n_train, max_length) long
    valid_src: torch.Tensor  # (n_valid, max_length) long
    valid_tgt: torch.Tensor  # (n_valid, max_length) long
    src_vocab: Vocab
    tgt_vocab: Vocab
    max_length: int


def make_dataset(seed: int, n_train: int = 2000, n_valid: int = 400, max_length: int = 12) -> TranslationData:
    """The generated translation task: `n_train` + `n_valid` pairs of the toy language.

    The vocabularies come from the training pairs only; a validation word never seen in
    training (rare with these sizes) becomes `<unk>`.
    """
    pairs = generate_corpus(n_train + n_valid, seed)
    train, valid = pairs[:n_train], pairs[n_train:]
    src_vocab = Vocab.build(p[0] for p in train)
    tgt_vocab = Vocab.build(p[1] for p in train)
    train_src, train_tgt = encode_pairs(train, src_vocab, tgt_vocab, max_length)
    valid_src, valid_tgt = encode_pairs(valid, src_vocab, tgt_vocab, max_length)
    return TranslationData(train_src, train_tgt, valid_src, valid_tgt, src_vocab, tgt_vocab, max_length)


def batches(
    src: torch.Tensor, tgt: torch.Tensor, batch_size: int, shuffle: bool, seed: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(source, target) batches that cover every row exactly once; the last may be smaller.

    With `shuffle`, rows come in an order drawn from `seed` (a fresh random order when seed is
    None), using a private generator: the global torch random state is left alone.
    """
    if src.shape[0] != tgt.shape[0]:
        raise ValueError(f"source has {src.shape[0]} rows but target has {tgt.shape[0]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = src.shape[0]
    if shuffle:
        gen = torch.Generator()
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        order = torch.randperm(n, generator=gen)
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        rows = order[start : start + batch_size]
        yield src[rows], tgt[rows]
