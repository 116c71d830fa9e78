"""The self-contained loader the released public tests embed (dlgrade/notebook/standalone.py).

It must need nothing but the standard library, work when its text is pasted into another file (as the
released conftest.py does), and make the same decisions as the grader's ``extract`` on the same notebooks.
"""

from __future__ import annotations

import ast
import json
import sys
import types
from pathlib import Path

import pytest
from fixtures.notebooks import make

from dlgrade import notebook
from dlgrade.config import load_assignment
from dlgrade.notebook import standalone

SOURCE = Path(standalone.__file__).read_text()
CASES = ["full_marks", "messy_colab", "blank", "missing_scale", "syntax_error", "raises", "forbidden", "images", "no_code"]


def embedded(tmp_path: Path) -> dict[str, object]:
    """The loader as the released conftest has it: the file's text in a module of its own, imported from a file."""
    import importlib.util

    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "released_conftest.py"
    path.write_text("# a copy of dlgrade/notebook/standalone.py, as the release embeds it\n" + SOURCE)
    spec = importlib.util.spec_from_file_location("released_conftest", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["released_conftest"] = mod
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.modules.pop("released_conftest", None)
    return vars(mod)


def test_the_loader_imports_only_the_standard_library() -> None:
    tree = ast.parse(SOURCE)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))


def _public(mod: types.ModuleType) -> dict[str, str]:
    return {k: type(v).__name__ for k, v in vars(mod).items() if not k.startswith("_")}


@pytest.mark.parametrize("case", CASES)
def test_the_embedded_loader_agrees_with_extract(case: str, tmp_path: Path) -> None:
    cfg = load_assignment("toy_nb", make.TOY_ROOT)
    spec = notebook.settings(cfg).spec("toy.ipynb")
    data = getattr(make, case)()
    path = tmp_path / "toy.ipynb"
    path.write_bytes(data)
    ex = notebook.extract(data, "toy.ipynb", notebook.settings(cfg))
    ns = embedded(tmp_path)
    built = ns["nb_build_module"](ns["nb_cells"](json.loads(data)), spec.prelude_source)  # type: ignore[operator]
    if not ex.readable:
        assert not any(s.kept for s in built.statements)
        return
    # the same module, cell by cell (only the header line differs), from the raw JSON instead of nbformat's reading
    assert built.source.split("\n", 1)[1] == ex.source.split("\n", 2)[2]
    graded = types.ModuleType("toy_graded")
    exec(compile(ex.source, "toy.py", "exec"), graded.__dict__)
    mine = ns["load_notebook_module"](str(path), "toy_student", prelude=spec.prelude_source)  # type: ignore[operator]
    try:
        assert _public(mine) == _public(graded) and "Adder" in _public(mine)
    finally:
        sys.modules.pop("toy_student", None)


def test_the_loader_runs_no_shell_escape_and_no_top_level_code(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    path = tmp_path / "hw.ipynb"
    path.write_bytes(make.hostile(markers))
    load = embedded(tmp_path / "released")["load_notebook_module"]
    try:
        load(str(path), "hostile_student")  # type: ignore[operator]
    finally:
        sys.modules.pop("hostile_student", None)
    ran = sorted(p.name for p in markers.iterdir())
    assert ran == ["default_ran"]  # a default argument runs when its def runs; nothing else did


def test_a_traceback_from_the_loaded_module_shows_the_source_line(tmp_path: Path) -> None:
    import traceback

    path = tmp_path / "toy.ipynb"
    path.write_bytes(make.raises())
    mod = embedded(tmp_path)["load_notebook_module"](str(path), "raising_student")  # type: ignore[operator]
    try:
        import torch

        with pytest.raises(ValueError) as err:
            mod.Adder(1)(torch.zeros(1))
        text = "".join(traceback.format_exception(err.value))
        assert "raise ValueError('not yet')" in text and "(graded part)" in text
    finally:
        sys.modules.pop("raising_student", None)
