"""Small generated data sets, so that the runners and tests work offline and fast.

Both generators are deterministic functions of their arguments (seeded torch.Generator).
"""

import torch


def make_token_corpus(num_sequences, sequence_length, vocab_size, seed=0):
    """Token sequences drawn from a random order-2 Markov chain.

    Ids 1 .. vocab_size - 1 are tokens; 0 is padding. A seeded table gives, for every pair of
    previous tokens, a preferred next token; the chain follows it with probability 0.8 and
    otherwise draws a uniform token. An LSTM that learns the table predicts far better than
    chance (the best per-token perplexity is about 3 for vocab_size = 32).

    Each sequence holds between sequence_length // 2 + 1 and sequence_length + 1 tokens, so
    it gives that many minus one (input, next token) pairs; the rest is zero-padded.

    Returns:
        dict of `source` (N, T) long, `target` (N, T) long and `mask` (N, T) float, with
        N = num_sequences and T = sequence_length, the same layout as `Wikitext2` items.
    """
    if vocab_size < 3:
        raise ValueError("vocab_size must be at least 3 (padding plus two tokens)")
    gen = torch.Generator().manual_seed(seed)
    N, T, V = num_sequences, sequence_length, vocab_size
    table = torch.randint(1, V, (V, V), generator=gen)  # (V, V) preferred next token

    tokens = torch.zeros(N, T + 1, dtype=torch.long)
    tokens[:, :2] = torch.randint(1, V, (N, 2), generator=gen)
    for t in range(2, T + 1):  # one step for all sequences at once
        preferred = table[tokens[:, t - 2], tokens[:, t - 1]]  # (N,)
        uniform = torch.randint(1, V, (N,), generator=gen)  # (N,)
        follow = torch.rand(N, generator=gen) < 0.8  # (N,)
        tokens[:, t] = torch.where(follow, preferred, uniform)

    pairs = torch.randint(max(T // 2, 1), T + 1, (N,), generator=gen)  # (N,) targets per row
    mask = (torch.arange(T).unsqueeze(0) < pairs.unsqueeze(1)).float()  # (N, T)
    source = tokens[:, :-1] * mask.long()  # (N, T)
    target = tokens[:, 1:] * mask.long()  # (N, T)
    return {"source": source, "target": target, "mask": mask}


def make_image_dataset(num_images, image_size, num_classes, seed=0):
    """Noisy RGB images whose class is visible as a class-specific pattern.

    Each class has a random pattern of +-1 values on a coarse 4x4 grid of blocks per
    channel; an image is its class's pattern, upsampled to image_size, plus Gaussian noise
    of standard deviation 1. Classes are balanced and shuffled.

    Returns:
        (images, labels): float (N, 3, S, S) and long (N,), with N = num_images and
        S = image_size (a multiple of 4).
    """
    if image_size % 4 != 0:
        raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
    gen = torch.Generator().manual_seed(seed)
    N, S, K = num_images, image_size, num_classes
    coarse = torch.randint(0, 2, (K, 3, 4, 4), generator=gen).float() * 2 - 1  # (K, 3, 4, 4)
    block = S // 4
    patterns = coarse.repeat_interleave(block, dim=2).repeat_interleave(block, dim=3)  # (K, 3, S, S)

    labels = torch.arange(N) % K  # (N,) balanced
    labels = labels[torch.randperm(N, generator=gen)]
    noise = torch.randn(N, 3, S, S, generator=gen)  # (N, 3, S, S)
    images = patterns[labels] + noise  # (N, 3, S, S)
    return images, labels
