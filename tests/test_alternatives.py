"""Correct submissions written differently from the reference must get full marks.

Each fixture in tests/fixtures/lstm_lm_vit/full_marks/ is a patch against the reference
(markers removed), named by how it differs: fused or chunked QKV projections under other
names, raw nn.Parameters used as x @ W + b with all weights created before all biases,
unfold-based patches, a float64 loss of shape (1,), states returned as a list.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dlgrade.config import find_root, load_assignment
from dlgrade.grade import grade_one
from dlgrade.release import reference_submission
from dlgrade.sandbox import get_backend
from dlgrade.validate import materialise

ROOT = find_root(Path(__file__).parent)
PATCHES = sorted((ROOT / "tests" / "fixtures" / "lstm_lm_vit" / "full_marks").glob("*.patch"))


@pytest.mark.slow
def test_differently_written_correct_submissions_get_full_marks(tmp_path: Path) -> None:
    cfg = load_assignment("lstm_lm_vit", ROOT)
    assert len(PATCHES) >= 3
    backend = get_backend("process")
    try:
        for patch in PATCHES:
            folder = materialise(reference_submission(cfg), tmp_path / "subs" / patch.stem)
            subprocess.run(["patch", "-s", "-p1", "-d", str(folder), "-i", str(patch)], check=True)
            assert (folder / "vit_solution.py").read_bytes() != reference_submission(cfg)["vit_solution.py"]
            result = grade_one(cfg, backend, folder, 11, tmp_path / "out")
            failed = {t.name: t.output for t in result.tests if t.status != "passed"}
            assert result.score == result.max_score, f"{patch.stem}: {failed}"
    finally:
        backend.shutdown()
