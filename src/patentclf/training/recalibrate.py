"""Recalibrate a bundle in place on the rows it was trained and tuned on (``patentclf calibrate``).

The rows come from the bundle's own training settings (the ``training`` block of ``patentclf.json``):
its data, data config, text fields, limits, extra data and seed, so the TF-IDF partner and the
calibration are fitted again on the very rows that training used.
"""

from __future__ import annotations

from pathlib import Path

from patentclf.inference.classifier import Classifier
from patentclf.model.bundle import BundleInfo, read_info, write_info
from patentclf.model.train_config import TrainConfig
from patentclf.training.cards import write_model_card
from patentclf.training.trainer import load_training_data, measure_into_info
from patentclf.training.tuning import calibrate_classifier


def stored_config(info: BundleInfo, **overrides) -> TrainConfig:
    """The settings a bundle was trained with: the ``training`` block's TrainConfig fields (the run's
    facts recorded beside them, such as train_rows and log_history, are not settings), then ``overrides``."""
    trained = info.training
    stored = {name: getattr(trained, name) for name in TrainConfig.model_fields} if trained else {}
    return TrainConfig(**(stored | overrides))


def recalibrate_bundle(
    bundle_dir: str | Path, *, data: str | None = None, tfidf: bool = True, evaluate: bool = True
) -> BundleInfo:
    """Fit the bundle's TF-IDF partner (``tfidf``) and its calibration again on its own training rows
    (or ``data``'s), and with ``evaluate`` measure validation and test again; the bundle's
    ``patentclf.json`` and model card are rewritten. Returns the new bundle info."""
    info = read_info(bundle_dir)
    config = stored_config(info, evaluate_test=evaluate, **({"data": data} if data else {}))
    splits = load_training_data(config)
    classifier = Classifier.load(bundle_dir)
    info.calibration = calibrate_classifier(classifier, splits["train"], splits["validation"], tfidf=tfidf)
    if evaluate:  # the recorded figures were measured with the old calibration
        info = measure_into_info(classifier, splits, info)
    write_info(bundle_dir, info)
    write_model_card(bundle_dir, info)
    return info
