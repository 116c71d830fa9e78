"""Run-time detection of forbidden APIs, active only while a rule's scope runs.

Defence in depth behind the trusted side's static check. A rule names APIs (``torch.nn.LayerNorm``,
``torch.nn.functional.layer_norm``, patterns such as ``torch.nn.*Loss``) and a scope in one student module
(``LayerNorm``, ``MultiHeadedAttention.forward``; none = every class and function of the module). While code
of the scope runs, and everything it calls, the worker watches what actually runs:

- a torch function mode sees every torch function called, however it was reached (an alias, ``getattr``,
  ``torch.ops.aten.*``, ``torch._VF``): the banned functions are matched by identity, together with what a
  banned module runs underneath (``nn.LSTM`` runs ``torch.lstm``; every spelling of layer norm ends in
  ``torch.layer_norm`` or ``aten.native_layer_norm``), so a module class is caught by what its forward runs;
- banned module classes are also seen when they are constructed or called inside the scope.

Outside the scope nothing is watched: the course's given code may use the same APIs. A use is recorded
in :data:`USED` and the call goes on (nothing for the student's code to catch); every reply carries the
record, and the trusted side charges the tests of the rule's parts, whichever test saw the use.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import torch
from torch.overrides import TorchFunctionMode


class ForbiddenAPIUsed(Exception):
    """A forbidden API, as an error record (kept for the error classification of the dispatcher)."""

    def __init__(self, api: str, rule: str = "") -> None:
        super().__init__(f"{api} is not allowed here in this assignment")
        self.api = api
        self.rule = rule


USED: list[dict[str, str]] = []  # {"rule": id, "api": name}, in the order first seen

# What a module or function runs underneath: its functional and aten spellings, so that any way of
# reaching it is caught. "aten.x" names an operator of torch.ops.aten.
_RUNS: dict[str, tuple[str, ...]] = {
    "torch.nn.LayerNorm": ("torch.nn.functional.layer_norm",),
    "torch.nn.functional.layer_norm": ("torch.layer_norm", "aten.native_layer_norm", "aten.layer_norm"),
    "torch.layer_norm": ("aten.native_layer_norm", "aten.layer_norm"),
    "torch.native_layer_norm": ("aten.native_layer_norm",),
    "torch.nn.MultiheadAttention": ("torch.nn.functional.multi_head_attention_forward",),
    "torch.nn.functional.multi_head_attention_forward": ("aten._native_multi_head_attention",),
    "torch.nn.functional.scaled_dot_product_attention": (
        "aten.scaled_dot_product_attention", "aten._scaled_dot_product_attention_math",
        "aten._scaled_dot_product_flash_attention_for_cpu", "aten._scaled_dot_product_flash_attention",
        "aten._scaled_dot_product_efficient_attention", "aten._scaled_dot_product_cudnn_attention"),
    "torch.nn.TransformerEncoderLayer": ("torch.nn.MultiheadAttention",),
    "torch.nn.TransformerDecoderLayer": ("torch.nn.MultiheadAttention",),
    "torch.nn.RNN": ("aten.rnn_tanh", "aten.rnn_relu"),
    "torch.nn.LSTM": ("aten.lstm",),
    "torch.nn.GRU": ("aten.gru",),
    "torch.nn.RNNCell": ("aten.rnn_tanh_cell", "aten.rnn_relu_cell"),
    "torch.nn.LSTMCell": ("aten.lstm_cell", "aten._thnn_fused_lstm_cell"),
    "torch.nn.GRUCell": ("aten.gru_cell", "aten._thnn_fused_gru_cell"),
    "torch.nn.Dropout": ("torch.nn.functional.dropout",),
    "torch.nn.functional.dropout": ("aten.dropout", "aten.native_dropout"),
    "torch.nn.CrossEntropyLoss": ("torch.nn.functional.cross_entropy",),
    "torch.nn.functional.cross_entropy": ("aten.cross_entropy_loss",),
    "torch.nn.NLLLoss": ("torch.nn.functional.nll_loss",),
    "torch.nn.functional.nll_loss": ("aten.nll_loss", "aten.nll_loss_nd", "aten.nll_loss_forward", "aten.nll_loss2d_forward"),
}


@dataclass
class Resolved:
    """One rule's banned objects, found in this torch."""

    rule: str
    label: str
    functions: dict[int, str] = field(default_factory=dict)    # id(python callable or op packet) -> api name
    classes: dict[type, str] = field(default_factory=dict)     # banned nn.Module classes -> api name
    missing: list[str] = field(default_factory=list)


def _lookup(api: str) -> Any:
    """The object a dotted name (or ``aten.x``) stands for, or None."""
    if api.startswith("aten."):
        return getattr(torch.ops.aten, api[5:], None)
    parts = api.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj
    return None


def _expand(pattern: str) -> list[str]:
    """``torch.nn.*`` -> every public name in torch.nn that matches; plain names stay as they are."""
    head, _, tail = pattern.rpartition(".")
    if "*" not in tail and "?" not in tail:
        return [pattern]
    module = _lookup(head)
    if module is None:
        return []
    return [f"{head}.{n}" for n in sorted(dir(module)) if not n.startswith("_") and fnmatchcase(n, tail)
            and not isinstance(getattr(module, n, None), types.ModuleType)]


