"""Run the code cells of a notebook in order, in one namespace, without Jupyter.

    python run_notebook.py FOLDER [--notebook PATH] [--epochs N] [--threads N]

FOLDER holds the models and the given modules (a release folder, or a copy of the reference
with translation_data.py and training.py); it becomes the working directory and the first
entry of sys.path, as when the notebook is opened there. Cell output goes to stdout; a cell
that raises stops the run with the cell's number. Shell escapes and magics (`!`, `%`) are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

DEFAULT_NOTEBOOK = Path(__file__).resolve().parents[1] / "seq2seq_translation.ipynb"


def code_cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            cells.append("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%"))))
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--notebook", type=Path, default=DEFAULT_NOTEBOOK)
    parser.add_argument("--epochs", type=int, default=None, help="sets S2S_EPOCHS for the notebook")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    cells = code_cells(args.notebook)
    if args.epochs is not None:
        os.environ["S2S_EPOCHS"] = str(args.epochs)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    folder = args.folder.resolve()
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    namespace: dict[str, object] = {"__name__": "__main__"}
    start = time.time()
    for number, source in enumerate(cells, 1):
        try:
            exec(compile(source, f"<cell {number}>", "exec"), namespace)
        except Exception:
            print(f"\ncode cell {number} of {len(cells)} raised:", file=sys.stderr)
            raise
    print(f"\nran {len(cells)} code cells in {time.time() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
