"""Generated data for the graded training runs of scratch_rnn_seq2seq_vit (deterministic from a seed; nothing is
downloaded). Students may run this module too; it needs only torch (and rnn_vocab.py next to it).

- ``news_data``: short news-like snippets for the RNN classifier. Each snippet mixes filler words with topic words
  of several topics and always ends with a topic word and a full stop; the label is the topic of that *last* topic
  word. The earlier topic words are distractors, so counting words does not work: the model has to read the
  sequence at its own last real token. A model that reads the state after the padding instead has to carry the
  answer through a varying number of padding steps.
- ``translation_pairs``: a small parallel corpus for the Seq2Seq model. The target sentence is the word-by-word
  translation of the source, in *reverse* order, so the first target word depends on the last source word: an
  encoder-decoder without attention must squeeze the whole sentence into one state, one with attention can look
  the right source word up.
- ``square_images``: noisy RGB images with a red square filling one patch; the label is the quadrant that holds it.
  Only *where* the square is matters, so a Vision Transformer needs its position embedding (without it the patches are
  an unordered set and the model stays at chance), and the class token must gather it from the patches by attention.

Writers for the file formats the notebooks read (a news CSV/TSV, a tab-separated parallel corpus, CIFAR-10's binary
batches) are here as well, for tests that exercise the notebooks' loaders on small files.
"""

from __future__ import annotations

import csv
import random
import runpy
from pathlib import Path

import torch

_HERE = Path(__file__).resolve().parent
_VOCAB = runpy.run_path(str(_HERE / "rnn_vocab.py"))
TOPIC_WORDS: dict[int, list[str]] = _VOCAB["TOPIC_WORDS"]
FILLER_WORDS: list[str] = _VOCAB["FILLER_WORDS"]
TOPICS = ["World", "Sports", "Business", "Sci/Tech"]


# ----------------------------------------------------------------------------- news snippets (RNN)


def news_snippet(rng: random.Random, min_words: int = 3, max_words: int = 14,
                 distractor_rate: float = 0.35) -> tuple[int, str]:
    """(label 0..3, text): e.g. (1, "Officials said the treaty of the shares after stadium.")."""
    n = rng.randint(min_words, max_words)
    words = [rng.choice(TOPIC_WORDS[rng.randrange(4)]) if rng.random() < distractor_rate else rng.choice(FILLER_WORDS)
             for _ in range(n - 1)]
    label = rng.randrange(4)
    words.append(rng.choice(TOPIC_WORDS[label]))
    text = " ".join(words)
    return label, text[0].upper() + text[1:] + "."


def news_data(seed: int, *, n_train: int = 3000, n_test: int = 1000, min_words: int = 3, max_words: int = 14,
              distractor_rate: float = 0.35) -> dict[str, list[tuple[int, str]]]:
    """{"train": [(label, text), ...], "test": [...]}: snippets whose label is the topic of their last topic word."""
    rng = random.Random(int(seed))

    def many(n: int) -> list[tuple[int, str]]:
        return [news_snippet(rng, min_words, max_words, distractor_rate) for _ in range(n)]

    return {"train": many(n_train), "test": many(n_test)}


