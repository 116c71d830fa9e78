"""Assignment settings, resolved once into frozen dataclasses.

Precedence (lowest first): ``assignment.toml`` < environment (``DLGRADE_<LIMIT>``, e.g.
``DLGRADE_MEMORY_MB``) < command line < a test's own marker. A bad value is reported with
where it came from.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from dlgrade.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Gradescope's default image has Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Limits:
    call_timeout_s: float = 20.0
    submission_timeout_s: float = 600.0
    memory_mb: int = 3072
    processes: int = 64
    file_size_mb: int = 64
    cpus: int = 2


@dataclass(frozen=True)
class Forbidden:
    api: str
    files: tuple[str, ...]
    parts: tuple[str, ...]
    runtime: bool = True  # False: detected statically in its files only (other submitted files may need the API)


@dataclass(frozen=True)
class AssignmentConfig:
    id: str
    title: str
    root: Path
    submit: tuple[str, ...]
    release: tuple[str, ...]
    parts: dict[str, str]
    limits: Limits
    forbidden: tuple[Forbidden, ...]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def assignment_dir(self) -> Path:
        return self.root / "assignments" / self.id

    @property
    def reference_dir(self) -> Path:
        return self.root / "reference_solutions" / self.id

    @property
    def grader_dir(self) -> Path:
        return self.root / "graders" / self.id

    @property
    def modules(self) -> tuple[str, ...]:
        # models/naive/RNN.py -> models.naive.RNN (flat files keep their stem)
        return tuple(Path(f).with_suffix("").as_posix().replace("/", ".") for f in self.submit)

    def with_limits(self, **overrides: Any) -> AssignmentConfig:
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, limits=_limits(given, dict(vars(self.limits)), "the command line"))


def find_root(start: Path | None = None) -> Path:
    """The project root: $DLGRADE_ROOT, else the nearest folder above holding assignments/ and graders/."""
    env = os.environ.get("DLGRADE_ROOT")
    if env:
        return Path(env).resolve()
    for base in [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parent]:
        for cand in [base, *base.parents]:
            if (cand / "assignments").is_dir() and (cand / "graders").is_dir():
                return cand
    raise ConfigError("cannot find the dlgrade project root (a folder with assignments/ and graders/); set DLGRADE_ROOT")


def _limits(values: dict[str, Any], base: dict[str, Any], origin: str) -> Limits:
    out = dict(base)
    types = {f.name: f.type for f in fields(Limits)}
    for key, value in values.items():
        if key not in types:
            raise ConfigError(f"{origin}: unknown limit {key!r} (known: {', '.join(sorted(types))})")
        cast = float if "float" in str(types[key]) else int
        try:
            number = cast(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: limit {key} must be a number, got {value!r}") from None
        if number <= 0:
            raise ConfigError(f"{origin}: limit {key} must be positive, got {value!r}")
        out[key] = number
    return Limits(**out)


def load_assignment(assignment_id: str, root: Path | None = None) -> AssignmentConfig:
    root = root or find_root()
    path = root / "assignments" / assignment_id / "assignment.toml"
    if not path.is_file():
        known = sorted(p.name for p in (root / "assignments").iterdir() if (p / "assignment.toml").is_file())
        raise ConfigError(f"no assignment {assignment_id!r} (looked for {path}); known: {', '.join(known) or 'none'}")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    limits = _limits(raw.get("limits", {}), dict(vars(Limits())), str(path))
    env = {f.name: os.environ[f"DLGRADE_{f.name.upper()}"] for f in fields(Limits) if f"DLGRADE_{f.name.upper()}" in os.environ}
    limits = _limits(env, dict(vars(limits)), "environment")
    parts = {str(k): str(v) for k, v in raw.get("parts", {}).items()}
    forbidden = []
    for i, entry in enumerate(raw.get("forbidden", [])):
        unknown = set(entry.get("parts", [])) - set(parts)
        if "api" not in entry or unknown:
            raise ConfigError(f"{path}: [[forbidden]] entry {i + 1} needs an api and known parts (unknown: {sorted(unknown)})")
        forbidden.append(Forbidden(entry["api"], tuple(entry.get("files", raw.get("submit", []))), tuple(entry.get("parts", [])),
                                   bool(entry.get("runtime", True))))
    submit = tuple(raw.get("submit", []))
    if not submit:
        raise ConfigError(f"{path}: 'submit' must list the files a student submits")
    return AssignmentConfig(id=raw.get("id", assignment_id), title=raw.get("title", assignment_id), root=root,
                            submit=submit, release=tuple(raw.get("release", submit)), parts=parts, limits=limits,
                            forbidden=tuple(forbidden), raw=raw)
