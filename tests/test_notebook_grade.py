"""Notebook submissions graded end to end with ``dlgrade grade`` on a toy assignment (tests/fixtures/notebooks/toy_root).

One batch holds a submission for every case: full marks written cleanly, as a messy Colab notebook, in the old
format 3 and with 30 MB of image outputs; and each failure (malformed JSON, a renamed .py, no code, a missing
name, a cell that does not parse, code that raises, a forbidden API, a hostile notebook). Every student gets a
valid results file with the affected parts at 0 and a message that points into the notebook.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from conftest import CliRun, check_gradescope, run_dlgrade, write_files
from fixtures.notebooks import make

pytestmark = pytest.mark.slow


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[CliRun, Path]:
    tmp = tmp_path_factory.mktemp("nbgrade")
    root = tmp / "root"
    shutil.copytree(make.TOY_ROOT, root)
    marker = tmp / "markers"
    marker.mkdir()
    klass = tmp / "class"
    subs = {
        "full": make.full_marks(), "v3": make.v3_notebook(make.IMPORTS + "\nWIDTH = 3", make.ADDER, make.SCALE),
        "images": make.images(30), "malformed": make.full_marks()[:-200], "renamed": b"import torch\n\n" + make.SCALE.encode(),
        "no_code": make.no_code(), "missing_scale": make.missing_scale(), "syntax_error": make.syntax_error(),
        "raises": make.raises(), "forbidden": make.forbidden(), "hostile": make.hostile(marker), "blank": make.blank(),
    }
    for student, data in subs.items():
        write_files({"toy.ipynb": data}, klass / student)
    # a Colab download, zipped with macOS and Jupyter junk next to it
    klass.mkdir(exist_ok=True)
    _zip(klass / "messy.zip", {"messy/Copy of toy.ipynb": make.messy_colab(), "__MACOSX/messy/._Copy of toy.ipynb": b"\0\5",
                               "messy/.ipynb_checkpoints/toy-checkpoint.ipynb": make.blank()})
    out = tmp / "out"
    proc = run_dlgrade("grade", "toy_nb", str(klass), "--out", str(out), "--seed", "5", timeout=600,
                       env={"DLGRADE_ROOT": str(root)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return CliRun(proc.returncode, proc.stdout, proc.stderr, out), marker


def _get(batch: tuple[CliRun, Path], student: str) -> dict[str, Any]:
    data = batch[0].results(student)
    check_gradescope(data)
    return data


def _parts(data: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in data["extra_data"]["tests"]:
        out[t["part"]] = out.get(t["part"], 0.0) + t["score"]
    return out


def _outputs(data: dict[str, Any], part: str) -> str:
    return "\n".join(t["output"] for t in data["extra_data"]["tests"] if t["part"] == part)


@pytest.mark.parametrize("student", ["full", "messy", "v3", "images"])
def test_full_marks(batch, student: str) -> None:  # type: ignore[no-untyped-def]
    data = _get(batch, student)
    assert data["score"] == 3, [t["output"] for t in data["tests"]]
    graded = batch[0].out / student / "graded"
    assert "class Adder" in (graded / "toy.py").read_text()
    summary = json.loads((graded / "notebooks.json").read_text())[0]
    assert summary["notebook"] == "toy.ipynb" and summary["readable"]


def test_messy_colab_notebook_is_graded_from_its_last_definitions(batch) -> None:  # type: ignore[no-untyped-def]
    data = _get(batch, "messy")
    assert "toy.ipynb was not found; graded messy/Copy of toy.ipynb instead" in data["output"]
    summary = json.loads((batch[0].out / "messy" / "graded" / "notebooks.json").read_text())[0]
    dropped = "\n".join(summary["dropped"])
    for what in ("!pip install", "!wget", "a call of mount()", "%tensorboard", "a for loop", "a %%bash cell",
                 "class Adder, replaced by the class at cell 7, line 1"):
        assert what in dropped, what
    assert summary["answers"]["1"].endswith("Because tensors must be on the same device.")
    graded = (batch[0].out / "messy" / "graded" / "toy.py").read_text()
    assert "time.sleep" not in graded and "return x - self.offset" not in graded and "nvidia-smi" not in graded


def test_a_30_mb_notebook_of_images_is_read_without_its_outputs(batch) -> None:  # type: ignore[no-untyped-def]
    assert (batch[0].out / "images" / "graded" / "toy.py").stat().st_size < 20_000
    assert "image/png" not in (batch[0].out / "images" / "graded" / "toy.py").read_text()


@pytest.mark.parametrize("student, message", [
    ("malformed", "toy.ipynb could not be read: it is not valid notebook JSON"),
    ("renamed", "toy.ipynb could not be read: it is a Python script renamed to .ipynb"),
    ("no_code", "toy.ipynb has no code"),
])
def test_unreadable_notebooks_score_zero_with_the_reason(batch, student: str, message: str) -> None:  # type: ignore[no-untyped-def]
    data = _get(batch, student)
    assert data["score"] == 0
    assert message in data["output"]
    for t in data["tests"]:  # each test says why, too
        assert message in t["output"], t["output"]


def test_a_missing_name_costs_its_part_and_is_named(batch) -> None:  # type: ignore[no-untyped-def]
    data = _get(batch, "missing_scale")
    assert _parts(data) == {"adder": 2, "scale": 0}
    assert "toy.ipynb does not define scale; each must be defined in a code cell" in data["output"]
    assert "scale is bound at cell 3, line 1 by an if block" in data["output"]


def test_a_cell_that_does_not_parse_costs_only_what_it_defines(batch) -> None:  # type: ignore[no-untyped-def]
    data = _get(batch, "syntax_error")
    assert _parts(data) == {"adder": 2, "scale": 0}
    assert "toy.ipynb cell 3, line 2 cannot be parsed" in data["output"]


def test_a_traceback_points_at_the_cell_and_line(batch) -> None:  # type: ignore[no-untyped-def]
    data = _get(batch, "raises")
    assert _parts(data) == {"adder": 0, "scale": 1}
    out = _outputs(data, "adder")
    assert "toy.ipynb, cell 2, line 7, in forward" in out and "ValueError: not yet" in out
    assert "toy.py" not in out


def test_a_forbidden_api_is_reported_at_its_cell(batch) -> None:  # type: ignore[no-untyped-def]
    data = _get(batch, "forbidden")
    assert _parts(data) == {"adder": 0, "scale": 1}
    assert "toy.ipynb cell 2, line 5 (in Adder.__init__) uses torch.nn.Linear" in data["output"]


def test_a_hostile_notebook_scores_no_more_than_a_blank_one(batch) -> None:  # type: ignore[no-untyped-def]
    blank, hostile = _get(batch, "blank"), _get(batch, "hostile")
    assert hostile["score"] <= blank["score"] == 0
    marker = batch[1]
    for name in ("shell_ran", "bash_ran", "top_level_ran", "open_ran", "ipython_ran"):
        assert not (marker / name).exists(), name
    graded = (batch[0].out / "hostile" / "graded" / "toy.py").read_text()
    assert "rm -rf" not in graded and "touch" not in graded and "allclose" not in graded


def test_the_graded_modules_are_for_the_instructor_only(batch) -> None:  # type: ignore[no-untyped-def]
    data = _get(batch, "full")
    assert "graded" not in json.dumps(data["tests"])
    rows = (batch[0].out / "grades.csv").read_text().splitlines()
    assert len(rows) == 1 + 13  # every student of the batch, including the unreadable ones
    assert os.path.isfile(batch[0].out / "full" / "graded" / "toy.py")
