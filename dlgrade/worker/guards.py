"""Run-time guards for forbidden APIs (defence in depth behind the trusted static check).

A guarded class refuses to be constructed or called; a guarded function refuses to run.
Every use is also recorded, so a submission that catches the exception is still reported.
"""

from __future__ import annotations

import functools
import importlib
from typing import Any


class ForbiddenAPIUsed(Exception):
    """Raised inside the worker when student code touches a forbidden API."""

    def __init__(self, api: str) -> None:
        super().__init__(f"{api} is not allowed in this assignment")
        self.api = api


USED: list[str] = []


def _resolve(api: str) -> tuple[Any, str, Any] | None:
    """(parent object, attribute name, value) for a dotted path, or None if absent."""
    parts = api.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:-1]:
                obj = getattr(obj, name)
            return obj, parts[-1], getattr(obj, parts[-1])
        except AttributeError:
            return None
    return None


def _refuse(api: str) -> None:
    if api not in USED:
        USED.append(api)
    raise ForbiddenAPIUsed(api)


def install(apis: list[str]) -> list[str]:
    """Guard each API; returns the ones that could not be found (a warning, not an error)."""
    missing = []
    for api in apis:
        found = _resolve(api)
        if found is None:
            missing.append(api)
            continue
        parent, name, value = found
        if isinstance(value, type):
            def init(self: Any, *args: Any, _api: str = api, **kwargs: Any) -> None:
                _refuse(_api)

            def forward(self: Any, *args: Any, _api: str = api, **kwargs: Any) -> None:
                _refuse(_api)

            value.__init__ = init  # type: ignore[misc]
            if hasattr(value, "forward"):
                value.forward = forward
        elif callable(value):
            @functools.wraps(value)
            def blocked(*args: Any, _api: str = api, **kwargs: Any) -> None:
                _refuse(_api)

            setattr(parent, name, blocked)
        else:
            missing.append(api)
    return missing
