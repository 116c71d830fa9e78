"""The student-side support files every release carries, written from engine templates and assignment.toml.

- ``public_tests/conftest.py``: imports the student's modules (notebooks built the way the autograder builds
  them, with ``public_tests/notebook_loader.py``), registers the markers, prints the points table;
- ``public_tests/checks.py``: assertions that say what to fix;
- ``collect_submission.py``: zips exactly the files ``submit`` lists (``--name`` names the zip by student id).

One template each (``dlgrade/templates/``): the releases do not keep copies that drift apart. An assignment's
``public_tests/`` folder holds only its own test files.
"""

from __future__ import annotations

from pathlib import Path

from dlgrade.config import AssignmentConfig, module_name

TEMPLATES = Path(__file__).resolve().parent / "templates"
LOADER = Path(__file__).resolve().parent / "notebook" / "standalone.py"
GENERATED = ("public_tests/conftest.py", "public_tests/checks.py", "public_tests/notebook_loader.py", "collect_submission.py")


def _fill(template: str, settings: list[str]) -> str:
    """Replace the lines after ``# @dlgrade:settings`` (up to the next blank line) by ``settings``."""
    lines = template.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("# @dlgrade:settings"))
    end = next(i for i in range(start, len(lines)) if not lines[i].strip())
    header = "# written by `dlgrade release` from assignments/{id}/assignment.toml\n"
    return "".join(lines[:start]) + header + "".join(f"{s}\n" for s in settings) + "".join(lines[end:])


def _preludes(cfg: AssignmentConfig) -> dict[str, str]:
    notebooks = [f for f in cfg.submit if f.endswith(".ipynb")]
    if not notebooks:
        return {}
    from dlgrade import notebook

    settings = notebook.settings(cfg)
    return {module_name(f): settings.spec(f).prelude_source for f in notebooks}


def student_files(cfg: AssignmentConfig) -> dict[str, bytes]:
    modules = {module_name(f): f for f in cfg.submit}
    preludes = _preludes(cfg)
    out = {
        "collect_submission.py": _fill((TEMPLATES / "collect_submission.py").read_text(), [
            f"ASSIGNMENT = {cfg.id!r}", f"FILES = {tuple(cfg.submit)!r}", f"OPTIONAL = {tuple(cfg.optional_files)!r}"]),
    }
    if (cfg.assignment_dir / "public_tests").is_dir():
        out["public_tests/conftest.py"] = _fill((TEMPLATES / "public_conftest.py").read_text(), [
            f"ASSIGNMENT = {cfg.id!r}", f"MODULES = {modules!r}", f"PRELUDES = {preludes!r}"])
        out["public_tests/checks.py"] = (TEMPLATES / "public_checks.py").read_text()
        if preludes:
            out["public_tests/notebook_loader.py"] = LOADER.read_text()
    return {rel: text.replace("{id}", cfg.id).encode() if rel != "public_tests/notebook_loader.py" else text.encode()
            for rel, text in out.items()}