def write_news_csv(path: str | Path, rows: list[tuple[int, str]], *, title_column: bool = True,
                   delimiter: str = ",") -> None:
    """Rows in the layout of the AG News CSV files: a 1-based class index, then a title and a description (or, with
    ``title_column=False``, just the text). The title is the text's first three words."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=delimiter, quoting=csv.QUOTE_ALL if delimiter == "," else csv.QUOTE_MINIMAL)
        for label, text in rows:
            if title_column:
                words = text.split(" ")
                writer.writerow([str(label + 1), " ".join(words[:3]), " ".join(words[3:])])
            else:
                writer.writerow([str(label + 1), text])


# ----------------------------------------------------------------------------- parallel corpus (Seq2Seq)

SOURCE_WORDS = ["cat", "dog", "bird", "fish", "house", "tree", "river", "stone", "book", "letter", "bread", "milk",
                "red", "green", "small", "old", "sees", "finds", "eats", "gives", "near", "under", "today", "again"]
TARGET_WORDS = {w: t for w, t in zip(SOURCE_WORDS, [
    "chat", "chien", "oiseau", "poisson", "maison", "arbre", "fleuve", "pierre", "livre", "lettre", "pain", "lait",
    "rouge", "vert", "petit", "vieux", "voit", "trouve", "mange", "donne", "pres", "sous", "aujourdhui", "encore"],
    strict=True)}


def translation_pair(rng: random.Random, min_words: int = 3, max_words: int = 8) -> tuple[str, str]:
    """(source, target): the target is the word-by-word translation of the source in reverse order, each ending
    with a full stop, e.g. ("Cat sees red fish.", "Poisson rouge voit chat.")."""
    words = [rng.choice(SOURCE_WORDS) for _ in range(rng.randint(min_words, max_words))]
    target = [TARGET_WORDS[w] for w in reversed(words)]
    return " ".join(words).capitalize() + ".", " ".join(target).capitalize() + "."


def translation_pairs(seed: int, *, n_train: int = 2000, n_valid: int = 300, min_words: int = 3,
                      max_words: int = 8) -> dict[str, list[tuple[str, str]]]:
    """{"train": [(source, target), ...], "valid": [...]}."""
    rng = random.Random(int(seed))

    def many(n: int) -> list[tuple[str, str]]:
        return [translation_pair(rng, min_words, max_words) for _ in range(n)]

    return {"train": many(n_train), "valid": many(n_valid)}


def write_parallel_tsv(path: str | Path, pairs: list[tuple[str, str]], attribution: bool = True) -> None:
    """One pair per line, source and target separated by a tab (with a third attribution column, as in the
    Tatoeba/Anki downloads, when ``attribution``)."""
    with open(path, "w", encoding="utf-8") as f:
        for i, (src, trg) in enumerate(pairs):
            extra = f"\tCC-BY 2.0 (France) Attribution: tatoeba.org #{1000 + i} (generated)" if attribution else ""
            f.write(f"{src}\t{trg}{extra}\n")


# ----------------------------------------------------------------------------- positional images (ViT)


def square_images(seed: int, *, n_train: int = 4096, n_test: int = 1024, image_size: int = 8, patch_size: int = 2,
                  noise: float = 0.1) -> dict[str, torch.Tensor]:
    """{"train_images": (N, 3, S, S) float, "train_labels": (N,) long, "test_images", "test_labels"}.

    A red square fills one patch of a noisy image; the label is the quadrant of the image that holds it:
    2 * (in the bottom half) + (in the right half). Brightness and noise vary per image.
    """
    gen = torch.Generator().manual_seed(int(seed))
    grid = image_size // patch_size

    def make(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = noise * torch.randn(n, 3, image_size, image_size, generator=gen)
        cell = torch.randint(grid * grid, (n,), generator=gen)
        rows, cols = cell // grid, cell % grid  # the square's patch
        bright = 0.8 + 0.4 * torch.rand(n, generator=gen)
        within = torch.arange(image_size) // patch_size  # the patch row (or column) of each pixel row (or column)
        square = (within[None, :, None] == rows[:, None, None]) & (within[None, None, :] == cols[:, None, None])
        images[:, 0] += bright[:, None, None] * square  # red: channel 0
        return images, 2 * (rows >= grid // 2).long() + (cols >= grid // 2).long()

    train_images, train_labels = make(n_train)
    test_images, test_labels = make(n_test)
    return {"train_images": train_images, "train_labels": train_labels, "test_images": test_images,
            "test_labels": test_labels}


def write_cifar10_binary(folder: str | Path, images: torch.Tensor, labels: torch.Tensor, name: str) -> Path:
    """Records of CIFAR-10's binary version: one label byte, then 3 x 32 x 32 pixel bytes (the red, green and blue
    planes, each row by row). ``images`` are (N, 3, 32, 32) floats in [0, 1]."""
    path = Path(folder) / name
    pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).reshape(len(images), -1)
    records = torch.cat([labels.to(torch.uint8).reshape(-1, 1), pixels], dim=1)
    path.write_bytes(records.numpy().tobytes())
    return path
