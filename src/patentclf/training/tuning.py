"""After training: fit a bundle's TF-IDF partner and its calibration on the validation split.

The LLM's weights are not touched; everything fitted here is a few numbers in ``patentclf.json``
plus the TF-IDF model files (see ``ensemble.py``), so it can be redone on any bundle
(``patentclf calibrate``). What is fitted, and in which order, is ``calibration.Calibration``.
"""

from __future__ import annotations

from patentclf.corpus.data import Split
from patentclf.inference.calibration import Calibration, Truth
from patentclf.model.ensemble import TfidfModels, fit_tfidf, tfidf_targets


def fit_calibration(classifier, validation: Split) -> Calibration:
    """The classifier's calibration fitted on ``validation`` (the classifier is left unchanged)."""
    raw = classifier.raw_outputs(validation.texts)
    truth = Truth.from_split(list(validation.labels), validation.codes, classifier.layout)
    return Calibration.fit(raw, classifier.tfidf_outputs(validation.texts), truth, classifier.layout)


def calibrate_classifier(classifier, train: Split, validation: Split, *, tfidf: bool = True) -> dict:
    """Fit the TF-IDF partner on ``train`` (``tfidf``; stored in the classifier's bundle folder), then
    the calibration on ``validation``; the classifier is left calibrated. Returns the calibration
    as ``patentclf.json`` stores it."""
    if tfidf:
        fit_tfidf(train.texts, tfidf_targets(train, classifier.layout)).save(classifier.path)
        classifier.tfidf = TfidfModels.load(classifier.path)
    classifier.calibration = fit_calibration(classifier, validation)
    return classifier.calibration.to_dict()
