"""Release: the student folder and a reproducible zip, generated from the reference.

Solution regions (``# BEGIN SOLUTION`` … ``# END SOLUTION``) become a TODO comment and a stub
statement; everything else is given code and is released verbatim. Zips have sorted entries
and fixed timestamps, so two builds of the same tree are byte-identical.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dlgrade.config import AssignmentConfig
from dlgrade.markers import keep_solutions, strip_solutions
from dlgrade.notebook import percent
from dlgrade.student_files import student_files

ZIP_DATE = (2020, 1, 1, 0, 0, 0)
TRAINING_LOOP = Path(__file__).resolve().parent / "worker" / "training.py"  # read as a file: it is worker code


def _released(cfg: AssignmentConfig) -> list[tuple[str, Path]]:
    """(name in the release, source path) per ``release`` entry.

    An entry is read from ``reference_solutions/<id>/``, or else from ``assignments/<id>/``
    (given files such as a data module); an entry ending in ``/`` stands for every file in
    that folder.
    """
    out: list[tuple[str, Path]] = []
    for rel in cfg.release:
        base = cfg.reference_dir if (cfg.reference_dir / rel).exists() else cfg.assignment_dir
        notebook = notebook_source(cfg, rel)
        if notebook is not None:  # a notebook written as percent-format Python
            out.append((rel, notebook))
        elif rel.endswith("/"):
            folder = base / rel
            out += [(f"{rel}{p.relative_to(folder).as_posix()}", p) for p in sorted(folder.rglob("*"))
                    if p.is_file() and "__pycache__" not in p.parts]
        else:
            out.append((rel, base / rel))
    return out


def skeleton_files(cfg: AssignmentConfig) -> dict[str, bytes]:
    """Every released file; solution regions of reference files stripped."""
    out = {}
    for rel, path in _released(cfg):
        if rel.endswith(".py"):
            out[rel] = strip_solutions(path.read_text(), rel).encode()
        elif rel.endswith(".ipynb") and path.suffix == ".py":
            out[rel] = percent.skeleton_notebook(path.read_text(), str(path))
        else:
            out[rel] = path.read_bytes()
    return out


def support_files(cfg: AssignmentConfig) -> dict[str, bytes]:
    """Given files the worker places beside a submission (released files a student does not submit)."""
    return {rel: data for rel, data in skeleton_files(cfg).items() if rel not in cfg.submit}


def notebook_source(cfg: AssignmentConfig, rel: str) -> Path | None:
    """The percent-format reference source of a notebook entry (``x.ipynb`` -> ``reference_solutions/<id>/x.py``)."""
    if not rel.endswith(".ipynb"):
        return None
    path = cfg.reference_dir / Path(rel).with_suffix(".py")
    return path if path.is_file() else None


def reference_sources(cfg: AssignmentConfig) -> dict[str, str]:
    """The reference text of each submitted file, solution markers removed (for a notebook: its percent source).

    Bug catalogues and test fixtures edit this text; :func:`build_submission` turns it into files to grade."""
    return {rel: keep_solutions((notebook_source(cfg, rel) or cfg.reference_dir / rel).read_text()) for rel in cfg.submit}


def build_submission(cfg: AssignmentConfig, sources: dict[str, str]) -> dict[str, bytes]:
    """Submitted files from reference-style texts: notebooks are built from their percent source."""
    return {rel: percent.reference_notebook(text, rel) if notebook_source(cfg, rel) is not None else text.encode()
            for rel, text in sources.items()}


def reference_submission(cfg: AssignmentConfig) -> dict[str, bytes]:
    return build_submission(cfg, reference_sources(cfg))


def _public_files(cfg: AssignmentConfig) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    adir = cfg.assignment_dir
    for name in ("handout.md", "requirements.txt", "recipes.py", "datagen.py"):
        if (adir / name).is_file():
            out[name] = (adir / name).read_bytes()
    if "recipes.py" in out:  # the recipes' shared training loop, so that students can run them too
        out["dlgrade_training.py"] = TRAINING_LOOP.read_bytes()
    tests = adir / "public_tests"
    for p in sorted(tests.rglob("*")) if tests.is_dir() else []:
        if p.is_file() and "__pycache__" not in p.parts:
            out[f"public_tests/{p.relative_to(tests).as_posix()}"] = p.read_bytes()
    # conftest.py, checks.py and collect_submission.py come from one engine template each
    return {**out, **student_files(cfg)}


def write_zip(files: dict[str, bytes], path: Path, prefix: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in sorted(files):
            info = zipfile.ZipInfo(prefix + rel, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[rel])
    return path


@dataclass(frozen=True)
class Release:
    folder: Path
    zip: Path
    files: tuple[str, ...]


def build_release(cfg: AssignmentConfig, out: Path) -> Release:
    files = {**skeleton_files(cfg), **_public_files(cfg)}
    folder = out / cfg.id / "student"
    if folder.exists():
        shutil.rmtree(folder)
    for rel, data in files.items():
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    zpath = write_zip(files, out / cfg.id / "student.zip", prefix=f"{cfg.id}/")
    return Release(folder, zpath, tuple(sorted(files)))
