"""WikiText-2, pre-tokenised with the GPT vocabulary, as fixed-length training sequences.

Each split is one file `wiki.<split>.npz` holding two arrays:
- `tokens`: uint16 (N,), the token ids of all documents, one after the other;
- `sizes`: int64 (D,), the number of tokens of each document (they sum to N).

A document of n tokens gives n - 1 (input, next token) pairs. They are cut into sequences of
at most `sequence_length + 1` tokens; consecutive sequences of a document share one token, so
every token but a document's first is a target exactly once and no sequence crosses a
document boundary. Shorter sequences are zero-padded (id 0 is reserved for padding).
"""

import os

import numpy as np
import torch
from torch.utils.data import Dataset


def load_npz(path):
    """Read and validate one split.

    Returns:
        (tokens, sizes): uint16 (N,) and int64 (D,) NumPy arrays.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not an .npz archive or its arrays are malformed.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except Exception as error:  # a truncated or foreign file fails in many ways
        raise ValueError(f"{path}: not a readable .npz archive ({error})") from error
    missing = {"tokens", "sizes"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: missing array(s) {sorted(missing)}")
    tokens, sizes = arrays["tokens"], arrays["sizes"]

    if tokens.ndim != 1 or tokens.dtype != np.uint16:
        raise ValueError(
            f"{path}: 'tokens' must be a 1-D uint16 array, got {tokens.dtype} {tokens.shape}"
        )
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu":
        raise ValueError(
            f"{path}: 'sizes' must be a 1-D integer array, got {sizes.dtype} {sizes.shape}"
        )
    sizes = sizes.astype(np.int64)
    if (sizes < 0).any():
        raise ValueError(f"{path}: 'sizes' holds negative document sizes")
    if int(sizes.sum()) != len(tokens):
        raise ValueError(
            f"{path}: 'sizes' sum to {int(sizes.sum())} but 'tokens' holds {len(tokens)} ids"
        )
    return tokens, sizes


class Wikitext2(Dataset):
    """Sequences of WikiText-2 tokens for next-token prediction.

    Args:
        root: folder holding `wiki.<split>.npz`.
        split: "train", "validation" or "test".
        sequence_length: length T of the returned tensors (256 throughout the homework).

    Each item is a dict of three (T,) tensors: `source` (LongTensor, the input ids),
    `target` (LongTensor, the ids that follow them) and `mask` (FloatTensor, 1 where the
    target is a real token, 0 on padding).
    """

    def __init__(self, root, split="train", sequence_length=256):
        self.root = root
        self.split = split
        self.sequence_length = sequence_length
        self.tokens, self.sizes = load_npz(os.path.join(root, f"wiki.{split}.npz"))

        # Index the sequences once: a start offset into `tokens` and an end (exclusive).
        L = sequence_length
        offsets = np.cumsum(self.sizes) - self.sizes  # (D,) start of each document
        pairs = np.maximum(self.sizes - 1, 0)  # (D,) targets per document
        counts = (pairs + L - 1) // L  # (D,) sequences per document
        doc = np.repeat(np.arange(len(self.sizes)), counts)  # (S,) document of each sequence
        rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)  # (S,)
        self.starts = offsets[doc] + rank * L  # (S,)
        self.ends = np.minimum(self.starts + L + 1, offsets[doc] + self.sizes[doc])  # (S,)

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, index):
        sequence = torch.from_numpy(
            self.tokens[self.starts[index] : self.ends[index]].astype(np.int64)
        )  # (n + 1,)
        n = len(sequence) - 1
        source = torch.zeros(self.sequence_length, dtype=torch.long)
        target = torch.zeros(self.sequence_length, dtype=torch.long)
        mask = torch.zeros(self.sequence_length, dtype=torch.float)
        source[:n] = sequence[:-1]
        target[:n] = sequence[1:]
        mask[:n] = 1.0
        return {"source": source, "target": target, "mask": mask}
