"""Build `seq2seq_translation.ipynb`, the notebook of the student release, with nbformat.

    python assignments/seq2seq_translation/notebook/build_notebook.py          # write it
    python assignments/seq2seq_translation/notebook/build_notebook.py --check  # is the committed one current?

The notebook is committed next to the handout (the release ships it as a given file); this
script is its source. It trains every model of the assignment with `training.py` on the
generated corpus of `translation_data.py` and ends with the results table of the writeup.
The first code cell sets the number of epochs (environment variable S2S_EPOCHS overrides it,
which the tests use to run it quickly).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "seq2seq_translation.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "md",
        """# Machine translation: Seq2Seq and Transformers

This notebook trains every model of the assignment on the generated translation task and prints
the numbers the writeup asks for. Run it top to bottom once your files pass the public tests
(`python -m pytest public_tests`).

Sections:
1. Setup and data
2. Seq2Seq: RNN and LSTM, without and with attention
3. Seq2Seq: your tuned model
4. Transformers: encoder-only and full
5. Transformer: your tuned model
6. Translations
7. Results table""",
    ),
    ("md", "## 1. Setup and data"),
    (
        "code",
        """import math
import os
import time

import torch
from training import evaluate, make_criterion, train_epoch, translate
from translation_data import PAD, batches, make_dataset, translate_toy

EPOCHS = int(os.environ.get("S2S_EPOCHS", "10"))  # epochs for every model; raise it for final numbers
BATCH_SIZE = 128
SEED = 0
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

torch.manual_seed(SEED)
data = make_dataset(seed=SEED)
print(f"device {DEVICE}, {EPOCHS} epochs per model")
print(f"{len(data.train_src)} training pairs, {len(data.valid_src)} validation pairs, max_length {data.max_length}")
print(f"vocabularies: {len(data.src_vocab)} source tokens, {len(data.tgt_vocab)} target tokens")""",
    ),
    (
        "code",
        """# A few training pairs: the source puts the verb last, the target puts it second.
for i in range(4):
    src_words = data.src_vocab.decode(data.train_src[i])
    print(" ".join(src_words), "  ->  ", " ".join(data.tgt_vocab.decode(data.train_tgt[i])))
    assert translate_toy(src_words) == data.tgt_vocab.decode(data.train_tgt[i])""",
    ),
    (
        "code",
        """RESULTS = {}  # name -> final losses and perplexities, for the table at the end
HISTORY = {}  # name -> per-epoch validation perplexity, for the learning curves


def fit(name, model, kind, lr, epochs=None):
    \"\"\"Train `model` with Adam, print loss and perplexity per epoch, and record the final numbers.\"\"\"
    epochs = EPOCHS if epochs is None else epochs
    model = model.to(DEVICE)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    criterion = make_criterion(kind)
    HISTORY[name] = []
    start = time.time()
    for epoch in range(1, epochs + 1):
        train_loss = train_epoch(model, kind, batches(data.train_src, data.train_tgt, BATCH_SIZE, True, SEED + epoch),
                                 optimizer, criterion, DEVICE)
        valid_loss, valid_ppl = evaluate(model, kind, batches(data.valid_src, data.valid_tgt, 256, False), criterion, DEVICE)
        HISTORY[name].append(valid_ppl)
        print(f"{name:32s} epoch {epoch:2d}  train loss {train_loss:.4f}  valid loss {valid_loss:.4f}  valid ppl {valid_ppl:.3f}")
    RESULTS[name] = dict(train_loss=train_loss, train_ppl=math.exp(train_loss), valid_loss=valid_loss, valid_ppl=valid_ppl,
                         seconds=time.time() - start)
    return model""",
    ),
    ("md", "## 2. Seq2Seq: RNN and LSTM, without and with attention\n\nDefault hyper-parameters."),
    (
        "code",
        """from models.seq2seq.Decoder import Decoder
from models.seq2seq.Encoder import Encoder
from models.seq2seq.Seq2Seq import Seq2Seq


def seq2seq(model_type, attention, emb_size=32, hidden_size=64, dropout=0.2):
    torch.manual_seed(SEED)
    encoder = Encoder(len(data.src_vocab), emb_size, hidden_size, hidden_size, dropout=dropout, model_type=model_type)
    decoder = Decoder(emb_size, hidden_size, hidden_size, len(data.tgt_vocab), dropout=dropout, model_type=model_type,
                      attention=attention)
    return Seq2Seq(encoder, decoder, DEVICE)


