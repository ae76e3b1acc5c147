"""Evaluation metrics."""

from __future__ import annotations

import numpy as np
import pytest

from patentclf.training.evaluation import compute_metrics, expected_calibration_error, plot_reliability, reliability_table


def test_macro_f1_ignores_stray_predictions_of_absent_sections():
    # Y (8) is never true here; predicting it once must not add a zero to the average.
    metrics = compute_metrics([0, 0, 1, 1], [0, 8, 1, 1])
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1) / 2)
    assert metrics["accuracy"] == 0.75


def test_ece_is_small_when_confidence_matches_accuracy_and_large_when_not():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.3, 1.0, 20000)
    honest = rng.random(20000) < confidence
    over = rng.random(20000) < confidence - 0.2
    assert expected_calibration_error(confidence, honest.astype(float)) < 0.02
    assert expected_calibration_error(confidence, over.astype(float)) == pytest.approx(0.2, abs=0.02)
    table = reliability_table(confidence, honest.astype(float))
    assert sum(r["n"] for r in table) == 20000 and all(r["low"] < r["confidence"] <= r["high"] for r in table)


def test_reliability_diagram_is_drawn(tmp_path):
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0, 1, 500)
    table = reliability_table(confidence, (rng.random(500) < confidence).astype(float))
    path = plot_reliability(table, 0.05, tmp_path / "reliability.png")
    assert path.stat().st_size > 5000 and path.read_bytes()[:4] == b"\x89PNG"
