"""Evaluation metrics."""

from __future__ import annotations

import pytest

from patentclf.training.evaluation import compute_metrics


def test_macro_f1_ignores_stray_predictions_of_absent_sections():
    # Y (8) is never true here; predicting it once must not add a zero to the average.
    metrics = compute_metrics([0, 0, 1, 1], [0, 8, 1, 1])
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["accuracy"] == 0.75
