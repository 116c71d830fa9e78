"""Notebook assignments in the release: the skeleton and reference notebooks built from a percent-format source."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from conftest import run_dlgrade
from fixtures.notebooks import make

from dlgrade import notebook
from dlgrade.config import load_assignment
from dlgrade.grade import grade_one
from dlgrade.markers import MarkerError
from dlgrade.notebook import percent
from dlgrade.release import build_submission, reference_sources, reference_submission, skeleton_files
from dlgrade.sandbox import get_backend


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    shutil.copytree(make.TOY_ROOT, tmp_path / "root")
    return tmp_path / "root"


def cells(data: bytes) -> list[tuple[str, str]]:
    nb = nbformat.reads(data.decode(), as_version=4)
    nbformat.validate(nb)
    return [(c.cell_type, c.source) for c in nb.cells]


def test_percent_sources_split_into_cells() -> None:
    text = ("# a header comment, not a cell\n\n# %% [markdown]\n# # Title\n#\n# Some *text*.\n\n# %% Setup tags=[\"given\"]\n"
            "import torch\n\n\n# %%\nx = 1\n# %% [raw]\n# raw text\n# %% [md]\n#no space\n")
    got = percent.parse(text)
    assert [(c.kind, c.source, c.tags) for c in got] == [
        ("markdown", "# Title\n\nSome *text*.", ()), ("code", "import torch", ("given",)), ("code", "x = 1", ()),
        ("raw", "raw text", ()), ("markdown", "no space", ())]
    assert [c.line for c in got] == [3, 8, 12, 14, 16]


def test_a_solution_region_may_not_cross_a_cell_boundary() -> None:
    with pytest.raises(MarkerError, match="not closed"):
        percent.skeleton_notebook("# %%\ndef f():\n    # BEGIN SOLUTION\n    return 1\n# %%\n    # END SOLUTION\n", "x.py")


def test_the_released_skeleton_notebook(root: Path, tmp_path: Path) -> None:
    cfg = load_assignment("toy_nb", root)
    data = skeleton_files(cfg)["toy.ipynb"]
    got = cells(data)
    assert got[0] == ("markdown", "# Toy notebook assignment\n\nWrite `Adder` and `scale`, then answer Question 1.")
    code = "\n".join(src for kind, src in got if kind == "code")
    assert "return x + self.offset" not in code and "self.offset = offset" not in code and "(x * WIDTH)" not in code
    assert 'raise NotImplementedError("forward: your code here")' in code and "# TODO: your code here\n        pass" in code
    assert ("markdown", "_Your answer here._") in got and "Because" not in data.decode()
    nb = json.loads(data)
    assert [c["id"] for c in nb["cells"]] == [f"cell-{i:03d}" for i in range(1, len(nb["cells"]) + 1)]
    assert nb["cells"][-1]["metadata"] == {"tags": ["public-test"]} and nb["metadata"]["kernelspec"]["name"] == "python3"
    # what the student starts from defines every name the grader asks for, and nothing in it is dropped by mistake
    ex = notebook.extract(data, "toy.ipynb", notebook.settings(cfg))
    assert ex.problems == () and {"Adder", "scale", "WIDTH"} <= set(ex.defined)


def test_release_and_reference_notebooks_are_byte_reproducible(root: Path, tmp_path: Path) -> None:
    env = {"DLGRADE_ROOT": str(root)}
    for out in ("a", "b"):
        proc = run_dlgrade("release", "toy_nb", "--out", str(tmp_path / out), env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = (tmp_path / d / "toy_nb" for d in ("a", "b"))
    assert (a / "student.zip").read_bytes() == (b / "student.zip").read_bytes()
    assert (a / "student" / "toy.ipynb").read_bytes() == skeleton_files(load_assignment("toy_nb", root))["toy.ipynb"]
    cfg = load_assignment("toy_nb", root)
    assert reference_submission(cfg) == reference_submission(cfg)


def test_the_reference_notebook_and_a_catalogued_bug_grade_as_expected(root: Path, tmp_path: Path) -> None:
    cfg = load_assignment("toy_nb", root)
    sources = reference_sources(cfg)
    assert "# BEGIN SOLUTION" not in sources["toy.ipynb"] and "return x + self.offset" in sources["toy.ipynb"]
    buggy = dict(sources, **{"toy.ipynb": sources["toy.ipynb"].replace("return x + self.offset", "return x + 2 * self.offset")})
    backend = get_backend("process")
    try:
        scores = {}
        for name, files in (("reference", reference_submission(cfg)), ("bug", build_submission(cfg, buggy)),
                            ("skeleton", {"toy.ipynb": skeleton_files(cfg)["toy.ipynb"]})):
            folder = tmp_path / "subs" / name
            folder.mkdir(parents=True)
            (folder / "toy.ipynb").write_bytes(files["toy.ipynb"])
            scores[name] = grade_one(cfg, backend, folder, 3, tmp_path / "out").score
    finally:
        backend.shutdown()
    assert scores == {"reference": 3, "bug": 1, "skeleton": 0}
    answers = json.loads((tmp_path / "out" / "reference" / "graded" / "notebooks.json").read_text())[0]["answers"]
    assert answers["1"].endswith("So that it can be combined with tensors on the same device.")


def test_py_assignments_release_as_before() -> None:
    from conftest import ROOT

    from dlgrade.markers import strip_solutions

    cfg = load_assignment("lstm_lm_vit", ROOT)
    files = skeleton_files(cfg)
    assert files["vit_solution.py"] == strip_solutions((cfg.reference_dir / "vit_solution.py").read_text()).encode()
    assert reference_sources(cfg)["lstm_solution.py"].encode() == reference_submission(cfg)["lstm_solution.py"]


@pytest.mark.slow
def test_validate_works_on_a_notebook_assignment(root: Path, tmp_path: Path) -> None:
    res = run_dlgrade("validate", "toy_nb", "--out", str(tmp_path / "v"), "--seed", "3", env={"DLGRADE_ROOT": str(root)})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    cases = {c["name"]: c for c in json.loads((tmp_path / "v" / "toy_nb" / "validate" / "validate.json").read_text())}
    assert {"reference", "skeleton", "bug-negated_offset", "bug-scale_off_by_one"} <= set(cases)
    assert all(c["ok"] for c in cases.values())
    assert cases["bug-negated_offset"]["score"] == 1 and cases["bug-scale_off_by_one"]["score"] == 2
    bug = next((tmp_path / "v" / "toy_nb" / "validate").rglob("bug-negated_offset/toy.ipynb"))
    assert "self.offset = -offset" in "".join(c.source for c in nbformat.reads(bug.read_text(), as_version=4).cells)
