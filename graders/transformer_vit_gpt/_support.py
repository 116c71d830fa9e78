"""What the transformer_vit_gpt suite shares (trusted side): the reference module, generated data, constants.

The reference is a notebook written as percent-format Python. It is imported the way a submitted notebook is
graded (``dlgrade.notebook.extract`` on the notebook built from it): only its imports and definitions run, after
the assignment's prelude, so the trusted side never downloads data or trains.
"""

from __future__ import annotations

import importlib.util
import types
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from dlgrade import notebook
from dlgrade.config import load_assignment
from dlgrade.notebook import percent

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "transformer_vit_gpt"
NOTEBOOK = "transformer_vit_gpt.ipynb"
MODULE = "transformer_vit_gpt"


def module_from_notebook(data: bytes, name: str) -> types.ModuleType:
    """The graded module of a notebook, imported here (trusted code only: the reference or a test's own)."""
    cfg = load_assignment(ASSIGNMENT, ROOT)
    ex = notebook.extract(data, NOTEBOOK, notebook.settings(cfg))
    if not ex.readable or ex.problems:
        raise RuntimeError(f"the notebook does not build: {ex.problems}")
    mod = types.ModuleType(name)
    mod.__file__ = f"<{name}>"
    exec(compile(ex.source, mod.__file__, "exec"), mod.__dict__)
    return mod


@lru_cache(maxsize=1)
def reference() -> types.ModuleType:
    """The reference module (cached for the whole grading run)."""
    source = (ROOT / "reference_solutions" / ASSIGNMENT / f"{MODULE}.py").read_text()
    return module_from_notebook(percent.reference_notebook(source, NOTEBOOK), f"_dlgrade_ref_{ASSIGNMENT}")


@lru_cache(maxsize=1)
def datagen() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"_dlgrade_{ASSIGNMENT}_datagen", ROOT / "assignments" / ASSIGNMENT / "datagen.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def name(cls: str) -> str:
    """The worker's name of a class of the notebook: ``AttentionHead`` -> ``transformer_vit_gpt.AttentionHead``."""
    return f"{MODULE}.{cls}"


def first(value: Any) -> Any:
    """forward() of DialogueGPT returns logits, or (logits, alphas) when asked; keep the logits."""
    return value[0] if isinstance(value, (tuple, list)) and value else value


def prefixes(params: dict[str, torch.Tensor], prefix_pattern: str) -> list[str]:
    """Distinct ``<owner>.<i>`` prefixes of parameter names matching ``<owner>.<i>.<rest>`` where rest starts with
    ``prefix_pattern`` (e.g. the heads of a MultiHeadedAttention: ``heads.0``, ``heads.1`` ...), in order."""
    out: list[str] = []
    for n in params:
        parts = n.split(".")
        for k in range(len(parts) - 1):
            if parts[k].isdigit() and ".".join(parts[k + 1:]).startswith(prefix_pattern):
                p = ".".join(parts[: k + 1])
                if p not in out:
                    out.append(p)
                break
    return out