SEQ2SEQ_LR = 1e-3
for model_type in ("RNN", "LSTM"):
    for attention in (False, True):
        name = model_type + (" with attention" if attention else "")
        fit(name, seq2seq(model_type, attention), "seq2seq", SEQ2SEQ_LR)""",
    ),
    (
        "md",
        """## 3. Seq2Seq: your tuned model

Change the hyper-parameters below (sizes, dropout, learning rate, ...; not only the epochs or the
model type) and explain in the writeup what you tried and why.""",
    ),
    (
        "code",
        """TUNED_SEQ2SEQ = dict(model_type="LSTM", attention=True, emb_size=64, hidden_size=128, dropout=0.1)
TUNED_SEQ2SEQ_LR = 3e-3
best_seq2seq = fit("Seq2Seq tuned", seq2seq(**TUNED_SEQ2SEQ), "seq2seq", TUNED_SEQ2SEQ_LR)""",
    ),
    ("md", "## 4. Transformers: encoder-only and full\n\nDefault hyper-parameters."),
    (
        "code",
        """from models.Transformer import FullTransformerTranslator, TransformerTranslator

TRANSFORMER_LR = 1e-3
encoder_only = fit("Transformer (encoder only)",
                   TransformerTranslator(len(data.src_vocab), len(data.tgt_vocab), DEVICE, max_length=data.max_length),
                   "encoder", TRANSFORMER_LR)

torch.manual_seed(SEED)
full = fit("Transformer (full)",
           FullTransformerTranslator(len(data.src_vocab), len(data.tgt_vocab), DEVICE, max_length=data.max_length,
                                     ignore_index=PAD),
           "full", TRANSFORMER_LR)""",
    ),
    ("md", "## 5. Transformer: your tuned model\n\nTune the full Transformer the same way."),
    (
        "code",
        """TUNED_FULL = dict(hidden_dim=128, num_heads=4, dim_feedforward=512, num_layers_enc=2, num_layers_dec=2, dropout=0.1)
TUNED_FULL_LR = 5e-4
torch.manual_seed(SEED)
best_full = fit("Transformer (full) tuned",
                FullTransformerTranslator(len(data.src_vocab), len(data.tgt_vocab), DEVICE, max_length=data.max_length,
                                          ignore_index=PAD, **TUNED_FULL),
                "full", TUNED_FULL_LR)""",
    ),
    (
        "md",
        """## 6. Translations

Greedy translations of the first validation sentences. Seq2Seq and the full Transformer decode
from their own predictions; the encoder-only Transformer predicts every position at once.""",
    ),
    (
        "code",
        """def show_translations(name, model, kind, n=5):
    guesses = translate(model, kind, data.valid_src[:n], DEVICE)
    print(name)
    for i in range(n):
        print("  source   :", " ".join(data.src_vocab.decode(data.valid_src[i])))
        print("  reference:", " ".join(data.tgt_vocab.decode(data.valid_tgt[i])))
        print("  model    :", " ".join(data.tgt_vocab.decode(guesses[i])))


show_translations("Seq2Seq tuned", best_seq2seq, "seq2seq")
show_translations("Transformer (encoder only)", encoder_only, "encoder")
show_translations("Transformer (full) tuned", best_full, "full")""",
    ),
    (
        "code",
        """# Learning curves (validation perplexity per epoch) for the writeup, when matplotlib is installed.
try:
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
    print("matplotlib is not installed: no plot (pip install matplotlib)")
if plt is not None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, curve in HISTORY.items():
        ax.plot(range(1, len(curve) + 1), curve, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation perplexity")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    plt.show()""",
    ),
    ("md", "## 7. Results table\n\nCopy these numbers into `writeup_template.md`."),
    (
        "code",
        """def results_table(results):
    lines = ["| model | training loss | training perplexity | validation loss | validation perplexity |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['train_loss']:.4f} | {r['train_ppl']:.4f} | {r['valid_loss']:.4f} | {r['valid_ppl']:.4f} |")
    return "\\n".join(lines)


print(results_table(RESULTS))""",
    ),
]


def build() -> nbformat.NotebookNode:
    cells = [new_markdown_cell(src) if kind == "md" else new_code_cell(src) for kind, src in CELLS]
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"  # fixed ids: the same source gives the same file
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return nb


def render() -> str:
    return nbformat.writes(build(), version=4) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed notebook differs from a fresh build")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run {Path(__file__).name}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(CELLS)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
