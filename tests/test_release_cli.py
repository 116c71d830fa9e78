"""Release, check and validate, driven through the command line as users run them."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dlgrade.config import find_root, load_assignment
from dlgrade.markers import MarkerError, keep_solutions, strip_solutions
from dlgrade.validate import full_marks_submissions

ROOT = find_root(Path(__file__).parent)


def dlgrade(*args: str, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dlgrade", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def public_points(output: str) -> tuple[float, float]:
    match = re.search(r"Public tests: ([0-9.]+) / ([0-9.]+) points", output)
    assert match, output[-2000:]
    return float(match.group(1)), float(match.group(2))


def test_strip_solutions_keeps_given_code_and_stubs_regions() -> None:
    text = (
        "class A:\n"
        "    def __init__(self):\n"
        "        self.given = 1\n"
        "        # BEGIN SOLUTION stub: pass\n"
        "        self.secret = 2\n"
        "        # END SOLUTION\n"
        "    def f(self, x):\n"
        "        # BEGIN SOLUTION\n"
        "        return x * 42\n"
        "        # END SOLUTION\n"
    )
    skeleton = strip_solutions(text)
    assert "42" not in skeleton and "secret" not in skeleton
    assert "self.given = 1" in skeleton
    assert "        pass\n" in skeleton
    assert 'raise NotImplementedError("f: your code here")' in skeleton
    compile(skeleton, "skeleton.py", "exec")
    assert "BEGIN" not in keep_solutions(text) and "x * 42" in keep_solutions(text)
    with pytest.raises(MarkerError):
        strip_solutions("# BEGIN SOLUTION\nx = 1\n")


def test_release_is_reproducible_and_hides_solutions(tmp_path: Path) -> None:
    cfg = load_assignment("lstm_lm_vit", ROOT)
    digests = []
    for out in (tmp_path / "a", tmp_path / "b"):
        res = dlgrade("release", "lstm_lm_vit", "--out", str(out))
        assert res.returncode == 0, res.stderr
        assert "Released" in res.stdout
        digests.append(hashlib.sha256((out / "lstm_lm_vit" / "student.zip").read_bytes()).hexdigest())
    assert digests[0] == digests[1], "two releases of the same tree must be byte-identical"
    student = tmp_path / "a" / "lstm_lm_vit" / "student"
    for rel in cfg.release:
        text = (student / rel).read_text()
        assert "BEGIN SOLUTION" not in text
        compile(text, rel, "exec")
    assert (student / "handout.md").is_file() and (student / "public_tests").is_dir()
    names = zipfile.ZipFile(tmp_path / "a" / "lstm_lm_vit" / "student.zip").namelist()
    assert names == sorted(names) and all(n.startswith("lstm_lm_vit/") for n in names)
    assert not any("graders" in n or "reference_solutions" in n for n in names)


@pytest.mark.slow
def test_check_runs_public_tests_with_points(tmp_path: Path) -> None:
    assert dlgrade("release", "lstm_lm_vit", "--out", str(tmp_path)).returncode == 0
    student = tmp_path / "lstm_lm_vit" / "student"
    blank = dlgrade("check", str(student))
    assert blank.returncode != 0
    got, total = public_points(blank.stdout)
    assert total > 0 and got < total / 4, "a blank skeleton must earn (almost) nothing"
    cfg = load_assignment("lstm_lm_vit", ROOT)
    for rel in cfg.submit:  # a student who solved everything
        (student / rel).write_text(keep_solutions((cfg.reference_dir / rel).read_text()))
    solved = dlgrade("check", str(student))
    assert solved.returncode == 0, solved.stdout[-3000:]
    assert public_points(solved.stdout) == (total, total)


# One bug per kind of mistake of every part (an advice entry and both forbidden-API rules among them). CI proves these; the
# whole catalogue (44 bugs, several seeds) is `make validate` / `dlgrade validate lstm_lm_vit --seeds N`, run when it changes.
VALIDATE_BUGS = ("unbiased_variance", "eps_hard_coded", "forbidden_functional_layer_norm", "split_heads_without_transpose",
                 "softmax_over_queries", "no_scaling", "causal_mask_in_encoder", "forbidden_nn_multihead_attention",
                 "prenorm_block_is_postnorm", "get_patches_column_major", "cls_token_appended", "no_position_embedding",
                 "lstm_returns_logits", "loss_counts_padding", "loss_empty_sequence_nan", "attention_ignores_queries")


@pytest.mark.slow
def test_validate_proves_the_suite(tmp_path: Path) -> None:
    """Reference full marks, skeleton 0, every full-marks submission (graders/lstm_lm_vit/full_marks) full marks and a
    bug of every kind of mistake caught; two cases at a time, threshold training skipped for bugs already caught."""
    full = [f"full-{name}" for name in full_marks_submissions(load_assignment("lstm_lm_vit", ROOT))]
    res = dlgrade("validate", "lstm_lm_vit", "--out", str(tmp_path), "--seed", "7", "-j", "2", "--fast",
                  "--only", "reference", "skeleton", *full, *VALIDATE_BUGS)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    cases = json.loads((tmp_path / "lstm_lm_vit" / "validate" / "validate.json").read_text())
    names = {c["name"] for c in cases}
    assert names == {"spec tags", "reference", "skeleton", *full, *(f"bug-{b}" for b in VALIDATE_BUGS)}
    assert all(c["ok"] for c in cases)
    ref = next(c for c in cases if c["name"] == "reference")
    assert ref["score"] == ref["max_score"] > 0
