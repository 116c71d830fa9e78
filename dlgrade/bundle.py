"""Bundle: Gradescope's ``autograder.zip`` for one assignment.

The zip holds ``setup.sh`` and ``run_autograder`` at its root (Gradescope's contract), the
engine's source (``dlgrade/``), the assignment's public folder, its hidden suite and its
reference, a pinned ``requirements.txt`` and ``bundle.json``: the limits that fit Gradescope's
container (``[gradescope]`` of ``assignment.toml``, then the command line). Entries are sorted
and stamped with a fixed date, so two builds of the same tree are byte-identical.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass, fields, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from dlgrade import __version__
from dlgrade.config import AssignmentConfig, Limits, _limits
from dlgrade.errors import ConfigError
from dlgrade.release import write_zip

TEMPLATES = Path("gradescope_bundle")
EXECUTABLE = ("setup.sh", "run_autograder")            # mode 755 in the zip
SHIPPED = (*EXECUTABLE, "dlgrade_gradescope.py")        # templates copied to the zip's root
RUNTIME = ("torch", "numpy", "pytest", "pyseccomp", "nltk", 'tomli; python_version < "3.11"')  # what grading imports
PYTHONS = ("3.10", "3.11", "3.12")                      # requirement markers are resolved for each

# Gradescope's default container: 768 MB of memory and 0.5 vCPU for the whole run, 10 minutes.
# The trusted side (torch, pytest, the reference) needs about 300 MB of it; the worker gets the rest.
GRADESCOPE_LIMITS = {"memory_mb": 384, "cpus": 1, "processes": 32, "call_timeout_s": 60.0, "submission_timeout_s": 480.0}


@dataclass(frozen=True)
class GradescopeSettings:
    limits: Limits
    run_timeout_s: float = 570.0        # the whole run_autograder, below Gradescope's 600 s default
    results_max_bytes: int = 200_000    # results.json is cut to this size (details go first)
    worker_user: str = "dlgrade-worker"


@dataclass(frozen=True)
class Bundle:
    zip: Path
    files: tuple[str, ...]
    settings: GradescopeSettings
    requirements: tuple[str, ...]


def gradescope_settings(cfg: AssignmentConfig, **overrides: Any) -> GradescopeSettings:
    """Limits for the bundle: Gradescope's defaults < ``[gradescope]`` of assignment.toml < ``overrides``.

    ``[limits]`` of assignment.toml is for lab machines and is deliberately not inherited.
    """
    table = dict(cfg.raw.get("gradescope", {}))
    origin = f"{cfg.assignment_dir / 'assignment.toml'} [gradescope]"
    own = {f.name for f in fields(GradescopeSettings)} - {"limits"}
    unknown = set(table) - own - {f.name for f in fields(Limits)}
    if unknown:
        raise ConfigError(f"{origin}: unknown keys {sorted(unknown)}")
    limits = _limits(GRADESCOPE_LIMITS, dict(vars(Limits())), "Gradescope defaults")
    limits = _limits({k: v for k, v in table.items() if k not in own}, dict(vars(limits)), origin)
    given = {k: v for k, v in overrides.items() if v is not None}
    limits = _limits({k: v for k, v in given.items() if k not in own}, dict(vars(limits)), "the command line")
    settings = GradescopeSettings(limits=limits)
    extra = {**{k: v for k, v in table.items() if k in own}, **{k: v for k, v in given.items() if k in own}}
    try:
        settings = replace(settings, **{k: type(getattr(settings, k))(v) for k, v in extra.items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {exc}") from None
    if settings.run_timeout_s <= limits.submission_timeout_s:
        raise ConfigError(f"run_timeout_s ({settings.run_timeout_s:g}) must exceed submission_timeout_s "
                          f"({limits.submission_timeout_s:g}): the run also installs nothing but must start and write results")
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", settings.worker_user):
        raise ConfigError(f"worker_user {settings.worker_user!r} is not a valid user name")
    return settings


# ----------------------------------------------------------------------------- requirements


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ConfigError(f"cannot read the requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _marker_env(python: str, extra: str) -> dict[str, str]:
    return {"python_version": python, "python_full_version": python + ".0", "sys_platform": "linux", "platform_system": "Linux",
            "platform_machine": "x86_64", "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "os_name": "posix", "extra": extra}


def _closure(roots: tuple[str, ...], python: str) -> dict[str, str]:
    """name -> the first requirement line that asked for it, for every distribution needed on ``python``."""
    from packaging.requirements import Requirement

    found: dict[str, str] = {}
    todo = [(r, "") for r in roots]
    while todo:
        line, extra = todo.pop(0)
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(_marker_env(python, extra)):
            continue
        name = _name(line)
        if name in found:
            continue
        found[name] = line
        try:
            deps = metadata.distribution(req.name).requires or []
        except metadata.PackageNotFoundError:
            continue
        todo += [(d, e) for d in deps for e in ("", *sorted(req.extras))]
    return found


def pinned_requirements(roots: tuple[str, ...] = RUNTIME) -> tuple[str, ...]:
    """Exact pins for ``roots`` and everything they need, read from the installed distributions.

    Resolved for each Python of PYTHONS; a line needed on only some of them carries a marker. A
    dependency that is not installed here (``exceptiongroup``, needed on 3.10 only) keeps the
    specifier it was asked for with.
    """
    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    per_python = {py: _closure(roots, py) for py in PYTHONS}
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    lines = []
    for name in sorted({n for found in per_python.values() for n in found}):
        pythons = [py for py in PYTHONS if name in per_python[py]]
        asked = Requirement(next(per_python[py][name] for py in pythons))
        try:
            dist = metadata.distribution(asked.name)
        except metadata.PackageNotFoundError:
            if here in pythons:
                raise ConfigError(f"{asked.name} is needed for grading but is not installed here (run `make setup`)") from None
            lines.append(f"{name}{asked.specifier}{_marker(pythons)}")
            continue
        # a pin newer than some Python supports (networkx 3.6 needs 3.11) leaves that Python to pip's choice
        supported = SpecifierSet((dist.metadata["Requires-Python"] if "Requires-Python" in dist.metadata else "") or "")
        fits = [py for py in pythons if supported.contains(py + ".0")]
        if fits:
            lines.append(f"{name}=={dist.version.split('+')[0]}{_marker(fits)}")  # 2.13.0+cpu: setup.sh picks the CPU build
        if len(fits) < len(pythons):
            lines.append(f"{name}{asked.specifier}{_marker([py for py in pythons if py not in fits])}")
    return tuple(lines)


def _marker(pythons: list[str]) -> str:
    return "" if len(pythons) == len(PYTHONS) else "; " + " or ".join(f'python_version == "{p}"' for p in pythons)


# ----------------------------------------------------------------------------- files


def _tree(root: Path, rel: str) -> dict[str, bytes]:
    base = root / rel
    out: dict[str, bytes] = {}
    paths = [base] if base.is_file() else sorted(base.rglob("*"))
    for p in paths:
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo") and not p.name.startswith(".#"):
            out[p.relative_to(root).as_posix()] = p.read_bytes()
    return out


def bundle_files(cfg: AssignmentConfig, settings: GradescopeSettings, requirements: tuple[str, ...]) -> dict[str, bytes]:
    root = cfg.root
    templates = root / TEMPLATES
    files: dict[str, bytes] = {}
    for rel in ("dlgrade", "pyproject.toml", f"assignments/{cfg.id}", f"graders/{cfg.id}", f"reference_solutions/{cfg.id}",
                "graders/__init__.py", "reference_solutions/__init__.py"):
        if (root / rel).exists():
            files.update(_tree(root, rel))
    for name in SHIPPED:
        files[name] = (templates / name).read_bytes()
    files["requirements.txt"] = ("# Pinned by `dlgrade bundle` from the build environment; setup.sh installs torch's CPU build.\n"
                                 + "\n".join(requirements) + "\n").encode()
    meta = {"assignment": cfg.id, "dlgrade": __version__, "limits": asdict(settings.limits),
            "run_timeout_s": settings.run_timeout_s, "results_max_bytes": settings.results_max_bytes,
            "worker_user": settings.worker_user}
    files["bundle.json"] = (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode()
    return files


def build_bundle(cfg: AssignmentConfig, out: Path, **overrides: Any) -> Bundle:
    """Write ``out/<id>/autograder.zip``; ``overrides`` are Gradescope limits and settings."""
    settings = gradescope_settings(cfg, **overrides)
    requirements = pinned_requirements()
    files = bundle_files(cfg, settings, requirements)
    path = write_zip(files, out / cfg.id / "autograder.zip")
    _set_modes(path, EXECUTABLE)
    return Bundle(path, tuple(sorted(files)), settings, requirements)


def _set_modes(path: Path, executable: tuple[str, ...]) -> None:
    """Rewrite the zip with regular-file modes, the scripts executable (write_zip stamps a bare 644)."""
    import stat
    import zipfile

    with zipfile.ZipFile(path) as zf:
        entries = [(info, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            info.external_attr = (stat.S_IFREG | (0o755 if info.filename in executable else 0o644)) << 16
            zf.writestr(info, data)
