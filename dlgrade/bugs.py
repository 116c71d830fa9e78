"""The bug catalogue (``graders/<id>/bugs.toml``): known mistakes, each a find/replace on the reference.

``dlgrade validate`` grades every bug and requires that it loses points; ``dlgrade calibrate`` trains the
ones a threshold must reject. A bug becomes a submission folder with :func:`materialise`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dlgrade.config import AssignmentConfig
from dlgrade.errors import ConfigError
from dlgrade.release import build_submission, reference_sources
from dlgrade.tomlcompat import tomllib


@dataclass(frozen=True)
class Bug:
    name: str
    file: str
    find: str
    replace: str
    why: str
    fails: tuple[str, ...]
    advice: bool = False   # behaviour the handout does not ask for: full marks, with advice in the `fails` tests
    base: str = ""         # a folder of graders/<id>/ (e.g. full_marks/<name>) to patch instead of the reference


def load_bugs(cfg: AssignmentConfig) -> list[Bug]:
    path = cfg.grader_dir / "bugs.toml"
    if not path.is_file():
        return []
    raw = tomllib.loads(path.read_text())
    bugs = []
    for i, b in enumerate(raw.get("bug", [])):
        missing = {"name", "file", "find", "replace"} - set(b)
        if missing:
            raise ConfigError(f"{path}: bug {i + 1} lacks {sorted(missing)}")
        bugs.append(Bug(b["name"], b["file"], b["find"], b["replace"], b.get("why", ""), tuple(b.get("fails", [])),
                        bool(b.get("advice", False)), str(b.get("base", ""))))
    return bugs


def bug_submission(cfg: AssignmentConfig, bug: Bug) -> dict[str, bytes]:
    """The reference (or, with ``base``, another correct submission, e.g. one of an older interface version) with the
    bug's find/replace applied."""
    if bug.base:
        folder = cfg.grader_dir / bug.base
        if not folder.is_dir():
            raise ConfigError(f"bug {bug.name}: base {bug.base!r} is not a folder of {cfg.grader_dir}")
        base = {rel: (folder / rel).read_bytes() for rel in cfg.submit if (folder / rel).is_file()}
        if bug.file not in base:
            raise ConfigError(f"bug {bug.name}: {bug.file} is not in {bug.base}")
        text = base[bug.file].decode()
        if text.count(bug.find) != 1:
            raise ConfigError(f"bug {bug.name}: the find text occurs {text.count(bug.find)} times in {bug.base}/{bug.file}")
        return {**base, bug.file: text.replace(bug.find, bug.replace).encode()}
    files = reference_sources(cfg)  # a notebook's is its percent-format source (docs/notebooks.md)
    if bug.file not in files:
        raise ConfigError(f"bug {bug.name}: {bug.file} is not a submitted file")
    text = files[bug.file]
    count = text.count(bug.find)
    if count != 1:
        raise ConfigError(f"bug {bug.name}: the find text occurs {count} times in {bug.file} (must be exactly once)")
    files[bug.file] = text.replace(bug.find, bug.replace)
    return build_submission(cfg, files)


def materialise(files: dict[str, bytes], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


