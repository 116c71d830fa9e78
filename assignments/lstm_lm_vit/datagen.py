"""Small deterministic data for the lstm_lm_vit threshold tests.

Everything is drawn from a local ``torch.Generator`` seeded by the caller, so the grader can
regenerate exactly the same data from the run's seed, and nothing depends on the global RNG.
Only the standard library and torch are used (this file is public; students may run it).
"""

from __future__ import annotations

import torch

PAD, START = 0, 1


def _topic_tables(gen: torch.Generator, vocab_size: int, num_topics: int, fanout: int,
                  header: bool = False) -> torch.Tensor:
    """(topics, V, V) next-token tables: each topic lets a token be followed by `fanout` others.

    With `header`, the start token is always followed by the topic's own header token
    (id 2 + topic), so the first real token announces the topic.
    """
    content = vocab_size - 2  # ids 2 .. V-1; 0 = padding, 1 = start
    tables = torch.zeros(num_topics, vocab_size, vocab_size)
    for k in range(num_topics):
        for a in range(1, vocab_size):
            succ = torch.randperm(content, generator=gen)[:fanout] + 2
            w = torch.rand(fanout, generator=gen) + 0.5
            tables[k, a, succ] = w / w.sum()
        if header:
            tables[k, START] = 0.0
            tables[k, START, 2 + k] = 1.0
    return tables


def lm_data(seed: int, *, n_train: int = 2048, n_valid: int = 512, seq_len: int = 32, vocab_size: int = 32,
            num_topics: int = 4, fanout: int = 3, min_len: int = 8, max_len: int | None = None,
            header: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """Token sequences whose next token depends on a hidden topic chosen per sequence.

    A model that sees only the current token (a bigram model) must spread its bets over the
    successors of every topic; a recurrent model infers the topic from the context and does
    much better. Sequences have random lengths (uniform in [min_len, max_len], max_len defaults
    to seq_len) and are zero-padded; ``mask`` marks real targets. Short sequences in long rows
    (e.g. 2..10 targets in rows of 32) make most positions padding, so a loss that counts the
    padding positions trains measurably worse. With ``header`` the first token names the topic.
    Returns {"train": {...}, "valid": {...}}, each with ``source``, ``target`` (long, (N, T))
    and ``mask`` (float, (N, T)).
    """
    gen = torch.Generator().manual_seed(int(seed))
    if header and num_topics > vocab_size - 2:
        raise ValueError("header needs one token id per topic")
    tables = _topic_tables(gen, vocab_size, num_topics, fanout, header)
    longest = seq_len if max_len is None else min(int(max_len), seq_len)

    def split(n: int) -> dict[str, torch.Tensor]:
        topics = torch.randint(num_topics, (n,), generator=gen)
        lengths = torch.randint(min_len, longest + 1, (n,), generator=gen)  # number of real targets
        seqs = torch.zeros(n, seq_len + 1, dtype=torch.long)
        seqs[:, 0] = START
        for t in range(seq_len):
            seqs[:, t + 1] = torch.multinomial(tables[topics, seqs[:, t]], 1, generator=gen).squeeze(1)
        keep = torch.arange(seq_len + 1)[None, :] <= lengths[:, None]
        seqs = seqs * keep
        mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).float()
        return {"source": seqs[:, :-1].clone(), "target": seqs[:, 1:].clone(), "mask": mask}

    return {"train": split(n_train), "valid": split(n_valid)}


def vit_data(seed: int, *, n_train: int = 4096, n_test: int = 1024, image_size: int = 8, patch_size: int = 2,
             noise: float = 0.6) -> dict[str, torch.Tensor]:
    """Noisy images with one bright patch; the label is the quadrant that holds it (4 classes).

    The patch's colour is random and the background is noise, so the content of a patch says
    nothing about the label: only *where* the bright patch is does. A transformer that adds
    position embeddings learns this in a few hundred steps; one without them is blind to
    positions and stays at chance.
    Returns train_images (N, 3, S, S) float, train_labels (N,) long, test_images, test_labels.
    """
    gen = torch.Generator().manual_seed(int(seed))
    grid = image_size // patch_size

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = noise * torch.randn(n, 3, image_size, image_size, generator=gen)
        rows = torch.randint(grid, (n,), generator=gen)
        cols = torch.randint(grid, (n,), generator=gen)
        colours = 1.0 + 2.0 * torch.rand(n, 3, generator=gen)
        for i in range(n):
            r, c = int(rows[i]) * patch_size, int(cols[i]) * patch_size
            images[i, :, r:r + patch_size, c:c + patch_size] += colours[i][:, None, None]
        half = grid // 2
        labels = (rows >= half).long() * 2 + (cols >= half).long()
        return images, labels

    train_images, train_labels = split(n_train)
    test_images, test_labels = split(n_test)
    return {"train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels}

