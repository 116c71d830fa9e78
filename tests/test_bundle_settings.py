"""What `dlgrade bundle` decides before any Gradescope run: limits, pins, contents (fast, no install)."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest
from conftest import ASSIGNMENT, ROOT

from dlgrade.bundle import GRADESCOPE_LIMITS, build_bundle, gradescope_settings, pinned_requirements
from dlgrade.cli import main
from dlgrade.config import AssignmentConfig, load_assignment
from dlgrade.errors import ConfigError


def with_table(cfg: AssignmentConfig, table: dict[str, object]) -> AssignmentConfig:
    return dataclasses.replace(cfg, raw={**cfg.raw, "gradescope": table})


def test_lab_limits_are_not_inherited_and_gradescope_defaults_fit_768_mb() -> None:
    cfg = load_assignment(ASSIGNMENT, ROOT)
    assert cfg.limits.memory_mb > 768  # [limits] is for lab machines
    settings = gradescope_settings(with_table(cfg, {}))
    assert settings.limits.memory_mb == GRADESCOPE_LIMITS["memory_mb"] < 768
    assert settings.limits.submission_timeout_s < settings.run_timeout_s < 600


def test_precedence_defaults_then_assignment_toml_then_command_line() -> None:
    cfg = with_table(load_assignment(ASSIGNMENT, ROOT), {"memory_mb": 1500, "run_timeout_s": 1500, "submission_timeout_s": 1200})
    assert gradescope_settings(cfg).limits.memory_mb == 1500
    s = gradescope_settings(cfg, memory_mb=2000, run_timeout_s=1700)
    assert (s.limits.memory_mb, s.limits.submission_timeout_s, s.run_timeout_s) == (2000, 1200.0, 1700.0)


@pytest.mark.parametrize("table, message", [
    ({"memroy_mb": 100}, "unknown keys"),
    ({"memory_mb": -1}, "must be positive"),
    ({"submission_timeout_s": 600, "run_timeout_s": 590}, "must exceed submission_timeout_s"),
    ({"worker_user": "root; rm -rf /"}, "not a valid user name"),
])
def test_bad_settings_name_where_they_came_from(table: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        gradescope_settings(with_table(load_assignment(ASSIGNMENT, ROOT), table))


def test_requirements_pin_every_runtime_distribution_for_python_3_10_and_later() -> None:
    lines = pinned_requirements()
    assert "torch==2.13.0" in lines  # never the local +cpu label: setup.sh picks the CPU index itself
    names = {line.split(";")[0].split("=")[0].split(">")[0] for line in lines}
    assert {"torch", "numpy", "pytest", "pluggy", "sympy", "typing-extensions"} <= names
    tomli = [line for line in lines if line.startswith("tomli")]
    assert tomli and all('python_version == "3.10"' in line and "3.11" not in line for line in tomli)
    for line in lines:
        if ";" not in line:
            assert "==" in line, f"{line} is not pinned"


def test_cli_builds_a_reproducible_zip_with_the_scripts_executable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bundle", ASSIGNMENT, "--out", str(tmp_path / "a"), "--memory-mb", "300"]) == 0
    assert "autograder.zip" in capsys.readouterr().out
    b = build_bundle(load_assignment(ASSIGNMENT, ROOT), tmp_path / "b", memory_mb=300)
    first = tmp_path / "a" / ASSIGNMENT / "autograder.zip"
    assert first.read_bytes() == b.zip.read_bytes()
    with zipfile.ZipFile(first) as zf:
        infos = {i.filename: i for i in zf.infolist()}
        assert json.loads(zf.read("bundle.json"))["limits"]["memory_mb"] == 300
    assert list(infos) == sorted(infos)
    assert {n: (i.external_attr >> 16) & 0o777 for n, i in infos.items() if (i.external_attr >> 16) & 0o111} == {
        "setup.sh": 0o755, "run_autograder": 0o755}
    assert {i.date_time for i in infos.values()} == {(2020, 1, 1, 0, 0, 0)}
    assert not [n for n in infos if "__pycache__" in n or n.startswith(("dist/", ".git"))]
    # only this assignment's hidden suite and reference travel
    assert {n.split("/")[1] for n in infos if n.startswith(("graders/", "reference_solutions/")) and n.count("/") > 1} == {ASSIGNMENT}
