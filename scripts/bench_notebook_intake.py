"""Time notebook intake: a notebook of image outputs (30 MB by default), a long code-only notebook, and a .py submission.

    .venv/bin/python scripts/bench_notebook_intake.py [--mb 30] [--repeat 7]

Each case is read with ``dlgrade.intake.read_submission`` (folder and zip) on a throw-away toy assignment; the
table shows the median and the slowest of ``--repeat`` runs, after one warm-up run (the first notebook read also
pays nbformat's import, shown on its own line). Numbers depend on the machine's load: re-run on a quiet machine.
"""

from __future__ import annotations

import argparse
import base64
import random
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from dlgrade import intake
from dlgrade.config import find_root, load_assignment

CLASS = ("class Block{i}(nn.Module):\n    def __init__(self, dim):\n        super().__init__()\n"
         "        self.fc = nn.Linear(dim, dim)\n\n    def forward(self, x):\n        return torch.relu(self.fc(x)) + x\n")


def image_notebook(megabytes: int) -> bytes:
    rng = random.Random(0)
    png = base64.b64encode(bytes(rng.getrandbits(8) for _ in range(300_000))).decode()
    cells = [new_code_cell("import torch\nimport torch.nn as nn\nimport matplotlib.pyplot as plt"), new_code_cell(CLASS.format(i=0))]
    for i in range(max(1, megabytes * 1_000_000 // len(png))):
        c = new_code_cell(f"plt.imshow(torch.rand(32, 32)); plt.title('epoch {i}'); plt.show()")
        c.outputs = [new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})]
        cells.append(c)
    return nbformat.writes(new_notebook(cells=cells)).encode()


def code_notebook(n: int) -> bytes:
    cells = [new_code_cell("import torch\nimport torch.nn as nn\n!pip install -q tqdm\n%matplotlib inline")]
    for i in range(n):
        cells += [new_markdown_cell(f"## Part {i}"), new_code_cell(CLASS.format(i=i) + f"\nmodel = Block{i}(8)\nprint(model)")]
    return nbformat.writes(new_notebook(cells=cells)).encode()


def toy_root(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "assignments" / "nb").mkdir(parents=True)
    (root / "graders").mkdir()
    (root / "assignments" / "nb" / "assignment.toml").write_text('submit = ["hw.ipynb"]\n[notebooks."hw.ipynb"]\nprovides = ["Block0"]\n')
    return root


def timed(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), max(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=30, help="size of the image notebook in MB")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dlgrade-bench-nb-"))
    cfg = load_assignment("nb", toy_root(tmp))
    cases = {f"{args.mb} MB of image outputs": image_notebook(args.mb), "200 code cells, no outputs": code_notebook(200)}
    rows = []
    first = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); import nbformat; "
                            "print(time.perf_counter() - t)"], capture_output=True, text=True, check=True)
    rows.append(("nbformat import (once per process)", "", float(first.stdout), float(first.stdout)))
    for label, data in cases.items():
        folder = tmp / label.replace(" ", "_")
        folder.mkdir()
        (folder / "hw.ipynb").write_bytes(data)
        zpath = tmp / f"{folder.name}.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.write(folder / "hw.ipynb", "student/Copy of hw.ipynb")
        got = intake.read_submission(folder, cfg)
        assert got.notebooks["hw.ipynb"].readable and not got.problems, got.problems
        for how, path in (("folder", folder), ("zip", zpath)):
            med, worst = timed(lambda path=path: intake.read_submission(path, cfg), args.repeat)
            rows.append((f"{label} ({len(data) / 1e6:.1f} MB)", how, med, worst))
    py_cfg = load_assignment("lstm_lm_vit", find_root())
    py_sub = tmp / "py"
    py_sub.mkdir()
    for name in py_cfg.submit:
        (py_sub / name).write_text((py_cfg.reference_dir / name).read_text())
    med, worst = timed(lambda: intake.read_submission(py_sub, py_cfg), args.repeat)
    rows.append(("lstm_lm_vit .py submission (unchanged path)", "folder", med, worst))
    print(f"{'case':<48} {'from':<7} {'median':>9} {'slowest':>9}")
    for label, how, med, worst in rows:
        print(f"{label:<48} {how:<7} {med * 1000:>7.1f}ms {worst * 1000:>7.1f}ms")


if __name__ == "__main__":
    main()
