"""Correct submissions written differently from the reference must get full marks.

Each submission in graders/lstm_lm_vit/full_marks/ (a folder, or a patch against the reference)
(markers removed), named by how it differs: fused or chunked QKV projections under other
names, raw nn.Parameters used as x @ W + b with all weights created before all biases,
unfold-based patches, a float64 loss of shape (1,), states returned as a list.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import grade_full_marks_patches


@pytest.mark.slow
def test_differently_written_correct_submissions_get_full_marks(tmp_path: Path) -> None:
    grade_full_marks_patches("lstm_lm_vit", tmp_path, must_change="vit_solution.py")
