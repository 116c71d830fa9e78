"""The worker's request handler: imports the submission and executes what it is asked.

Every request is a dict with an ``op``; every reply is ``{"ok": True, "value": ...}`` or
``{"ok": False, "error": {...}}``. Objects that are not plain data stay here and travel as
handles. Errors are classified (import, missing, student, forbidden, exit, memory, request)
so that the trusted side can word a specific message.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import os
import random
import sys
import traceback
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from dlgrade.protocol import Handle
from dlgrade.worker import guards, training

MAX_MESSAGE = 2000


class RequestError(Exception):
    """The request itself cannot be served (unknown op, bad handle, missing name)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class RecipeContext:
    """What a recipe sees: the student's modules, a device and a way to seed."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._d = dispatcher
        self.device = dispatcher.device

    def module(self, name: str) -> types.ModuleType:
        return self._d.module(name)

    def new(self, qualname: str, *args: Any, **kwargs: Any) -> Any:
        return self._d.resolve(qualname)(*args, **kwargs)

    def seed(self, n: int) -> None:
        _seed_all(n)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Dispatcher:
    def __init__(self, submission_dir: str, modules: list[str], device: str = "cpu", blocked: list[str] | None = None,
                 rules: list[dict[str, Any]] | None = None) -> None:
        self.submission_dir = os.path.realpath(submission_dir)
        self.allowed_modules = set(modules)
        self.device = torch.device(device)
        self.handles: dict[int, Any] = {}
        self.next_id = 1
        self.import_errors: dict[str, dict[str, Any]] = {
            name: {"kind": "import", "type": "", "trace": "", "api": None,
                   "message": f"{name}.py crashed or hung the worker when it was imported earlier"}
            for name in blocked or []}
        # run-time rules: per module, (scope, resolved rule); armed when the module is first handed out
        guards.USED.clear()
        self.rules: dict[str, list[tuple[list[str], guards.Resolved]]] = {}
        self.rule_warnings: list[str] = []
        for r in rules or []:
            resolved = guards.resolve(str(r["id"]), [str(a) for a in r.get("apis", [])], [str(a) for a in r.get("allow", [])])
            self.rule_warnings += [f"forbidden API {a} not found in this torch" for a in resolved.missing]
            self.rules.setdefault(str(r["module"]), []).append(([str(s) for s in r.get("scope", [])], resolved))
        self.armed: set[str] = set()
        self.last_mutated: list[str] = []

    def _arm(self, name: str, mod: types.ModuleType) -> None:
        if name in self.armed:
            return
        self.armed.add(name)
        by_scope: dict[tuple[str, ...], list[guards.Resolved]] = {}
        for scope, resolved in self.rules.get(name, []):
            by_scope.setdefault(tuple(scope), []).append(resolved)
        for names, group in by_scope.items():
            guards.arm(mod, list(names), group)

    # ------------------------------------------------------------------ names and values

    def module(self, name: str) -> types.ModuleType:
        if name not in self.allowed_modules:
            raise RequestError("missing", f"{name}.py is not part of this assignment")
        if name in self.import_errors:
            raise _ImportFailed(self.import_errors[name])
        mod = sys.modules.get(name)
        mod_file = getattr(mod, "__file__", None) if mod is not None else None
        if mod is not None and isinstance(mod_file, str) and os.path.realpath(mod_file).startswith(self.submission_dir):
            self._arm(name, mod)  # imported by another student module first
            return mod
        path = os.path.join(self.submission_dir, *name.split(".")) + ".py"  # models.naive.RNN -> models/naive/RNN.py
        if not os.path.isfile(path):
            shown = name.replace(".", "/")
            err = {"kind": "import", "type": "FileNotFoundError", "message": f"{shown}.py is missing from the submission", "trace": ""}
            self.import_errors[name] = err
            raise _ImportFailed(err)
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        whole_file = [r for scope, r in self.rules.get(name, []) if not scope]
        try:
            with guards.watching(whole_file):  # a rule over the whole file also covers its top level
                spec.loader.exec_module(mod)
        except BaseException as exc:  # the module's top level is student code
            sys.modules.pop(name, None)
            err = self.describe(exc, kind="import")
            self.import_errors[name] = err
            raise _ImportFailed(err) from None
        self._arm(name, mod)
        return mod

    def resolve(self, qualname: str) -> Any:
        mod_name, _, attr = qualname.partition(".")
        parts = qualname.split(".")
        for cut in range(len(parts) - 1, 1, -1):  # a dotted module name (models.naive.RNN.VanillaRNN): longest match
            if ".".join(parts[:cut]) in self.allowed_modules:
                mod_name, attr = ".".join(parts[:cut]), ".".join(parts[cut:])
                break
        obj: Any = self.module(mod_name)
        for part in attr.split("."):
            if not part or not hasattr(obj, part):
                raise RequestError("missing", f"{mod_name}.py defines no {attr!r}")
            obj = getattr(obj, part)
        return obj

    def handle(self, obj: Any) -> Handle:
        hid = self.next_id
        self.next_id += 1
        self.handles[hid] = obj
        return Handle(hid, type(obj).__name__)

    def deref(self, value: Any) -> Any:
        if isinstance(value, Handle):
            if value.id not in self.handles:
                raise RequestError("request", f"unknown handle {value.id}")
            return self.handles[value.id]
        if isinstance(value, list):
            return [self.deref(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.deref(v) for v in value)
        if isinstance(value, dict):
            return {k: self.deref(v) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            return value.to(self.device) if self.device.type != "cpu" else value
        return value

    def plain(self, value: Any, depth: int = 0) -> Any:
        """What goes back: plain data where possible, a handle otherwise."""
        if value is None or isinstance(value, (bool, int, float, str, Handle)):
            return value
        if isinstance(value, torch.Tensor):
            return value.detach().cpu()
        if isinstance(value, (np.ndarray, np.generic)):
            return value
        if isinstance(value, torch.Size):
            return tuple(int(s) for s in value)
        if isinstance(value, torch.dtype):
            return str(value).replace("torch.", "")
        if depth < 8 and isinstance(value, (list, tuple)) and len(value) <= 10_000:
            items = [self.plain(v, depth + 1) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        if depth < 8 and isinstance(value, dict) and all(isinstance(k, str) for k in value) and len(value) <= 10_000:
            return {k: self.plain(v, depth + 1) for k, v in value.items()}
        return self.handle(value)

    def describe(self, exc: BaseException, kind: str = "student") -> dict[str, Any]:
        """An error record with the trace limited to the submission's own frames."""
        if isinstance(exc, guards.ForbiddenAPIUsed):
            kind = "forbidden"
        elif isinstance(exc, SystemExit):
            kind = "exit" if kind != "import" else kind
        elif isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)):
            kind = "memory"
        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if os.path.realpath(f.filename).startswith(self.submission_dir)]
        trace = "\n".join(f"  {os.path.basename(f.filename)}, line {f.lineno}, in {f.name}" for f in frames[-6:])
        if isinstance(exc, SyntaxError) and exc.filename:
            trace = f"  {os.path.basename(exc.filename)}, line {exc.lineno}"
        try:
            message = str(exc)
        except BaseException:  # a hostile __str__
            message = "<unprintable>"
        return {"kind": kind, "type": type(exc).__name__[:100], "message": message[:MAX_MESSAGE], "trace": trace[:MAX_MESSAGE],
                "api": getattr(exc, "api", None) if kind == "forbidden" else None,
                "rule": getattr(exc, "rule", None) if kind == "forbidden" else None}

    # ------------------------------------------------------------------ requests

    def serve(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        fn = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        self.last_mutated = []
        try:
            if fn is None:
                raise RequestError("request", f"unknown op {op!r}")
            seed = request.get("seed")
            if isinstance(seed, int):
                _seed_all(seed)
            value = fn(request)
            reply: dict[str, Any] = {"ok": True, "value": self.plain(value)}
        except _ImportFailed as exc:
            reply = {"ok": False, "error": exc.record}
        except RequestError as exc:
            reply = {"ok": False, "error": {"kind": exc.kind, "type": "", "message": str(exc), "trace": "", "api": None}}
        except BaseException as exc:  # student code: anything, including SystemExit
            reply = {"ok": False, "error": self.describe(exc)}
        if guards.USED:
            reply["forbidden_used"] = [dict(u) for u in guards.USED]
        if self.last_mutated:
            reply["mutated"] = list(self.last_mutated)
        return reply

    def op_ping(self, r: dict[str, Any]) -> Any:
        return {"pid": os.getpid(), "python": sys.version.split()[0], "torch": torch.__version__,
                "device": str(self.device), "cuda": torch.cuda.is_available() if self.device.type == "cuda" else False}

    def op_import(self, r: dict[str, Any]) -> Any:
        self.module(r["module"])
        return True

    def op_has(self, r: dict[str, Any]) -> Any:
        try:
            self.resolve(r["qualname"])
        except (RequestError, _ImportFailed):
            return False
        return True

    def op_new(self, r: dict[str, Any]) -> Any:
        cls = self.resolve(r["qualname"])
        obj = cls(*self.deref(r.get("args", [])), **self.deref(r.get("kwargs", {})))
        if isinstance(obj, torch.nn.Module) and self.device.type != "cpu":
            obj = obj.to(self.device)
        return self.handle(obj)

    def _target(self, r: dict[str, Any]) -> Any:
        target = r.get("target")
        if isinstance(target, Handle):
            obj = self.deref(target)
            method = r.get("method")
            if method is None:
                return obj
            if not isinstance(method, str) or not hasattr(obj, method):
                raise RequestError("missing", f"{type(obj).__name__} has no method {method!r}")
            return getattr(obj, method)
        if isinstance(target, str):
            return self.resolve(target)
        raise RequestError("request", "bad call target")

    def op_call(self, r: dict[str, Any]) -> Any:
        fn = self._target(r)
        args, kwargs = self.deref(r.get("args", [])), self.deref(r.get("kwargs", {}))
        grad_output = r.get("grad_output")
        if grad_output is None:
            with self._watch_inputs(args, kwargs):
                return fn(*args, **kwargs)
        return self._backward(fn, args, kwargs, self.deref(grad_output), r.get("target"))

    @contextlib.contextmanager
    def _watch_inputs(self, args: list[Any], kwargs: dict[str, Any]) -> Iterator[None]:
        """Record which tensor arguments the call wrote into (compared with copies taken before it)."""
        named = [(f"argument {i + 1}", a) for i, a in enumerate(args)] + [(f"argument {k!r}", v) for k, v in kwargs.items()]
        before = [(name, t, t.detach().clone()) for name, t in named
                  if isinstance(t, torch.Tensor) and t.numel() <= 4_000_000 and t.layout == torch.strided]
        try:
            yield
        finally:
            self.last_mutated = [name for name, t, copy in before if not _same_values(t, copy)]

    def _backward(self, fn: Any, args: list[Any], kwargs: dict[str, Any], grad_output: Any, target: Any) -> Any:
        leaves = [a.detach().clone().requires_grad_(True) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                  for a in args]
        owner = self.deref(target) if isinstance(target, Handle) else None
        params = dict(owner.named_parameters()) if isinstance(owner, torch.nn.Module) else {}
        for p in params.values():
            p.grad = None
        out = fn(*leaves, **kwargs)
        first = out[0] if isinstance(out, (tuple, list)) else out
        if not isinstance(first, torch.Tensor) or not first.requires_grad:
            what = type(first).__name__ if not isinstance(first, torch.Tensor) else "a tensor that is cut off from the graph"
            raise RequestError("request", f"returned {what}; no gradient can flow back through it (return a tensor built from the inputs)")
        first.backward(grad_output.to(first.dtype))
        input_grads = [leaf.grad if isinstance(leaf, torch.Tensor) and leaf.requires_grad else None for leaf in leaves]
        param_grads = {n: p.grad for n, p in params.items()}
        return {"output": out, "input_grads": input_grads, "param_grads": param_grads}

    def op_signature(self, r: dict[str, Any]) -> Any:
        """Parameter names of a callable (a class: its __init__), for adapters to older interfaces."""
        fn = self._target(r)
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            return None
        return [[p.name, p.kind.name, p.default is not inspect.Parameter.empty] for p in params]

    def op_get(self, r: dict[str, Any]) -> Any:
        obj = self._target({"target": r["target"]})
        for part in str(r["path"]).split("."):
            if not hasattr(obj, part):
                raise RequestError("missing", f"{type(obj).__name__} has no attribute {part!r}")
            obj = getattr(obj, part)
        return obj

    def op_set(self, r: dict[str, Any]) -> Any:
        setattr(self.deref(r["target"]), r["path"], self.deref(r["value"]))
        return None

    def _module_of(self, r: dict[str, Any]) -> torch.nn.Module:
        obj = self.deref(r["target"])
        if not isinstance(obj, torch.nn.Module):
            raise RequestError("request", f"{type(obj).__name__} is not a torch.nn.Module")
        return obj

    def op_parameters(self, r: dict[str, Any]) -> Any:
        return [[n, list(p.shape), str(p.dtype).replace("torch.", ""), bool(p.requires_grad)]
                for n, p in self._module_of(r).named_parameters()]

    def op_state_dict(self, r: dict[str, Any]) -> Any:
        return {k: v for k, v in self._module_of(r).state_dict().items() if isinstance(v, torch.Tensor)}

    def op_load_state_dict(self, r: dict[str, Any]) -> Any:
        result = self._module_of(r).load_state_dict(self.deref(r["state"]), strict=bool(r.get("strict", True)))
        return {"missing": list(result.missing_keys), "unexpected": list(result.unexpected_keys)}

    def op_set_parameters(self, r: dict[str, Any]) -> Any:
        params = list(self._module_of(r).parameters())
        tensors = r["tensors"]
        if len(params) != len(tensors):
            raise RequestError("request", f"{len(tensors)} tensors for {len(params)} parameters")
        with torch.no_grad():
            for p, t in zip(params, tensors, strict=True):
                p.copy_(t.to(p.device, p.dtype))
        return None

    def op_recipe(self, r: dict[str, Any]) -> Any:
        sys.modules.setdefault("dlgrade_training", training)  # the shared loop recipes import (a file in the release)
        namespace: dict[str, Any] = {"__name__": "dlgrade_recipes"}
        exec(compile(r["source"], "recipes.py", "exec"), namespace)
        fn = namespace.get(r["name"])
        if not callable(fn):
            raise RequestError("request", f"recipe {r['name']!r} not found")
        return fn(RecipeContext(self), **self.deref(r.get("kwargs", {})))

    def op_free(self, r: dict[str, Any]) -> Any:
        for h in r.get("handles", []):
            if isinstance(h, Handle):
                self.handles.pop(h.id, None)
        return None


def _same_values(t: torch.Tensor, copy: torch.Tensor) -> bool:
    try:
        now = t.detach()
        if now.shape != copy.shape or now.dtype != copy.dtype:
            return False
        return bool(torch.equal(now, copy) or (now.is_floating_point() and bool(((now == copy) | (now.isnan() & copy.isnan())).all())))
    except Exception:  # a tensor the student's code freed or broke: count it as changed
        return False


class _ImportFailed(Exception):
    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record.get("message", ""))
        self.record = record
