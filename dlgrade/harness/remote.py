"""The trusted side's view of a submission: a proxy whose calls run in the sandboxed worker.

Workers are started lazily and replaced after a crash or a time-out; a module whose import
killed or hung the worker is remembered, so later tests fail at once with the same reason
instead of paying the time limit again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch

from dlgrade.errors import (
    BadAnswer,
    ForbiddenAPIError,
    GradingError,
    LimitExceeded,
    MissingNameError,
    StudentCodeError,
    SubmissionImportError,
    WorkerCrashed,
)
from dlgrade.notebook import Extracted, map_locations
from dlgrade.protocol import Handle
from dlgrade.sandbox import Backend, Worker, WorkerSpec
from dlgrade.sandbox.budget import WALL_FACTOR, CallClock


@dataclass(frozen=True)
class ParamInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool


@dataclass(frozen=True)
class GradResult:
    output: Any
    input_grads: list[torch.Tensor | None]
    param_grads: dict[str, torch.Tensor | None]


def describe_args(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any] | None = None) -> str:
    def one(v: Any) -> str:
        if isinstance(v, torch.Tensor):
            return f"tensor{tuple(v.shape)}"
        if isinstance(v, RemoteObject):
            return v.label
        if isinstance(v, (int, float, bool, str)) or v is None:
            return repr(v)
        if isinstance(v, (list, tuple)):
            return f"{type(v).__name__} of {len(v)}"
        return type(v).__name__
    items = [one(a) for a in args] + [f"{k}={one(v)}" for k, v in (kwargs or {}).items()]
    return ", ".join(items)


class Submission:
    def __init__(self, backend: Backend, spec: WorkerSpec, call_timeout: float, submission_timeout: float,
                 recipe_source: Callable[[], str] | None = None) -> None:
        self.backend = backend
        self.spec = spec
        self.call_timeout = call_timeout
        # A test's and a call's limits count the worker's CPU time (dlgrade.sandbox.budget): the test's allowance shrinks
        # by what each call used, and wall-clock time only backs it up, at WALL_FACTOR times the limit. The whole
        # submission's budget is wall-clock time: it bounds how long a student holds the grader (Gradescope's run limit).
        self.budget_end = time.monotonic() + submission_timeout
        self.submission_timeout = submission_timeout
        self.test_end: float | None = None
        self.test_left = 0.0
        self.recipe_source = recipe_source
        self.worker: Worker | None = None
        self.generation = 0
        self.import_failures: dict[str, GradingError] = {}
        self.forbidden_used: set[tuple[str, str]] = set()   # (rule id, API) seen at run time in the worker
        self.mutated: tuple[str, ...] = ()                   # the arguments the last call wrote into
        self.warnings: list[str] = []
        self.leftovers: list[str] = []                       # one line per worker that left processes running
        self.restarts = 0
        self.notebooks: Mapping[str, Extracted] = {}          # submitted notebooks, to point messages at their cells
        self._outputs: list[str] = []

    # ------------------------------------------------------------------ lifecycle

    def begin_test(self, time_limit: float) -> None:
        self.test_end = time.monotonic() + time_limit * WALL_FACTOR
        self.test_left = time_limit

    def _limits(self, op: str) -> tuple[float, float]:
        """(the call's allowance of the worker's CPU time, the wall-clock time it must end by)."""
        now = time.monotonic()
        if now >= self.budget_end:
            raise LimitExceeded(f"the time budget for the whole submission ({self.submission_timeout:g} s) is used up")
        left, end = self.budget_end - now, self.budget_end
        if self.test_end is not None and op != "import":  # a fresh worker's imports are not the test's doing
            if self.test_left <= 0 or now >= self.test_end:
                raise LimitExceeded("this test's time limit was used up")
            left, end = min(left, self.test_left), min(end, self.test_end)
        return (left if op == "recipe" else min(left, self.call_timeout)), end

    def _ensure_worker(self) -> Worker:
        if self.worker is not None:
            return self.worker
        started = time.monotonic()
        try:
            return self._start_worker()
        finally:
            # starting the sandbox and importing the modules (each import bounded by the call limit on its own) is
            # not the test's own time: on a loaded machine it must not use up a short test's limit
            if self.test_end is not None:
                self.test_end += time.monotonic() - started

    def _start_worker(self) -> Worker:
        if self.restarts >= 25:
            raise WorkerCrashed("the worker was restarted too many times; grading of this submission stopped")
        self.restarts += 1
        # modules whose import killed or hung an earlier worker are refused by the new one too,
        # also when a recipe or another module asks for them
        spec = replace(self.spec, extra={**self.spec.extra, "blocked": sorted(self.import_failures)})
        worker = self.backend.start(spec, timeout=max(60.0, self.call_timeout))
        self.warnings.extend(w for w in worker.info.get("warnings", []) if w not in self.warnings)
        self.worker = worker
        self.generation += 1
        for module in self.spec.modules:
            if module in self.import_failures:
                continue
            try:
                self._request({"op": "import", "module": module}, f"importing {module}.py", worker_started=True)
            except SubmissionImportError:
                pass  # recorded by the worker; reported when the module is used
            except (LimitExceeded, WorkerCrashed, BadAnswer) as exc:
                self.import_failures[module] = SubmissionImportError(f"{module}.py could not be imported: {exc}")
                return self._start_worker()
        return worker

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self._outputs.append(self.worker.output())
            self.worker.close()
            # processes the submission left running, which closing the worker killed (the sandbox reports them)
            notes = self.worker.info.get("leftovers", [])
            self.leftovers += [str(n)[:500] for n in notes[:5]] if isinstance(notes, list) else []
            self.worker = None

    def close(self) -> None:
        self._drop_worker()

    def stdout(self, limit: int = 20_000) -> str:
        text = "".join(self._outputs) + (self.worker.output(limit) if self.worker is not None else "")
        return text[:limit]

    # ------------------------------------------------------------------ requests

    def _request(self, message: dict[str, Any], what: str, worker_started: bool = False) -> Any:
        qualname = message.get("qualname") or (message.get("target") if isinstance(message.get("target"), str) else None)
        if isinstance(qualname, str) and qualname.split(".")[0] in self.import_failures:
            raise self.import_failures[qualname.split(".")[0]]
        worker = self.worker if worker_started else self._ensure_worker()
        assert worker is not None
        if isinstance(qualname, str) and qualname.split(".")[0] in self.import_failures:  # failed while starting it
            raise self.import_failures[qualname.split(".")[0]]
        op = str(message.get("op"))
        limit, end = self._limits(op)
        clock = CallClock(limit, worker.cpu_seconds, end)
        try:
            reply = worker.request(message, clock)
        except LimitExceeded as exc:
            self._drop_worker()
            raise LimitExceeded(f"{what}: {exc}") from None
        except (WorkerCrashed, BadAnswer) as exc:
            self._drop_worker()
            raise type(exc)(f"{what}: {exc}") from None
        finally:
            if op != "import":
                self.test_left -= clock.spent()
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
            raise BadAnswer(f"{what}: the worker's answer is malformed")
        for use in reply.get("forbidden_used", []) or []:
            if isinstance(use, dict) and isinstance(use.get("rule"), str) and isinstance(use.get("api"), str):
                self.forbidden_used.add((use["rule"][:20], use["api"][:200]))
        mutated = reply.get("mutated") or []
        self.mutated = tuple(str(m)[:100] for m in mutated[:50]) if isinstance(mutated, list) else ()
        if reply["ok"]:
            return self._wrap(reply.get("value"))
        raise self._error(reply.get("error"), what)

    def _error(self, err: Any, what: str) -> GradingError:
        if not isinstance(err, dict):
            return BadAnswer(f"{what}: the worker's error report is malformed")
        kind, typ, msg, trace = (map_locations(str(err.get(k) or "")[:2000], self.notebooks)
                                 for k in ("kind", "type", "message", "trace"))
        where = f"\n{trace}" if trace else ""
        if kind == "import":
            plain = typ in ("FileNotFoundError", "")  # a missing file, or a module an earlier worker died importing
            return SubmissionImportError(msg if plain else f"could not import the module: {typ}: {msg}{where}")
        if kind == "missing":
            return MissingNameError(f"{what}: {msg}")
        if kind == "forbidden":
            return ForbiddenAPIError(f"{what}: your code used {err.get('api')}, which this assignment forbids{where}")
        if kind == "memory":
            return LimitExceeded(f"{what}: ran out of memory (limit {self.spec.memory_mb} MB){where}")
        if kind == "exit":
            return StudentCodeError(f"{what}: your code called sys.exit() ({msg}){where}")
        if kind == "request":
            return BadAnswer(f"{what}: {msg}")
        return StudentCodeError(f"{what} raised {typ}: {msg}{where}")

    def _wrap(self, value: Any, label: str = "") -> Any:
        if isinstance(value, Handle):
            return RemoteObject(self, value, label or value.type)
        if isinstance(value, list):
            return [self._wrap(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self._wrap(v) for v in value)
        if isinstance(value, dict):
            return {k: self._wrap(v) for k, v in value.items()}
        return value

    @staticmethod
    def _unwrap(value: Any) -> Any:
        if isinstance(value, RemoteObject):
            return value.handle
        if isinstance(value, (list, tuple)):
            items = [Submission._unwrap(v) for v in value]
            return tuple(items) if isinstance(value, tuple) else items
        if isinstance(value, dict):
            return {k: Submission._unwrap(v) for k, v in value.items()}
        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        return value

    # ------------------------------------------------------------------ public API

    def source(self, filename: str) -> str:
        """The submitted text of one file (as graded: for a notebook, the module extracted from it); '' if absent.

        Read on the trusted side from what intake collected; nothing is asked of the worker."""
        data = self.spec.files.get(self.notebooks[filename].module_file if filename in self.notebooks else filename)
        if data is None:
            return ""
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)

    def new(self, qualname: str, *args: Any, seed: int = 0, **kwargs: Any) -> RemoteObject:
        label = f"{qualname.split('.', 1)[-1]}({describe_args(args, kwargs)})"
        obj = self._request({"op": "new", "qualname": qualname, "args": self._unwrap(list(args)),
                             "kwargs": self._unwrap(kwargs), "seed": seed}, f"creating {label}")
        if not isinstance(obj, RemoteObject):
            raise BadAnswer(f"creating {label} did not give an object")
        return RemoteObject(self, obj.handle, label)

    def call(self, qualname: str, *args: Any, seed: int = 0, **kwargs: Any) -> Any:
        what = f"calling {qualname.split('.', 1)[-1]}({describe_args(args, kwargs)})"
        return self._request({"op": "call", "target": qualname, "args": self._unwrap(list(args)),
                              "kwargs": self._unwrap(kwargs), "seed": seed}, what)

    def signature(self, qualname: str) -> list[tuple[str, str, bool]] | None:
        """(name, kind, has_default) per parameter of a function or class (its __init__, without self); None if unknown."""
        return _signature(self._request({"op": "signature", "target": qualname}, f"inspecting {qualname}"))

    def has(self, qualname: str) -> bool:
        try:
            return bool(self._request({"op": "has", "qualname": qualname}, f"looking up {qualname}"))
        except SubmissionImportError:
            return False

    def run_recipe(self, name: str, **kwargs: Any) -> Any:
        """Run a recipe in the worker; torch is seeded with ``kwargs["seed"]`` (default 0) first."""
        if self.recipe_source is None:
            raise BadAnswer("this assignment has no recipes")
        seed = kwargs.get("seed", 0)
        return self._request({"op": "recipe", "source": self.recipe_source(), "name": name,
                              "kwargs": self._unwrap(kwargs), "seed": seed if isinstance(seed, int) else 0},
                             f"training with recipe {name}")


def _signature(value: Any) -> list[tuple[str, str, bool]] | None:
    if value is None:
        return None
    try:
        return [(str(n), str(k), bool(d)) for n, k, d in value]
    except (TypeError, ValueError):
        raise BadAnswer("malformed signature answer") from None


class RemoteObject:
    """An object that lives in the worker."""

    def __init__(self, sub: Submission, handle: Handle, label: str) -> None:
        self.sub = sub
        self.handle = handle
        self.label = label
        self.generation = sub.generation

    def _req(self, message: dict[str, Any], what: str) -> Any:
        if self.generation != self.sub.generation:
            raise WorkerCrashed(f"{what}: the worker holding {self.label} was restarted after an earlier failure")
        return self.sub._request({"target": self.handle, **message}, what)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call("__call__", *args, **kwargs)

    def call(self, method: str, *args: Any, seed: int = 0, **kwargs: Any) -> Any:
        shown = "forward" if method == "__call__" else method
        return self._req({"op": "call", "method": method, "args": self.sub._unwrap(list(args)),
                          "kwargs": self.sub._unwrap(kwargs), "seed": seed},
                         f"calling {self.label}.{shown}({describe_args(args, kwargs)})")

    def backward(self, method: str, *args: Any, grad_output: torch.Tensor, **kwargs: Any) -> GradResult:
        shown = "forward" if method == "__call__" else method
        what = f"back-propagating through {self.label}.{shown}({describe_args(args, kwargs)})"
        value = self._req({"op": "call", "method": method, "args": self.sub._unwrap(list(args)),
                           "kwargs": self.sub._unwrap(kwargs), "grad_output": grad_output}, what)
        if not isinstance(value, dict) or set(value) != {"output", "input_grads", "param_grads"}:
            raise BadAnswer(f"{what}: malformed gradient answer")
        return GradResult(value["output"], list(value["input_grads"]), dict(value["param_grads"]))

    def signature(self, method: str) -> list[tuple[str, str, bool]] | None:
        """(name, kind, has_default) per parameter of a bound method (without self); None if unknown."""
        return _signature(self._req({"op": "signature", "method": method}, f"inspecting {self.label}.{method}"))

    def get(self, path: str) -> Any:
        return self._req({"op": "get", "path": path}, f"reading {self.label}.{path}")

    def set(self, path: str, value: Any) -> None:
        self._req({"op": "set", "path": path, "value": self.sub._unwrap(value)}, f"setting {self.label}.{path}")

    def parameters(self) -> list[ParamInfo]:
        rows = self._req({"op": "parameters"}, f"listing the parameters of {self.label}")
        try:
            return [ParamInfo(str(n), tuple(int(s) for s in shape), str(d), bool(g)) for n, shape, d, g in rows]
        except (TypeError, ValueError):
            raise BadAnswer(f"malformed parameter list for {self.label}") from None

    def state_dict(self) -> dict[str, torch.Tensor]:
        sd = self._req({"op": "state_dict"}, f"reading the state_dict of {self.label}")
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise BadAnswer(f"malformed state_dict for {self.label}")
        return sd

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> Any:
        return self._req({"op": "load_state_dict", "state": self.sub._unwrap(state), "strict": strict},
                         f"loading weights into {self.label}")

    def set_parameters(self, tensors: list[torch.Tensor]) -> None:
        self._req({"op": "set_parameters", "tensors": self.sub._unwrap(list(tensors))}, f"setting the parameters of {self.label}")

    def __repr__(self) -> str:
        return f"<remote {self.label}>"
