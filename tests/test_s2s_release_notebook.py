"""The notebook of seq2seq_translation: current with its builder, valid nbformat v4, and it runs.

The slow test executes every code cell in order (notebook/run_notebook.py, no Jupyter) against
the reference models in a subprocess, with 2 epochs per model, and checks the results table.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
ADIR = ROOT / "assignments" / "seq2seq_translation"
NOTEBOOK = ADIR / "seq2seq_translation.ipynb"
REFERENCE = ROOT / "reference_solutions" / "seq2seq_translation"
MODELS = (
    "RNN",
    "RNN with attention",
    "LSTM",
    "LSTM with attention",
    "Seq2Seq tuned",
    "Transformer (encoder only)",
    "Transformer (full)",
    "Transformer (full) tuned",
)


def test_committed_notebook_matches_its_builder():
    run = subprocess.run([sys.executable, str(ADIR / "notebook" / "build_notebook.py"), "--check"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_notebook_is_valid_v4_with_the_expected_sections():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    headings = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "markdown"]
    for section in (
        "1. Setup and data",
        "2. Seq2Seq",
        "3. Seq2Seq: your tuned",
        "4. Transformers",
        "5. Transformer: your tuned",
        "6. Translations",
        "7. Results table",
    ):
        assert any(section in h for h in headings), section
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(r"^EPOCHS = ", code, re.M), "a variable at the top sets the epochs"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "the released notebook carries no outputs"


def release_like_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "seq2seq_translation"
    shutil.copytree(REFERENCE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("translation_data.py", "training.py"):
        shutil.copy(ADIR / name, folder / name)
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not (REFERENCE / "models" / "Transformer.py").is_file(), reason="the seq2seq reference is not there yet")
def test_notebook_runs_top_to_bottom_on_the_reference(tmp_path):
    folder = release_like_folder(tmp_path)
    run = subprocess.run(
        [sys.executable, str(ADIR / "notebook" / "run_notebook.py"), str(folder), "--epochs", "2", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {}
    for line in run.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in MODELS:
            rows[cells[0]] = [float(x) for x in cells[1:]]
    assert set(rows) == set(MODELS), run.stdout[-3000:]
    chance = 60.0  # target vocabulary ~ 44 tokens: a model that learnt nothing sits near it
    for name, (train_loss, train_ppl, valid_loss, valid_ppl) in rows.items():
        assert train_ppl == pytest.approx(math.exp(train_loss), rel=1e-3)
        assert valid_ppl == pytest.approx(math.exp(valid_loss), rel=1e-3)
        assert 1.0 <= valid_ppl < chance, name
    # after two epochs the Transformers are far ahead of the plain recurrent models
    assert rows["Transformer (encoder only)"][3] < rows["RNN"][3]
    assert "ran 10 code cells" in run.stdout
