"""The extraction rules, one by one: which statements of a notebook's code cells make up the graded module.

Each test builds a small notebook, extracts it (``dlgrade.notebook.extract``) and runs the graded module in a
fresh namespace, as the worker would import it.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from fixtures.notebooks import make
from fixtures.notebooks.make import md, notebook, v3_notebook

from dlgrade import notebook as nbmod
from dlgrade.config import load_assignment
from dlgrade.errors import ConfigError


def extract(*cells: str | tuple[str, str], settings: nbmod.Settings | None = None, **kw: object) -> nbmod.Extracted:
    return nbmod.extract(notebook(*cells, **kw), "hw.ipynb", settings)  # type: ignore[arg-type]


def load(ex: nbmod.Extracted) -> types.ModuleType:
    mod = types.ModuleType("hw")
    exec(compile(ex.source, "hw.py", "exec"), mod.__dict__)
    return mod


def names(ex: nbmod.Extracted) -> set[str]:
    return {n for n in vars(load(ex)) if not n.startswith("_")}


# ----------------------------------------------------------------------------- what is kept


def test_imports_definitions_and_constants_are_kept_and_the_rest_dropped() -> None:
    ex = extract("import math\nimport torch\nfrom torch import nn\n\nN = 4\nSHAPE = (N, 2 * N)\nNAMES = ['a', 'b']\n"
                 "LIMIT = -1e9\nINF = float('inf')\nROOT = math.sqrt(N)\nDTYPE = torch.float32\nCFG = {'n': N, 'f': N / 2}\n"
                 "print('hello')\nmodel = nn.Linear(N, N)\nfor i in range(10**9):\n    pass\nwith open('x') as f:\n    data = f.read()\n"
                 "if __name__ == '__main__':\n    def never(): pass\ntorch.backends.cudnn.benchmark = True\nCFG['lr'] = 0.1\n"
                 "def f(x):\n    return x + N\n\nclass C:\n    k = N\n")
    mod = load(ex)
    assert {n for n in vars(mod) if not n.startswith("_")} == {"math", "torch", "nn", "N", "SHAPE", "NAMES", "LIMIT", "INF",
                                                                "ROOT", "DTYPE", "CFG", "f", "C"}
    assert mod.SHAPE == (4, 8) and mod.ROOT == 2.0 and mod.CFG == {"n": 4, "f": 2.0} and mod.f(1) == 5 and mod.C.k == 4
    dropped = "\n".join(ex.dropped)
    for what in ("cell 1, line 13: a call of print()", "cell 1, line 14: an assignment that runs code, binding model",
                 "line 15: a for loop, binding i", "line 17: a with block, binding f, data", "line 19: an if block, binding never",
                 "line 21: an assignment that runs code", "line 22: an assignment that runs code"):
        assert what in dropped, what


def test_a_constant_reading_a_name_no_kept_cell_defines_is_dropped() -> None:
    ex = extract("vocab = build_vocab()", "PAD = vocab['<pad>']\nSIZE = len(vocab)\nN = 3\nM = N + 1\nK = M * undefined_name")
    assert names(ex) == {"N", "M"}


def test_device_comes_from_the_assignment_globals_not_from_the_notebook() -> None:
    spec = nbmod.NotebookSpec("hw.ipynb", globals={"device": "torch.device('cpu')"},
                              prelude_source=nbmod.prelude_source([], {"device": "torch.device('cpu')"}))
    ex = extract("import torch\ndevice = torch.device('cuda' if torch.cuda.is_available() else 'cpu')\nDEV = device",
                 settings=nbmod.Settings({"hw.ipynb": spec}))
    mod = load(ex)
    assert str(mod.device) == "cpu" and mod.DEV is mod.device
    assert "math" not in vars(mod) and "np" not in vars(mod)  # the globals' own imports stay private


def test_worker_device_is_the_device_the_worker_grades_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    spec = nbmod.NotebookSpec("hw.ipynb", globals={"device": "worker_device"},
                              prelude_source=nbmod.prelude_source([], {"device": "worker_device"}))
    settings = nbmod.Settings({"hw.ipynb": spec})
    assert load(extract("import torch", settings=settings)).device == torch.device("cpu")  # outside the grader
    monkeypatch.setenv("DLGRADE_DEVICE", "meta")  # set by the worker (dlgrade/worker/main.py) to cpu or cuda
    assert load(extract("import torch", settings=settings)).device == torch.device("meta")


def test_a_prelude_runs_before_the_cells_and_the_student_can_override_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "assignments" / "a").mkdir(parents=True)
    (root / "graders").mkdir()
    (root / "assignments" / "a" / "prelude.py").write_text("VOCAB = {'<pad>': 0, 'a': 1}\nMAX_LEN = 10\n")
    (root / "assignments" / "a" / "assignment.toml").write_text(
        'submit = ["hw.ipynb"]\n[notebook]\nprelude = "prelude.py"\n[notebook.globals]\nPAD = "VOCAB[\'<pad>\']"\n')
    st = nbmod.settings(load_assignment("a", root))
    ex = extract("MAX_LEN = 20\nPAD_ID = PAD\nSIZE = len(VOCAB)", settings=st)
    mod = load(ex)
    assert (mod.MAX_LEN, mod.PAD_ID, mod.SIZE) == (20, 0, 2)
    assert ex.locate(1) is None  # the prelude is not the student's code


def test_defaults_and_decorators_are_kept_and_run_when_the_module_is_imported() -> None:
    ex = extract("import functools\nCALLS = []\n\ndef deco(f):\n    CALLS.append(f.__name__)\n    return f\n\n"
                 "@deco\n@functools.lru_cache\ndef g(x, n=len(CALLS) + 1):\n    return x * n\n")
    mod = load(ex)
    assert mod.CALLS == ["g"] and mod.g(2) == 2  # the default was computed before the decorators ran


def test_a_cell_mixing_a_class_with_training_code_keeps_the_class() -> None:
    ex = extract("import torch.nn as nn\nclass Net(nn.Module):\n    def forward(self, x):\n        return x\n\n"
                 "net = Net()\nfor epoch in range(1000):\n    net.train()\nprint('done'); import os; net.eval()")
    assert names(ex) == {"nn", "Net", "os"}


def test_try_blocks_of_imports_and_fallbacks_are_kept_whole() -> None:
    ex = extract("try:\n    import google.colab\n    IN_COLAB = True\nexcept ImportError:\n    IN_COLAB = False\n\n"
                 "try:\n    import nltk\nexcept ImportError:\n    !pip install nltk\n    import nltk\n")
    mod = load(ex)
    assert mod.IN_COLAB is False
    assert "nltk" in vars(mod)  # the second try is not kept whole (it imports again), but its import is


def test_from_future_imports_are_moved_to_the_top() -> None:
    ex = extract("import torch", "from __future__ import annotations\n\ndef f(x: Undefined) -> Missing:\n    return x")
    assert ex.source.index("from __future__ import annotations") < ex.source.index("import torch")
    assert load(ex).f(3) == 3


# ----------------------------------------------------------------------------- IPython syntax


def test_shell_escapes_and_magics_never_reach_the_module(tmp_path: Path) -> None:
    m = tmp_path
    ex = extract(f"!touch {m}/a\n%matplotlib inline\n!pip install x \\\n   y\nfiles = !ls\nwho = %who_ls\nlen?\n??len\nN = 1",
                 f"%%bash\ntouch {m}/b", f"%%writefile helper.py\nopen('{m}/c', 'w')",
                 f"%%capture out\nimport os\ndef run():\n    !touch {m}/d\n    return 1\nos.system('touch {m}/e')",
                 f"%%time\nget_ipython().system('touch {m}/f')\nclass K: pass")
    mod = load(ex)
    assert {"N", "os", "run", "K", "files", "who"} <= set(vars(mod)) and mod.run() == 1
    assert "touch" not in ex.source and "pip" not in ex.source
    assert list(tmp_path.iterdir()) == []
    dropped = "\n".join(ex.dropped)
    assert "cell 2: a %%bash cell" in dropped and "cell 3: a %%writefile cell" in dropped
    assert "cell 1, line 1: a shell command (!touch" in dropped and "cell 1, line 2: an IPython magic (%matplotlib inline)" in dropped


def test_percent_signs_and_exclamation_marks_in_ordinary_python_are_untouched() -> None:
    ex = extract("FMT = '%d items'\nNOT = 1 != 2\nMOD = 7 % 3\nS = '''\n!not a shell line\n%not a magic\n'''")
    mod = load(ex)
    assert (mod.FMT, mod.NOT, mod.MOD) == ("%d items", True, 1) and "!not a shell line" in mod.S


# ----------------------------------------------------------------------------- the last definition wins


def test_the_last_definition_of_a_name_wins_and_the_earlier_is_dropped() -> None:
    ex = extract("class Model:\n    v = 1", "def make():\n    return Model()", "class Model:\n    v = 2\n\nWIDTH = 3",
                 "WIDTH = 4")
    mod = load(ex)
    assert mod.make().v == 2 and mod.WIDTH == 4
    assert "class Model:\n    v = 1" not in ex.source
    assert "cell 1, line 1: class Model, replaced by the class at cell 3, line 1" in ex.dropped
    assert "cell 3, line 4: constant WIDTH, replaced by the constant at cell 4, line 1" in ex.dropped


def test_an_earlier_definition_read_in_between_is_kept() -> None:
    ex = extract("class Base:\n    v = 1", "class Child(Base):\n    pass\n\ndef f(k=Base.v):\n    return k", "class Base:\n    v = 2",
                 "N = 1", "N += 1")
    mod = load(ex)
    assert mod.Child.v == 1 and mod.f() == 1 and mod.Base.v == 2 and mod.N == 2  # as when the notebook runs top to bottom


# ----------------------------------------------------------------------------- what the sandbox lacks


def test_a_failing_import_binds_a_stand_in_that_fails_only_when_used() -> None:
    ex = extract("import not_installed_course_utils as cu\nfrom not_installed_pkg import Thing, helper\n"
                 "import not_installed.sub\nfrom . import local\n"
                 "class Net(Thing):\n    pass\n\ndef uses():\n    return cu.load()\n\ndef fine():\n    return 1\nCMAP = cu.palette")
    mod = load(ex)
    assert mod.fine() == 1
    assert not hasattr(mod.cu, "__wrapped__") and repr(mod.cu) == "<not available in the grader>"
    with pytest.raises(ModuleNotFoundError, match=r"not_installed_course_utils is not available in the grader "
                                                 r"\(your notebook binds it at cell 1, line 1"):
        mod.uses()
    with pytest.raises(ModuleNotFoundError, match="not_installed_pkg.Thing is not available"):
        mod.Net()
    with pytest.raises(ModuleNotFoundError, match="CMAP is not available"):
        mod.CMAP()
    assert {"not_installed", "local", "helper"} <= set(vars(mod))


def test_tqdm_is_a_silent_pass_through() -> None:
    ex = extract("from tqdm.notebook import tqdm, trange\nimport tqdm as tq\n\n"
                 "def loop():\n    total = 0\n    bar = tqdm(range(3), desc='x')\n    for i in bar:\n        bar.set_postfix(i=i)\n"
                 "        total += i\n    for j in trange(2):\n        total += j\n    for k in tq.auto.tqdm([5]):\n        total += k\n"
                 "    with tqdm(total=3) as b:\n        b.update(1)\n    return total")
    assert load(ex).loop() == 9
    assert "if False:\n    from tqdm.notebook import tqdm" in ex.source  # still seen by the checks of imports


# ----------------------------------------------------------------------------- errors in cells


def test_a_cell_that_does_not_parse_is_left_out_and_named() -> None:
    ex = nbmod.extract(notebook("import torch\nN = 2", md("text"), "class A:\n    def f(self):\n        return (1\n\nclass B: pass",
                                "def g():\n    return N"),
                       "hw.ipynb", nbmod.Settings({"hw.ipynb": nbmod.NotebookSpec("hw.ipynb", provides=("A", "g"))}))
    assert names(ex) == {"torch", "N", "g"}
    assert ex.problems[0] == ("hw.ipynb cell 3, line 3 cannot be parsed ('(' was never closed); the cell was not graded, "
                              "so A, B from it are missing")
    assert "does not define A" in ex.problems[1] and "A is in cell 3, which cannot be parsed" in ex.problems[1]


def test_a_statement_the_compiler_rejects_is_left_out() -> None:
    ex = extract("class A:\n    yield 1", "def ok():\n    return 1")
    assert names(ex) == {"ok"}
    assert "cell 1, line 2 cannot be parsed ('yield' outside function)" in ex.problems[0]


def test_the_line_map_points_every_student_line_at_its_cell() -> None:
    cells = ["import torch\nX = 1  # a comment", md("between"), "print(1); Y = 2\n\n@staticmethod\ndef f(a,\n      b):\n    return a"]
    ex = extract(*cells)
    text = {1: cells[0].split("\n"), 3: cells[2].split("\n")}  # type: ignore[union-attr]
    lines = ex.source.split("\n")
    mapped = 0
    for k, line in enumerate(lines, 1):
        at = ex.line_map[k - 1] if k <= len(ex.line_map) else None
        if at is None or line.strip() in ("try:", "") or line.lstrip().startswith(("except", "torch =", "X =")):
            continue
        mapped += 1
        assert line.strip() in text[at[0]][at[1] - 1], (k, line, at)
    assert mapped >= 6
    assert ex.locate(lines.index("def f(a,") + 1) == "cell 3, line 4"


def test_the_student_code_leaves_out_what_the_grader_added() -> None:
    spec = nbmod.NotebookSpec("hw.ipynb", globals={"device": "'cpu'"}, prelude_source=nbmod.prelude_source([], {"device": "'cpu'"}))
    ex = extract("import not_installed\nN = 1", "def f():\n    return N", settings=nbmod.Settings({"hw.ipynb": spec}))
    code = ex.student_code()
    assert "import not_installed" in code and "def f():\n    return N" in code
    assert "_NbUnavailable" not in code and "_nb_globals" not in code and "# ---" not in code


def test_tracebacks_and_messages_are_rewritten_to_cells() -> None:
    ex = extract("import torch", "def f():\n    raise ValueError('x')")
    line = ex.source.split("\n").index("    raise ValueError('x')") + 1
    trace = f"  hw.py, line {line}, in f\n  hw.py, line 3, in _nb_fail"
    assert nbmod.map_locations(trace, {"hw.ipynb": ex}) == "  hw.ipynb, cell 2, line 2, in f"
    assert nbmod.map_locations("hw.py defines no 'g'", {"hw.ipynb": ex}) == "hw.ipynb defines no 'g'"
    assert nbmod.map_locations("other.py, line 3", {"hw.ipynb": ex}) == "other.py, line 3"


# ----------------------------------------------------------------------------- formats, outputs, answers


def test_format_3_is_converted_and_a_loosely_written_format_4_is_read() -> None:
    ex = nbmod.extract(v3_notebook("import torch\nN = 3", md("hi"), "def f():\n    return N"), "hw.ipynb")
    assert ex.readable and load(ex).f() == 3 and ex.locate(ex.source.split("\n").index("def f():") + 1) == "cell 3, line 1"
    assert ex.notes == ("hw.ipynb was in notebook format 3; it was converted to format 4",)
    loose = b'{"nbformat": 4, "nbformat_minor": 2, "metadata": {}, "cells": [{"cell_type": "code", "source": ["N = 1\\n", "M = 2"]}]}'
    ex = nbmod.extract(loose, "hw.ipynb")
    assert ex.readable and names(ex) == {"N", "M"} and "does not follow the notebook format" in ex.notes[0]
    broken = b'{"nbformat": 3, "worksheets": [{"cells": [{"cell_type": "code"}]}]}'
    ex = nbmod.extract(broken, "hw.ipynb")
    assert not ex.readable and "could not be converted" in ex.problems[0] and "Open it in Jupyter, save it" in ex.problems[0]


def test_without_nbformat_notebooks_are_read_as_plain_json(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    notebooks = (make.full_marks(), v3_notebook(make.IMPORTS + "\nWIDTH = 3", make.ADDER, make.SCALE))
    monkeypatch.setitem(sys.modules, "nbformat", None)  # as in an environment that lacks it: importing it fails
    for data in notebooks:
        ex = nbmod.extract(data, "toy.ipynb")
        assert ex.readable and {"Adder", "scale", "WIDTH"} <= set(ex.defined) and "plain JSON" in ex.notes[0]
    assert "format 2" in nbmod.extract(b'{"nbformat": 2, "worksheets": []}', "toy.ipynb").problems[0]


@pytest.mark.parametrize("data, message", [
    (b"", "hw.ipynb is empty"),
    (b"\xff\xfe\x00junk", "it is not a text file"),
    (b'{"cells": [', "it is not valid notebook JSON (line 1, column 12"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"a": 1}', "it is JSON but not a notebook"),
    (b'{"nbformat": 9, "cells": []}', "notebook format 9"),
    (b"import torch\n\ndef f():\n    return 1\n", "it is a Python script renamed to .ipynb"),
    (b'{"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}', "hw.ipynb has no code"),
])
def test_unreadable_notebooks_give_a_module_that_fails_with_the_reason(data: bytes, message: str) -> None:
    ex = nbmod.extract(data, "hw.ipynb")
    assert not ex.readable and message in ex.problems[0]
    with pytest.raises(ImportError, match="hw.ipynb"):
        load(ex)


def test_outputs_are_read_with_their_cell_numbers() -> None:
    from nbformat.v4 import new_output

    long = "".join(f"step {i}\n" for i in range(60_000)) + "final accuracy: 0.71\n"
    ex = extract(md("x"), "train()", "evaluate()", outputs={
        1: [new_output("stream", name="stdout", text="\x1b[32mepoch 1\x1b[0m\n"),
            new_output("execute_result", data={"text/plain": "0.5", "image/png": "AAAA"}, execution_count=3),
            new_output("error", ename="ValueError", evalue="bad", traceback=["\x1b[31mTraceback\x1b[0m", "ValueError: bad"])],
        2: [new_output("stream", name="stdout", text=long)]})
    assert [o.cell for o in ex.outputs] == [2, 3]
    assert ex.output_text(2) == "epoch 1\n0.5\nValueError: bad\nTraceback\nValueError: bad\n"
    assert ex.output_text(3).endswith("final accuracy: 0.71\n") and len(ex.output_text(3)) < 210_000
    assert ex.output_text().startswith("[cell 2]\nepoch 1")
    assert "step 1\n" not in ex.source and "AAAA" not in ex.source


def test_written_answers_are_found_by_their_question_labels() -> None:
    cells = [md("Answer Problem 1 (a) and Problem 2 below."), md("## Problem 1 (a)\nExplain attention."),
             md("My answer: it weighs values."), md("More of my answer."), "x = 1", md("Problem 1(b): and this?"),
             md("**Problem 10**: not question 1"), md("Intro.\n\n> **Problem 2.** A question with the answer typed in.")]
    answers, where = nbmod.find_answers([(i, k, s) for i, (k, s) in enumerate(
        [("markdown", c[1]) if isinstance(c, tuple) else ("code", c) for c in cells], 1)],
        {"1a": "problem 1 (a)", "1b": "Problem 1(b)", "2": "PROBLEM 2", "3": "Problem 3"})
    assert where == {"1a": (2, 3, 4), "1b": (6, 7), "2": (8,), "3": ()}
    assert answers["1a"].endswith("My answer: it weighs values.\n\nMore of my answer.") and answers["3"] == ""


# ----------------------------------------------------------------------------- settings


def _cfg(tmp_path: Path, toml: str) -> object:
    root = tmp_path / "root"
    (root / "assignments" / "a").mkdir(parents=True, exist_ok=True)
    (root / "graders").mkdir(exist_ok=True)
    (root / "assignments" / "a" / "assignment.toml").write_text('submit = ["hw.ipynb", "x.py"]\n' + toml)
    return load_assignment("a", root)


@pytest.mark.parametrize("toml, message", [
    ('[notebooks."other.ipynb"]\nprovides = ["A"]\n', "are not notebooks listed in submit"),
    ('[notebooks."hw.ipynb"]\nprovide = ["A"]\n', "unknown keys ['provide']"),
    ('[notebooks."hw.ipynb"]\nprovides = ["not a name"]\n', "provides must list Python names"),
    ('[notebook.globals]\ndevice = "torch.device("\n', "is not a Python expression"),
    ('[notebook]\nprelude = "missing.py"\n', "prelude file missing.py does not exist"),
    ('[notebook]\nglobal = {}\n', "[notebook]: a table with globals, prelude"),
])
def test_bad_notebook_settings_name_the_table(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(ConfigError, match="assignment.toml") as err:
        nbmod.settings(_cfg(tmp_path, toml))  # type: ignore[arg-type]
    assert message in str(err.value)


def test_settings_merge_the_shared_and_per_notebook_tables(tmp_path: Path) -> None:
    st = nbmod.settings(_cfg(tmp_path, '[notebook.globals]\ndevice = "torch.device(\'cpu\')"\nN = "1"\n'  # type: ignore[arg-type]
                             '[notebooks."hw.ipynb"]\nprovides = ["A"]\naccept = ["*.ipynb"]\n'
                             '[notebooks."hw.ipynb".globals]\nN = "2"\n[notebooks."hw.ipynb".questions]\n"1" = "Q1"\n'))
    spec = st.spec("hw.ipynb")
    assert spec.globals == {"device": "torch.device('cpu')", "N": "2"} and spec.accept == ("*.ipynb",)
    assert spec.questions == {"1": "Q1"} and spec.module_file == "hw.py" and list(st.notebooks) == ["hw.ipynb"]


def test_the_toy_assignment_settings() -> None:
    st = nbmod.settings(load_assignment("toy_nb", make.TOY_ROOT))
    assert st.spec("toy.ipynb").provides == ("Adder", "scale", "WIDTH")
