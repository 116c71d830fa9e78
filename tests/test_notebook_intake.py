"""Finding notebooks in submissions: folders and zips, junk, Colab copy names, accept patterns, sizes."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT, write_files
from fixtures.notebooks import make

from dlgrade import intake
from dlgrade.config import AssignmentConfig, load_assignment

NB = make.full_marks()


def toy(tmp_path: Path, extra_toml: str = "", submit: str = '["toy.ipynb"]') -> AssignmentConfig:
    root = tmp_path / "root"
    (root / "assignments" / "toy_nb").mkdir(parents=True, exist_ok=True)
    (root / "graders").mkdir(exist_ok=True)
    (root / "assignments" / "toy_nb" / "assignment.toml").write_text(f"submit = {submit}\n{extra_toml}")
    return load_assignment("toy_nb", root)


def zipped(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    return path


@pytest.mark.parametrize("name, stem", [
    ("hw4_rnn.ipynb", "hw4_rnn"), ("Copy of hw4_rnn.ipynb", "hw4_rnn"), ("hw4_rnn (1).ipynb", "hw4_rnn"),
    ("hw4_rnn(2).ipynb", "hw4_rnn"), ("Copy of Copy of HW4_RNN (3).ipynb", "hw4_rnn"), ("hw4_rnn - Copy.ipynb", "hw4_rnn"),
    ("hw4_rnn_final.ipynb", "hw4_rnn_final"), ("hw4_rnn.py", None), ("copy of notes.IPYNB", "notes"),
])
def test_copy_names(name: str, stem: str | None) -> None:
    assert intake.copy_stem(name) == stem


def test_a_notebook_in_a_nested_zip_with_junk(tmp_path: Path) -> None:
    cfg = toy(tmp_path)
    z = zipped(tmp_path / "s123.zip", {"s123/hw/toy.ipynb": NB, "__MACOSX/s123/hw/._toy.ipynb": b"\0\5",
                                       "s123/hw/.ipynb_checkpoints/toy-checkpoint.ipynb": b"{}", "s123/notes.txt": b"x"})
    got = intake.read_submission(z, cfg)
    assert got.student == "s123" and got.problems == ()
    assert set(got.files) == {"toy.py"} and got.files["toy.py"] == got.notebooks["toy.ipynb"].source.encode()
    assert got.originals == {"toy.ipynb": NB}


def test_an_exact_name_wins_over_copies_which_win_over_accept_patterns(tmp_path: Path) -> None:
    cfg = toy(tmp_path, '[notebooks."toy.ipynb"]\naccept = ["*.ipynb"]\n')
    blank = make.blank()
    got = intake.read_submission(write_files({"a/toy.ipynb": NB, "Copy of toy.ipynb": blank, "mine.ipynb": blank}, tmp_path / "s1"),
                                 cfg)
    assert got.originals["toy.ipynb"] == NB
    assert got.problems == ("toy.ipynb: graded a/toy.ipynb; other notebooks found and not graded: Copy of toy.ipynb, mine.ipynb",)
    got = intake.read_submission(write_files({"Copy of toy.ipynb": NB, "mine.ipynb": blank}, tmp_path / "s2"), cfg)
    assert got.originals["toy.ipynb"] == NB
    assert got.problems == ("toy.ipynb was not found; graded Copy of toy.ipynb instead (a copy's name of it); "
                            "not graded: mine.ipynb",)
    got = intake.read_submission(write_files({"homework.ipynb": NB}, tmp_path / "s3"), cfg)
    assert got.originals["toy.ipynb"] == NB
    assert got.problems == ("toy.ipynb was not found; graded homework.ipynb instead (it matches the assignment's accept "
                            "patterns)",)


def test_without_accept_patterns_another_name_is_missing(tmp_path: Path) -> None:
    cfg = toy(tmp_path)
    got = intake.read_submission(write_files({"homework.ipynb": NB}, tmp_path / "s"), cfg)
    assert got.files == {} and got.problems == ("toy.ipynb is missing from the submission",)


def test_three_notebooks_each_by_its_own_name(tmp_path: Path) -> None:
    cfg = toy(tmp_path, '[notebooks."a.ipynb"]\naccept = ["*.ipynb"]\n', submit='["a.ipynb", "b.ipynb", "c.ipynb"]')
    files = {"hw/Copy of a.ipynb": NB, "hw/b (1).ipynb": NB, "hw/c.ipynb": NB}
    got = intake.read_submission(zipped(tmp_path / "s.zip", files), cfg)
    assert set(got.notebooks) == {"a.ipynb", "b.ipynb", "c.ipynb"} and set(got.files) == {"a.py", "b.py", "c.py"}
    assert len(got.problems) == 2  # a and b were found under copy names; c.ipynb is not a candidate for a


def test_a_folder_holding_a_copy_named_notebook_is_one_submission(tmp_path: Path) -> None:
    cfg = toy(tmp_path)
    single = write_files({"Copy of toy.ipynb": NB, "data/train.csv": b"1,2"}, tmp_path / "alice")
    assert intake.find_submissions(single, cfg) == [single]
    klass = tmp_path / "class"
    write_files({"Copy of toy.ipynb": NB}, klass / "bob")
    write_files({"toy.ipynb": NB}, klass / "carol")
    assert intake.find_submissions(klass, cfg) == [klass / "bob", klass / "carol"]


def test_notebooks_up_to_64_mib_are_read_and_larger_ones_reported(tmp_path: Path) -> None:
    cfg = toy(tmp_path)
    big = make.images(4)
    assert intake.MAX_FILE_BYTES < len(big) < intake.MAX_NOTEBOOK_BYTES
    assert intake.read_submission(write_files({"toy.ipynb": big}, tmp_path / "ok"), cfg).notebooks["toy.ipynb"].readable
    huge = tmp_path / "huge" / "toy.ipynb"
    huge.parent.mkdir()
    with huge.open("wb") as f:
        f.truncate(intake.MAX_NOTEBOOK_BYTES + 1)  # sparse: nothing is written
    got = intake.read_submission(huge.parent, cfg)
    assert got.files == {} and got.problems[0] == "toy.ipynb is larger than 64 MiB and was ignored"


def test_py_assignments_do_not_load_nbformat() -> None:
    code = ("import sys, tempfile, pathlib\nfrom dlgrade import intake\nfrom dlgrade.config import load_assignment\n"
            "cfg = load_assignment('lstm_lm_vit')\nd = pathlib.Path(tempfile.mkdtemp())\n"
            "(d / 'lstm_solution.py').write_text('x = 1')\n(d / 'x.ipynb').write_text('{}')\n"
            "got = intake.read_submission(d, cfg)\nassert got.notebooks == {} and set(got.files) == {'lstm_solution.py'}\n"
            "print('nbformat' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