def resolve(rule: str, apis: list[str], allow: list[str]) -> Resolved:
    out = Resolved(rule, apis[0] if apis else rule)

    def allowed(name: str) -> bool:
        return any(fnmatchcase(name, a) for a in allow)

    todo = [(name, name) for pattern in apis for name in _expand(pattern)]
    seen: set[str] = set()
    while todo:
        name, shown = todo.pop()
        if name in seen or allowed(name):
            continue
        seen.add(name)
        obj = _lookup(name)
        if obj is None:
            if name in apis:
                out.missing.append(name)
            continue
        if isinstance(obj, torch._ops.OpOverloadPacket):
            out.functions[id(obj)] = shown
            for twin in (getattr(torch._C._VariableFunctions, name[5:], None), getattr(torch, name[5:], None)):
                if callable(twin):  # torch.lstm, torch._VF.lstm: what nn.LSTM's forward calls
                    out.functions[id(twin)] = shown
        elif isinstance(obj, type) and issubclass(obj, torch.nn.Module):
            out.classes[obj] = shown
        elif callable(obj):
            out.functions[id(obj)] = shown
        todo += [(n, shown) for n in _RUNS.get(name, ())]
    return out


# ----------------------------------------------------------------------------- watching


_ACTIVE: list[Resolved] = []
_BANNED: dict[int, tuple[Resolved, str]] = {}   # id(function) -> (rule, api), for the rules of _ACTIVE


def _rebuild() -> None:
    _BANNED.clear()
    for r in _ACTIVE:
        for key, name in r.functions.items():
            _BANNED.setdefault(key, (r, name))


def _refuse(r: Resolved, api: str) -> None:
    """Record the use; the call goes on. The trusted side charges the rule's parts (and only those): a
    LayerNorm built on torch's layer_norm costs the LayerNorm part, not every ViT test that runs it."""
    entry = {"rule": r.rule, "api": api}
    if entry not in USED:
        USED.append(entry)


class _FunctionWatch(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        hit = _BANNED.get(id(func))
        if hit is None and isinstance(func, torch._ops.OpOverload):  # torch.ops.aten.x.default
            hit = _BANNED.get(id(func.overloadpacket))
        if hit is not None:
            _refuse(*hit)
        return func(*args, **(kwargs or {}))


@contextmanager
def watching(rules: list[Resolved]) -> Iterator[None]:
    """Watch for the rules' APIs while the block runs (re-entrant; the mode is entered once)."""
    if not rules:
        yield
        return
    first = not _ACTIVE
    _ACTIVE.extend(rules)
    _rebuild()
    try:
        if first:
            with _FunctionWatch():
                yield
        else:
            yield
    finally:
        del _ACTIVE[len(_ACTIVE) - len(rules):]
        _rebuild()


def _scoped(fn: Callable[..., Any], rules: list[Resolved]) -> Callable[..., Any]:
    earlier = getattr(fn, "_dlgrade_scoped", None)
    if earlier is not None:  # a second rule over the same scope: one wrapper watching both
        fn, rules = fn.__wrapped__, [*earlier, *(r for r in rules if r not in earlier)]  # type: ignore[attr-defined]

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with watching(rules):
            return fn(*args, **kwargs)

    run._dlgrade_scoped = rules  # type: ignore[attr-defined]
    return run


def _guard_class(cls: type) -> None:
    """A banned module class refuses construction and calls while a scope that bans it is active."""
    if cls.__dict__.get("_dlgrade_guarded"):
        return

    def check() -> None:
        for r in reversed(_ACTIVE):
            for banned, name in r.classes.items():
                if issubclass(cls, banned):
                    _refuse(r, name)

    for attr in ("__init__", "forward"):
        original = cls.__dict__.get(attr)
        if original is None:
            continue

        def wrapped(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if _ACTIVE:
                check()
            return _original(self, *args, **kwargs)

        functools.update_wrapper(wrapped, original)
        setattr(cls, attr, wrapped)
    cls._dlgrade_guarded = True  # type: ignore[attr-defined]


def _scope_targets(module: types.ModuleType, scope: list[str]) -> list[tuple[Any, str, Any]]:
    """(owner, attribute, value) of every callable a scope covers in a module."""
    def own(obj: Any) -> bool:
        return getattr(obj, "__module__", None) == module.__name__

    names = scope or [n for n, v in vars(module).items() if (inspect.isfunction(v) or inspect.isclass(v)) and own(v)]
    out: list[tuple[Any, str, Any]] = []
    for qualname in names:
        head, _, method = qualname.partition(".")
        obj = getattr(module, head, None)
        if obj is None:
            continue
        if inspect.isclass(obj):
            members = [method] if method else [n for n, v in vars(obj).items()
                                               if inspect.isfunction(v) or isinstance(v, (staticmethod, classmethod))]
            out += [(obj, m, vars(obj)[m]) for m in members if m in vars(obj)]
            if not method and issubclass(obj, torch.nn.Module):
                out.append((obj, "__call__", obj.__call__))  # inherited forwards run inside the scope too
        elif inspect.isfunction(obj) and not method:
            out.append((module, head, obj))
    return out


def arm(module: types.ModuleType, scope: list[str], rules: list[Resolved]) -> None:
    """Make the scope's functions and methods run under the rules' watch."""
    for r in rules:
        for cls in r.classes:
            _guard_class(cls)
    for owner, attr, value in _scope_targets(module, scope):
        if isinstance(value, staticmethod):
            setattr(owner, attr, staticmethod(_scoped(value.__func__, rules)))
        elif isinstance(value, classmethod):
            setattr(owner, attr, classmethod(_scoped(value.__func__, rules)))
        elif callable(value):
            setattr(owner, attr, _scoped(value, rules))
