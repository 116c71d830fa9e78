"""The standard library's TOML reader, with the `tomli` backport on Python 3.10 (Gradescope's default image)."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["tomllib"]
