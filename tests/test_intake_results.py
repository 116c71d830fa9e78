"""Intake (finding and reading submissions) and results (results.json, grades.csv)."""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import pytest
from conftest import check_gradescope, write_files

from dlgrade import intake, results
from dlgrade.grade import GradeOptions, grade_batch
from dlgrade.results import (
    MAX_TEST_OUTPUT,
    GradeRow,
    SubmissionResult,
    read_results,
    to_gradescope,
    write_grades_csv,
    write_results,
)

LSTM, VIT = b"# lstm\n", b"# vit\n"


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name exactly as given
    return path


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ----------------------------------------------------------------------------- reading one submission


def test_folder_submission_at_any_depth(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = write_files({"hw3/src/models/lstm_solution.py": LSTM, "hw3/vit_solution.py": VIT, "hw3/notes.txt": b"x",
                          "hw3/src/other.py": b"x"}, tmp_path / "alice")
    got = intake.read_submission(folder, cfg)
    assert got.student == "alice"
    assert got.files == {"lstm_solution.py": LSTM, "vit_solution.py": VIT}
    assert got.problems == ()


def test_zip_submission_at_any_depth(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    z = make_zip(tmp_path / "bob.zip", {"bob/": b"", "bob/deep/er/lstm_solution.py": LSTM, "bob/vit_solution.py": VIT,
                                        "bob/run_lstm.py": b"print('not submitted')"})
    got = intake.read_submission(z, cfg)
    assert got.student == "bob"
    assert got.files == {"lstm_solution.py": LSTM, "vit_solution.py": VIT}
    assert got.problems == ()


def test_macosx_and_hidden_junk_is_ignored(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    junk = {"__MACOSX/hw/lstm_solution.py": b"\x00\x05\x16\x07 resource fork", "__MACOSX/hw/._vit_solution.py": b"\x00",
            "hw/.ipynb_checkpoints/lstm_solution.py": b"old checkpoint", "hw/.git/vit_solution.py": b"hidden",
            "hw/._lstm_solution.py": b"\x00"}
    z = make_zip(tmp_path / "carol.zip", {**junk, "hw/lstm_solution.py": LSTM, "hw/vit_solution.py": VIT})
    folder = write_files({**junk, "hw/lstm_solution.py": LSTM, "hw/vit_solution.py": VIT}, tmp_path / "carol")
    for source in (z, folder):
        got = intake.read_submission(source, cfg)
        assert got.files == {"lstm_solution.py": LSTM, "vit_solution.py": VIT}, source
        assert got.problems == (), source


def test_duplicates_are_reported_and_the_shallowest_is_graded(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = write_files({"lstm_solution.py": LSTM, "old/lstm_solution.py": b"# old", "b/vit_solution.py": VIT,
                          "a/vit_solution.py": b"# a"}, tmp_path / "dave")
    got = intake.read_submission(folder, cfg)
    assert got.files["lstm_solution.py"] == LSTM
    assert got.files["vit_solution.py"] == b"# a"  # same depth: the first path in sorted order
    assert "lstm_solution.py appears 2 times; graded lstm_solution.py" in got.problems
    assert "vit_solution.py appears 2 times; graded a/vit_solution.py" in got.problems


def test_missing_files_are_reported(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    got = intake.read_submission(write_files({"src/vit_solution.py": VIT}, tmp_path / "erin"), cfg)
    assert got.files == {"vit_solution.py": VIT}
    assert got.problems == ("lstm_solution.py is missing from the submission",)
    empty = intake.read_submission(make_zip(tmp_path / "frank.zip", {}), cfg)
    assert empty.files == {} and len(empty.problems) == 2


def test_zip_with_escaping_paths_extracts_nothing(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path / "class"
    z = make_zip(base / "mallory.zip", {
        "../../escaped/lstm_solution.py": b"# climbed out",
        "/tmp/dlgrade-absolute/vit_solution.py": b"# absolute",
        "hw/../../../escaped.py": b"# climbed out",
        "hw/lstm_solution.py": LSTM, "hw/vit_solution.py": VIT,
    })
    before = tree(tmp_path)
    got = intake.read_submission(z, cfg)
    assert tree(tmp_path) == before, "reading a zip wrote files"
    assert not Path("/tmp/dlgrade-absolute").exists() and not (tmp_path / "escaped").exists()
    assert got.files["lstm_solution.py"] == LSTM  # the escaping copy is junk ("/.."), not a duplicate


def test_oversized_files_and_broken_zips_are_reported(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    big = b"#" * (intake.MAX_FILE_BYTES + 1)
    z = make_zip(tmp_path / "big.zip", {"lstm_solution.py": big, "vit_solution.py": VIT})
    got = intake.read_submission(z, cfg)
    assert "lstm_solution.py" not in got.files and any("larger than" in p for p in got.problems)
    folder = write_files({"lstm_solution.py": big, "vit_solution.py": VIT}, tmp_path / "bigfolder")
    assert any("larger than" in p for p in intake.read_submission(folder, cfg).problems)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 this is not really a zip")
    got = intake.read_submission(broken, cfg)
    assert got.files == {} and any("could not be read" in p for p in got.problems)


def test_symlinks_in_a_folder_are_not_followed(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    secret = write_files({"lstm_solution.py": b"# somebody else's", "vit_solution.py": b"# somebody else's"},
                         tmp_path / "elsewhere")
    folder = tmp_path / "oscar"
    folder.mkdir()
    (folder / "lstm_solution.py").symlink_to(secret / "lstm_solution.py")
    (folder / "linked").symlink_to(secret, target_is_directory=True)
    got = intake.read_submission(folder, cfg)
    assert got.files == {}
    assert "lstm_solution.py is missing from the submission" in got.problems


# ----------------------------------------------------------------------------- finding the students


def test_find_submissions(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    single = write_files({"lstm_solution.py": LSTM}, tmp_path / "single")
    assert intake.find_submissions(single, cfg) == [single]
    klass = tmp_path / "class"
    write_files({"hw/lstm_solution.py": LSTM}, klass / "alice")
    make_zip(klass / "bob.zip", {"vit_solution.py": VIT})
    write_files({"lstm_solution.py": LSTM}, klass / ".hidden")
    write_files({"notes.txt": b"x"}, klass)
    (klass / "empty").mkdir()
    assert intake.find_submissions(klass, cfg) == [klass / "alice", klass / "bob.zip", klass / "empty"]
    (tmp_path / "nothing").mkdir()
    assert intake.find_submissions(tmp_path / "nothing", cfg) == [tmp_path / "nothing"]
    assert intake.find_submissions(klass / "bob.zip", cfg) == [klass / "bob.zip"]
    with pytest.raises(FileNotFoundError):
        intake.find_submissions(tmp_path / "missing", cfg)


@pytest.mark.parametrize("name, expected", [
    ("alice", "alice"), ("bob.zip", "bob"), ("Jose Nunez (late).zip", "Jose_Nunez_late"),
    ("../../etc/passwd.zip", "passwd"), ("..", "student"), ("...zip", "student"), ("a/b\\c", "b_c"),
    ("ünïcødé", "n_c_d"), ("x@uni.edu", "x@uni.edu"),
])
def test_student_ids_are_safe_folder_names(name: str, expected: str) -> None:
    sid = intake.student_id(Path(name))
    assert sid == expected
    assert "/" not in sid and not sid.startswith(".") and sid


def test_two_submissions_with_one_student_id_stop_the_batch(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    klass = tmp_path / "class"
    write_files({"lstm_solution.py": LSTM}, klass / "alice")
    make_zip(klass / "alice.zip", {"lstm_solution.py": LSTM})
    with pytest.raises(ValueError, match="same student id: alice"):
        grade_batch(cfg, klass, tmp_path / "out", GradeOptions(sandbox="inprocess", seed=1))
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- results


def _result(student: str, scores: dict[str, tuple[float, float]], errors: tuple[str, ...] = ()) -> SubmissionResult:
    tests = tuple(results.TestResult(name=f"{part} test", number=str(i), score=s, max_score=m, status="passed" if s == m else "failed",
                             output="Passed." if s == m else "wrong", visibility="visible", part=part,
                             nodeid=f"graders/x/test_{part}.py::test_{i}")
                  for i, (part, (s, m)) in enumerate(scores.items(), 1))
    return SubmissionResult(student=student, assignment="lstm_lm_vit", seed=7, tests=tests, execution_time=1.5,
                            output=f"{student}: summary", grader_errors=errors, stdout="printed\n")


def test_results_json_is_gradescope_format(tmp_path: Path) -> None:
    r = _result("zoe", {"lstm": (2, 2), "vit": (0, 1.5)})
    path = write_results(r, tmp_path / "zoe")
    data = read_results(path)
    check_gradescope(data)
    assert data["score"] == 2 and data["extra_data"]["max_score"] == 3.5
    assert [t["tags"] for t in data["tests"]] == [["lstm"], ["vit"]]
    assert (tmp_path / "zoe" / "student_output.txt").read_text() == "printed\n"
    assert not list((tmp_path / "zoe").glob("*.tmp")), "the atomic write left its temporary file"


def test_long_outputs_are_clipped() -> None:
    r = _result("yan", {"lstm": (0, 1)})
    long = results.TestResult(**{**r.tests[0].__dict__, "output": "x" * (3 * MAX_TEST_OUTPUT)})
    data = to_gradescope(SubmissionResult(**{**r.__dict__, "tests": (long,), "output": "y" * 1_000_000}))
    assert len(data["tests"][0]["output"]) < MAX_TEST_OUTPUT + 100 and "truncated" in data["tests"][0]["output"]
    assert len(data["output"]) < 100_000
    json.dumps(data, allow_nan=False)


def test_grades_csv_columns(cfg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    graded = [_result("bob", {"lstm": (9, 9), "layernorm": (1, 5), "attention": (17, 17), "vit": (0, 6)}),
               _result("alice", {"lstm": (4.5, 9), "vit": (6, 6)}),
               _result("carl", {"lstm": (0, 9)}, errors=("Traceback ...",))]
    rows = []
    for r in graded:
        rows.append(GradeRow.from_results(read_results(write_results(r, tmp_path / r.student))))
    path = write_grades_csv(rows, cfg.parts, tmp_path / "grades.csv")
    with path.open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["student_id", "total", "max_score", "lstm", "layernorm", "attention", "vit", "seed", "status"]
    assert list(cfg.parts) == ["lstm", "layernorm", "attention", "vit"]
    by_id = {row[0]: dict(zip(table[0], row, strict=True)) for row in table[1:]}
    assert [row[0] for row in table[1:]] == ["alice", "bob", "carl"]
    numbers = {sid: {k: float(v) for k, v in row.items() if k not in ("student_id", "status")} for sid, row in by_id.items()}
    assert numbers["bob"] == {"total": 27, "max_score": 37, "lstm": 9, "layernorm": 1, "attention": 17, "vit": 0, "seed": 7}
    assert numbers["alice"] == {"total": 10.5, "max_score": 15, "lstm": 4.5, "layernorm": 0, "attention": 0, "vit": 6,
                                "seed": 7}
    assert by_id["alice"]["status"] == "graded"
    assert by_id["carl"]["status"] == "grader error"
