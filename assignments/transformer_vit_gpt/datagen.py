"""Generated data for the graded training runs of transformer_vit_gpt (deterministic from a seed; nothing is downloaded).

- ``vit_data``: noisy images with one bright square; the label is the quadrant that holds it. Colour and
  brightness say nothing about the label, only *where* the square is, so a Vision Transformer must use its
  position embeddings (a ViT without them sees the patches as an unordered set).
- ``dialogue_data``: dialogue blocks like the handout's corpus ("SPEAKER:" on one line, what they say on the
  next), from a small grammar with long-range structure: the noun said early in a turn is repeated later
  and fixes the adjective, and the speaker fixes the greeting and the closing punctuation. A GPT that may
  look at later tokens while training learns to copy them and fails when it has to predict from the prefix.

The dialogue never contains a full stop or a double quote: ``nltk.word_tokenize`` then gives the same
tokens whatever sentence model it uses (offline_nltk.py explains why), in Colab and in the grader alike.
Students may run this module too; it needs only torch.
"""

from __future__ import annotations

import torch

SPEAKERS = {  # speaker -> (greetings, closing punctuation)
    "ROMEO": (["Alas", "Sweet"], "!"),
    "JULIET": (["Ay me", "Good night"], "?"),
    "MERCUTIO": (["Come", "Peace"], "!"),
    "NURSE": (["Well", "Marry"], "?"),
    "TYBALT": (["Boy", "Villain"], "!"),
    "FRIAR": (["Holy", "Hark"], "?"),
}
SUBJECTS = ["I", "we", "thou", "they", "she", "he"]
VERBS = ["saw", "found", "lost", "kept", "sought", "praised"]
NOUNS = {"rose": "red", "sword": "sharp", "moon": "pale", "ring": "golden", "letter": "sealed", "tomb": "cold",
         "garden": "green", "dagger": "bright"}
PLACES = ["Verona", "Mantua", "the orchard", "the chapel", "the market", "the balcony"]
PREPOSITIONS = ["in", "near", "beyond"]


def _pick(options, gen: torch.Generator):
    return options[int(torch.randint(len(options), (1,), generator=gen))]


def dialogue_line(gen: torch.Generator) -> str:
    """One dialogue block: 'SPEAKER:' then the turn, e.g. 'ROMEO:\\nAlas , JULIET ! I saw the rose in Verona ; the rose is red !'."""
    speaker = _pick(list(SPEAKERS), gen)
    greetings, close = SPEAKERS[speaker]
    other = _pick([s for s in SPEAKERS if s != speaker], gen)
    noun = _pick(list(NOUNS), gen)
    turn = (f"{_pick(greetings, gen)}, {other}! {_pick(SUBJECTS, gen)} {_pick(VERBS, gen)} the {noun} "
            f"{_pick(PREPOSITIONS, gen)} {_pick(PLACES, gen)}; the {noun} is {NOUNS[noun]}{close}")
    return f"{speaker}:\n{turn}"


def dialogue_data(seed: int, *, n_train: int = 2000, n_valid: int = 256) -> dict[str, list[str]]:
    """{"train": [block, ...], "valid": [block, ...]}: dialogue blocks from the grammar above."""
    gen = torch.Generator().manual_seed(int(seed))
    return {"train": [dialogue_line(gen) for _ in range(n_train)], "valid": [dialogue_line(gen) for _ in range(n_valid)]}


def dialogue_text(blocks: list[str]) -> str:
    """The blocks as one corpus, separated by blank lines (the layout of the handout's input.txt)."""
    return "\n\n".join(blocks) + "\n"


def vit_data(seed: int, *, n_train: int = 4096, n_test: int = 1024, image_size: int = 8, patch_size: int = 2,
             noise: float = 0.5) -> dict[str, torch.Tensor]:
    """Images (N, 3, S, S) of noise with one bright patch-aligned square; label (N,) = its quadrant (4 classes).

    Returns train_images, train_labels, test_images, test_labels.
    """
    gen = torch.Generator().manual_seed(int(seed))
    cells = image_size // patch_size
    half = cells // 2

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = noise * torch.randn(n, 3, image_size, image_size, generator=gen)
        rows = torch.randint(cells, (n,), generator=gen)
        cols = torch.randint(cells, (n,), generator=gen)
        colour = 1.0 + torch.rand(n, 3, generator=gen)  # a random colour: only the place carries the label
        for i in range(n):
            r, c = int(rows[i]) * patch_size, int(cols[i]) * patch_size
            images[i, :, r : r + patch_size, c : c + patch_size] += colour[i].view(3, 1, 1)
        labels = (rows >= half).long() * 2 + (cols >= half).long()
        return images, labels

    train_images, train_labels = split(n_train)
    test_images, test_labels = split(n_test)
    return {"train_images": train_images, "train_labels": train_labels,
            "test_images": test_images, "test_labels": test_labels}
