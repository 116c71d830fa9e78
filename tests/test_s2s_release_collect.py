"""`collect_submission.py` as the release writes it (engine template + assignment.toml), run as a student would
on seq2seq_translation's reference and skeleton, and on a notebook assignment's files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dlgrade.config import load_assignment
from dlgrade.markers import keep_solutions, strip_solutions
from dlgrade.release import reference_submission
from dlgrade.student_files import student_files

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "reference_solutions" / "seq2seq_translation"
GRADED = load_assignment("seq2seq_translation").submit  # what the grader takes = what the script must zip

pytestmark = pytest.mark.skipif(not (REFERENCE / "theory.py").is_file(), reason="the seq2seq reference is not there yet")


def folder_with(tmp_path: Path, solved: bool) -> Path:
    """A release-like folder: the seven graded files (solved or skeleton) plus an extra file."""
    folder = tmp_path / "seq2seq_translation"
    for rel in GRADED:
        text = (REFERENCE / rel).read_text()
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(keep_solutions(text) if solved else strip_solutions(text, rel))
    (folder / "notes.txt").write_text("not graded")
    (folder / "models" / "__init__.py").write_text("")
    return folder


def script(assignment: str = "seq2seq_translation") -> bytes:
    return student_files(load_assignment(assignment))["collect_submission.py"]


def collect(folder: Path, *args: str, assignment: str = "seq2seq_translation") -> subprocess.CompletedProcess[str]:
    path = folder / "collect_submission.py"
    path.write_bytes(script(assignment))
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=60)


def test_zips_exactly_the_seven_files_with_their_paths(tmp_path):
    folder = folder_with(tmp_path, solved=True)
    run = collect(folder)
    assert run.returncode == 0, run.stdout + run.stderr
    with zipfile.ZipFile(folder / "submission.zip") as zf:
        assert sorted(zf.namelist()) == sorted(GRADED)
        assert zf.read("models/seq2seq/Decoder.py") == (folder / "models/seq2seq/Decoder.py").read_bytes()
    assert "warning" not in run.stdout
    assert "7 of 7 files" in run.stdout
    first = (folder / "submission.zip").read_bytes()
    assert collect(folder).returncode == 0 and (folder / "submission.zip").read_bytes() == first  # reproducible


def test_refuses_a_missing_file_unless_allowed(tmp_path):
    folder = folder_with(tmp_path, solved=True)
    (folder / "theory.py").unlink()
    run = collect(folder)
    assert run.returncode == 1 and "theory.py: missing" in run.stdout
    assert not (folder / "submission.zip").exists()
    run = collect(folder, "--allow-incomplete", "--out", str(tmp_path / "partial.zip"))
    assert run.returncode == 0 and "6 of 7 files (1 missing)" in run.stdout
    with zipfile.ZipFile(tmp_path / "partial.zip") as zf:
        assert "theory.py" not in zf.namelist() and len(zf.namelist()) == 6


def test_refuses_the_untouched_skeleton(tmp_path):
    folder = folder_with(tmp_path, solved=False)
    run = collect(folder)
    assert run.returncode == 1 and "nothing written yet" in run.stdout
    for rel in GRADED:
        assert f"{rel}: every TODO still holds its stub" in run.stdout
    assert "rnn_bias_gradient() still raises NotImplementedError" in run.stdout
    assert not (folder / "submission.zip").exists()
    # one file worked on: the zip is written, with warnings for the others
    (folder / "theory.py").write_text(keep_solutions((REFERENCE / "theory.py").read_text()))
    run = collect(folder)
    assert run.returncode == 0 and "7 of 7 files" in run.stdout
    assert "theory.py: every TODO" not in run.stdout and "models/naive/RNN.py: every TODO still holds its stub" in run.stdout


def test_warns_about_functions_that_still_raise(tmp_path):
    folder = folder_with(tmp_path, solved=True)
    solved = keep_solutions((REFERENCE / "models/Transformer.py").read_text())
    # a finished file with one function left unfinished
    (folder / "models/Transformer.py").write_text(
        solved + "\n\ndef leftover():\n    # TODO: your code here\n    raise NotImplementedError('leftover: your code here')\n"
    )
    (folder / "theory.py").write_text("def rnn_bias_gradient(x, y, U, W, V, b, c)\n    return b\n")  # syntax error
    run = collect(folder)
    assert run.returncode == 1 and "theory.py: does not parse (line 1" in run.stdout
    assert "models/Transformer.py, line" in run.stdout and "leftover() still raises NotImplementedError" in run.stdout


def test_the_release_writes_it_from_assignment_toml_with_a_student_id_name(tmp_path):
    cfg = load_assignment("lstm_lm_vit")
    text = script("lstm_lm_vit").decode()
    assert f"FILES = {tuple(cfg.submit)!r}" in text and "ASSIGNMENT = 'lstm_lm_vit'" in text
    folder = tmp_path / "lstm"
    folder.mkdir()
    for rel, data in reference_submission(cfg).items():
        (folder / rel).write_bytes(data)
    run = collect(folder, "--name", "2024-20000", assignment="lstm_lm_vit")
    assert run.returncode == 0, run.stdout + run.stderr
    with zipfile.ZipFile(folder / "2024-20000.zip") as zf:
        assert sorted(zf.namelist()) == sorted(cfg.submit)


def test_a_broken_notebook_is_refused(tmp_path):
    cfg = load_assignment("transformer_vit_gpt")
    folder = tmp_path / "tvg"
    folder.mkdir()
    for rel in cfg.submit:
        (folder / rel).write_text("{not json")
    run = collect(folder, assignment="transformer_vit_gpt")
    assert run.returncode == 1 and "is not a readable notebook" in run.stdout
