"""The hidden suite of seq2seq_translation, proven by running it.

- `dlgrade validate` on a subset of the bug catalogue (the whole catalogue takes about ten
  minutes on one CPU): the reference scores full marks, the skeleton 0, each bug loses points
  and fails the tests it names; the subset holds the bugs the threshold tests must catch.
- Correct submissions written differently from the reference get full marks. Each fixture in
  graders/seq2seq_translation/full_marks/ is a patch against the reference (markers
  removed), named by how it differs.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import check_full_marks_differ

from dlgrade.bugs import materialise
from dlgrade.config import find_root, load_assignment
from dlgrade.grade import grade_one
from dlgrade.release import reference_submission
from dlgrade.sandbox import get_backend
from dlgrade.validate import full_marks_submissions

ROOT = find_root(Path(__file__).parent)
BUGS = ["rnn_output_from_new_hidden", "lstm_no_forget_gate", "encoder_lstm_transforms_cell", "attention_dot_product",
        "decoder_ignores_attention", "seq2seq_feeds_source", "transformer_no_position", "transformer_unscaled_scores",
        "full_no_causal_mask", "full_no_padding_masks", "theory_uses_autograd"]


@pytest.mark.slow
def test_validate_proves_the_suite(tmp_path: Path) -> None:
    """Reference, skeleton, the differently written full-marks submissions and the bug subset, two cases at a time;
    a bug's threshold training is skipped once it is caught, unless its `fails` names the threshold test."""
    full = [f"full-{name}" for name in full_marks_submissions(load_assignment("seq2seq_translation", ROOT))]
    assert len(full) >= 3
    res = subprocess.run([sys.executable, "-m", "dlgrade", "validate", "seq2seq_translation", "--out", str(tmp_path),
                          "--seed", "7", "-j", "2", "--fast", "--only", "reference", "skeleton", *full, *BUGS],
                         cwd=ROOT, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-3000:]
    cases = {c["name"]: c for c in json.loads((tmp_path / "seq2seq_translation" / "validate" / "validate.json").read_text())}
    assert set(cases) == {"spec tags", "reference", "skeleton", *full, *(f"bug-{b}" for b in BUGS)}
    assert all(c["ok"] for c in cases.values())
    assert cases["reference"]["score"] == cases["reference"]["max_score"] > 0
    assert cases["skeleton"]["score"] == 0


def test_differently_written_correct_submissions_differ_from_the_reference() -> None:
    """The full-marks submissions (graded by the validate test above) are really written unlike the reference."""
    check_full_marks_differ("seq2seq_translation")


@pytest.mark.slow
def test_forbidden_lstm_and_missing_theory_cost_only_their_parts(tmp_path: Path) -> None:
    """nn.LSTM inside the hand-written LSTM fails the lstm part only (the Encoder may use it); no theory.py fails theory only."""
    cfg = load_assignment("seq2seq_translation", ROOT)
    files = reference_submission(cfg)
    del files["theory.py"]
    files["models/naive/LSTM.py"] = files["models/naive/LSTM.py"].replace(
        b"        return h_t, c_t\n",
        b"        _, (h, c) = nn.LSTM(self.input_size, self.hidden_size, batch_first=True)(x)\n        return h[0], c[0]\n")
    folder = materialise(files, tmp_path / "sub")
    backend = get_backend("process")
    try:
        result = grade_one(cfg, backend, folder, 5, tmp_path / "out")
    finally:
        backend.shutdown()
    failed = {t.part for t in result.tests if t.status != "passed"}
    assert failed == {"lstm", "theory"}, [(t.name, t.output[:200]) for t in result.tests if t.status != "passed"]
    lstm = [t for t in result.tests if t.part == "lstm"]
    assert all(t.score == 0 and "torch.nn.LSTM" in t.output for t in lstm)
    assert any("theory.py is missing" in t.output for t in result.tests if t.part == "theory")
    assert not result.grader_errors


@pytest.mark.slow
def test_theory_turned_off_costs_nothing_and_says_so(tmp_path: Path) -> None:
    """An instructor whose cohort answers the theory on paper turns the part off: no theory.py is then no loss."""
    cfg = load_assignment("seq2seq_translation", ROOT)
    theory = cfg.all_parts["theory"]
    assert theory.files == ("theory.py",)
    cfg = dataclasses.replace(cfg, all_parts={**cfg.all_parts, "theory": dataclasses.replace(theory, enabled=False)})
    files = reference_submission(cfg)
    del files["theory.py"]
    backend = get_backend("process")
    try:
        result = grade_one(cfg, backend, materialise(files, tmp_path / "sub"), 5, tmp_path / "out")
    finally:
        backend.shutdown()
    assert result.score == result.max_score == 50
    assert not any(t.part == "theory" for t in result.tests)
    assert "not graded" in result.output and "missing" not in result.output
    assert "theory" not in cfg.parts
