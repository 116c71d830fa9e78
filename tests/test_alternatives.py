"""Correct submissions written differently from the reference must get full marks.

Each submission in graders/lstm_lm_vit/full_marks/ (a folder, or a patch against the reference)
(markers removed), named by how it differs: fused or chunked QKV projections under other
names, raw nn.Parameters used as x @ W + b with all weights created before all biases,
unfold-based patches, a float64 loss of shape (1,), states returned as a list.
"""

from __future__ import annotations

from conftest import check_full_marks_differ


def test_differently_written_correct_submissions_differ_from_the_reference() -> None:
    """They are graded (full marks) by test_release_cli's validate test; here: each really differs from the reference."""
    check_full_marks_differ("lstm_lm_vit", must_change="vit_solution.py")
