"""What the scratch_rnn_seq2seq_vit suite shares (trusted side): reference modules, generated data, recipes.

The references are notebooks written as percent-format Python. Each is imported the way a submitted notebook is
graded (``dlgrade.notebook.extract`` on the notebook built from it, with the assignment's prelude and globals): only
its imports and definitions run, so the trusted side never downloads data or trains.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlgrade import notebook
from dlgrade.config import load_assignment
from dlgrade.notebook import percent

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "scratch_rnn_seq2seq_vit"
ASSIGNMENT_DIR = ROOT / "assignments" / ASSIGNMENT


def module_from_notebook(data: bytes, notebook_name: str, name: str) -> types.ModuleType:
    """The graded module of a notebook, imported here (trusted code only: the reference or a test's own)."""
    cfg = load_assignment(ASSIGNMENT, ROOT)
    ex = notebook.extract(data, notebook_name, notebook.settings(cfg))
    if not ex.readable or ex.problems:
        raise RuntimeError(f"{notebook_name} does not build: {ex.problems}")
    mod = types.ModuleType(name)
    mod.__file__ = f"<{name}>"
    exec(compile(ex.source, mod.__file__, "exec"), mod.__dict__)
    return mod


@lru_cache(maxsize=3)
def reference(stem: str) -> types.ModuleType:
    """The reference module of ``hw4_rnn``, ``hw4_seq2seq`` or ``hw4_vit`` (cached for the whole grading run)."""
    source = (ROOT / "reference_solutions" / ASSIGNMENT / f"{stem}.py").read_text()
    return module_from_notebook(percent.reference_notebook(source, f"{stem}.ipynb"), f"{stem}.ipynb",
                                f"_dlgrade_ref_{ASSIGNMENT}_{stem}")


def _load(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@lru_cache(maxsize=1)
def datagen() -> types.ModuleType:
    return _load(ASSIGNMENT_DIR / "datagen.py", f"_dlgrade_{ASSIGNMENT}_datagen")


@lru_cache(maxsize=1)
def course_data() -> types.ModuleType:
    """The course's data module of Problem 2 (data/data.py, released to students as given code)."""
    return _load(ASSIGNMENT_DIR / "data" / "data.py", f"_dlgrade_{ASSIGNMENT}_data")


@lru_cache(maxsize=1)
def graded_vocab() -> dict[str, Any]:
    """The names rnn_vocab.py gives the RNN notebook (``vocab``, ``tokenizer``, ...), from the same file."""
    import runpy

    return runpy.run_path(str(ASSIGNMENT_DIR / "rnn_vocab.py"))


class TrustedContext:
    """What a recipe sees, on the trusted side: the reference modules instead of the student's."""

    device = torch.device("cpu")

    def module(self, name: str) -> types.ModuleType:
        return reference(name)

    def new(self, qualname: str, *args: Any, **kwargs: Any) -> Any:
        mod, _, attr = qualname.partition(".")
        return getattr(reference(mod), attr)(*args, **kwargs)

    def seed(self, n: int) -> None:
        random.seed(n)
        np.random.seed(n % 2**32)
        torch.manual_seed(n)


@lru_cache(maxsize=1)
def recipes() -> dict[str, Any]:
    """recipes.py's functions, for running a recipe on the reference (its shared loop registered as in the worker)."""
    from dlgrade.worker import training

    sys.modules.setdefault("dlgrade_training", training)
    namespace: dict[str, Any] = {"__name__": f"_dlgrade_{ASSIGNMENT}_recipes"}
    exec(compile((ASSIGNMENT_DIR / "recipes.py").read_text(), "recipes.py", "exec"), namespace)
    return namespace


def run_reference_recipe(name: str, **kwargs: Any) -> Any:
    return recipes()[name](TrustedContext(), **kwargs)


def tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor inside a returned value (tuples, lists and dicts, depth first, in order)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors(v)]
    return []
