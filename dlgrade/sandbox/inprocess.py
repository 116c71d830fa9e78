"""The `inprocess` backend: the worker's dispatcher in the grader's own process.

For instructors iterating on their own reference only. There is no isolation and time limits
cannot be enforced (a call cannot be interrupted). The run-time rules watch only while the student's
scoped code runs, so they apply here too without touching the grader's own computations.
Messages still go through the protocol's encoder and decoder, so values behave exactly as
they do across a real pipe.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from typing import Any

from dlgrade.protocol import decode, encode
from dlgrade.sandbox import WorkerSpec
from dlgrade.worker.dispatch import Dispatcher


def _roundtrip(message: dict[str, Any]) -> dict[str, Any]:
    frame = encode(message)
    n_text = int.from_bytes(frame[4:8], "big")
    return decode(frame[16:16 + n_text], frame[16 + n_text:])


class InProcessWorker:
    def __init__(self, spec: WorkerSpec) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="dlgrade-inprocess-")
        root = self._dir.name
        for rel, data in spec.files.items():
            path = f"{root}/{rel}"
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        for name in list(sys.modules):  # a previous submission's modules must not be reused
            if name.split(".")[0] in spec.modules or name.split(".")[0] == "utils":
                del sys.modules[name]
        self._path = root
        self.dispatcher = Dispatcher(root, list(spec.modules), device=spec.device, rules=list(spec.forbidden))
        self._out = io.StringIO()
        self.info: dict[str, Any] = {"pid": None, "warnings": ["inprocess sandbox: no isolation, no time limits"]}

    def cpu_seconds(self) -> float | None:
        return None   # the grader's own process: no limit is enforced (authoring only)

    def request(self, message: dict[str, Any], timeout: Any) -> dict[str, Any]:
        message = _roundtrip(message)
        sys.path.insert(0, self._path)
        try:
            with contextlib.redirect_stdout(self._out), contextlib.redirect_stderr(self._out):
                reply = self.dispatcher.serve(message)
        finally:
            sys.path.remove(self._path)
        return _roundtrip(reply)

    def output(self, limit: int = 20_000) -> str:
        text = self._out.getvalue()
        return text[:limit] + ("\n[... output truncated ...]" if len(text) > limit else "")

    def close(self) -> None:
        for name in list(sys.modules):
            mod = sys.modules.get(name)
            if getattr(mod, "__file__", None) and str(getattr(mod, "__file__", "")).startswith(self._path):
                del sys.modules[name]
        self._dir.cleanup()


class InProcessBackend:
    name = "inprocess"

    def start(self, spec: WorkerSpec, timeout: float = 60.0) -> InProcessWorker:
        return InProcessWorker(spec)

    def shutdown(self) -> None:
        pass
