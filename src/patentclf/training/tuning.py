"""After training: fit a bundle's TF-IDF partner and its calibration on the validation split.

The LLM's weights are not touched; everything fitted here is a few numbers in ``patentclf.json``
plus the TF-IDF model files (see ``ensemble.py``), so it can be redone on any bundle
(``patentclf calibrate``). What is fitted, and in which order, is ``calibration.Calibration``.
"""

from __future__ import annotations

from pathlib import Path

from patentclf.corpus.data import Split
from patentclf.corpus.hierarchy import targets
from patentclf.inference.calibration import Calibration, Truth
from patentclf.model.bundle import read_info, write_info
from patentclf.model.ensemble import fit_tfidf
from patentclf.model.heads import HeadLayout


def tfidf_targets(split: Split, layout: HeadLayout) -> dict[str, list]:
    """Per-row targets for the TF-IDF models: the section always, class / subclass where the row's
    main code is in the model's vocabulary."""
    found = [targets(codes) for codes in split.codes]
    out: dict[str, list] = {"section": list(split.labels)}
    if layout.hierarchical:
        classes, subclasses = set(layout.classes), set(layout.subclasses)
        out["class"] = [t.main_class if t and t.main_class in classes else None for t in found]
        out["subclass"] = [t.main_subclass if t and t.main_subclass in subclasses else None for t in found]
    return out


def fit_calibration(classifier, validation: Split) -> Calibration:
    """The classifier's calibration fitted on ``validation`` (the classifier is left unchanged)."""
    raw = classifier.raw_outputs(validation.texts)
    truth = Truth.from_split(list(validation.labels), validation.codes, classifier.layout)
    return Calibration.fit(raw, classifier.tfidf_outputs(validation.texts), truth, classifier.layout)


def calibrate_classifier(classifier, train: Split, validation: Split, *, tfidf: bool = True) -> dict:
    """Fit the TF-IDF partner on ``train`` (``tfidf``; stored in the classifier's bundle folder), then
    the calibration on ``validation``; the classifier is left calibrated. Returns the calibration
    as ``patentclf.json`` stores it."""
    from patentclf.model.ensemble import TfidfModels

    if tfidf:
        fit_tfidf(train.texts, tfidf_targets(train, classifier.layout)).save(classifier.path)
        classifier.tfidf = TfidfModels.load(classifier.path)
    classifier.calibration = fit_calibration(classifier, validation)
    return classifier.calibration.to_dict()


def tune_bundle(bundle_dir: str | Path, train: Split, validation: Split, *, tfidf: bool = True) -> dict:
    """``calibrate_classifier`` on the bundle in ``bundle_dir``, stored in its ``patentclf.json``."""
    from patentclf.inference.classifier import Classifier

    info = read_info(bundle_dir)
    info.calibration = calibrate_classifier(Classifier.load(bundle_dir), train, validation, tfidf=tfidf)
    write_info(bundle_dir, info)
    return info.calibration
