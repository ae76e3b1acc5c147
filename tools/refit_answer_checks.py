"""Fit a bundle's answer checks (the review rules and each level's reliability points) on its own
validation rows, keeping its calibration; then measure the bundle again on validation and test (the
figures in ``patentclf.json`` and the model card), and what the review flag does on the test rows
and on the non-patent texts kept for measuring.

    python tools/refit_answer_checks.py [BUNDLE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from patentclf.inference.classifier import Classifier
from patentclf.model.bundle import default_model_dir, read_info, write_info
from patentclf.training.cards import write_model_card
from patentclf.training.recalibrate import stored_config
from patentclf.training.trainer import load_training_data, measure_into_info
from patentclf.training.tuning import fit_answer_checks, measure_review


def main(bundle: Path) -> None:
    info = read_info(bundle)
    splits = load_training_data(stored_config(info, evaluate_test=True))
    classifier = Classifier.load(bundle)
    info.calibration = {**info.calibration, **fit_answer_checks(classifier, splits["validation"])}
    info.calibration["review"]["figures"] = measure_review(classifier, splits["test"])
    info = measure_into_info(classifier, splits, info)
    write_info(bundle, info)
    write_model_card(bundle, info)
    print(json.dumps(info.calibration["review"]["figures"], indent=2))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else default_model_dir())
