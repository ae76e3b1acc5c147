"""After training: fit a bundle's TF-IDF partner and its calibration on the validation split.

The LLM's weights are not touched; everything fitted here is a few numbers in ``patentclf.json``
plus the TF-IDF model files (see ``ensemble.py``), so it can be redone on any bundle
(``patentclf calibrate``). What is fitted, and in which order, is ``calibration.Calibration``; then
the checks on the answer (``review.ReviewRules``) and what each level's probability has meant
(``review.Reliability``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from patentclf.corpus.data import Split
from patentclf.corpus.hierarchy import targets
from patentclf.corpus.labels import CODES
from patentclf.corpus.screening import non_patent_texts, patent_form_texts
from patentclf.inference.calibration import Calibration, Truth
from patentclf.inference.classifier import EMBEDDING
from patentclf.inference.review import PatentLikeness, Reliability, ReviewRules, fit_uncertain_below
from patentclf.model.ensemble import TfidfModels, fit_tfidf, tfidf_targets


def fit_calibration(classifier, validation: Split, raw: dict[str, np.ndarray] | None = None) -> Calibration:
    """The classifier's calibration fitted on ``validation`` (the classifier is left unchanged);
    ``raw``: its raw outputs on those rows, where already computed."""
    raw = raw if raw is not None else classifier.raw_outputs(validation.texts)
    truth = Truth.from_split(list(validation.labels), validation.codes, classifier.layout)
    return Calibration.fit(raw, classifier.tfidf_outputs(validation.texts), truth, classifier.layout)


def fit_answer_checks(classifier, validation: Split, raw: dict[str, np.ndarray] | None = None) -> dict:
    """With the classifier calibrated: the review rules (``review.ReviewRules``: the not-patent-like
    detector on the representations of the validation patents and the shipped patent claims and
    description paragraphs against the shipped non-patent texts, each's ``fit`` part, and the
    uncertainty threshold) and each level's reliability points, fitted on
    ``validation``; the classifier is left using them. Returns ``{"review": ..., "reliability": ...}``
    for the ``calibration`` block."""
    raw = raw if raw is not None else classifier.raw_outputs(validation.texts)
    likeness = None
    if EMBEDDING in raw:
        # Patents as people paste them: the validation abstracts, and claims and description paragraphs
        # (resources/patent-forms, its fit part), against the non-patent texts' fit part.
        forms = classifier.embed([row["text"] for row in patent_form_texts("fit")])
        others = classifier.embed([row["text"] for row in non_patent_texts("fit")])
        likeness = PatentLikeness.fit(np.concatenate([raw[EMBEDDING], forms]), others)
    classifier.review = ReviewRules(patent_likeness=likeness)  # the threshold below is read without it
    predictions = classifier.answers(raw, validation.texts)
    confidence = np.array([p.confidence for p in predictions])
    classifier.review.uncertain_below = fit_uncertain_below(confidence)
    classifier.reliability = measure_reliability(predictions, validation)
    return {"review": classifier.review.to_dict(), "reliability": classifier.reliability.to_dict()}


def measure_reliability(predictions: list, rows: Split) -> Reliability:
    """Each level's reliability points from predictions of labelled rows (rows without the level's
    code are left out of that level)."""
    found = [targets(codes) for codes in rows.codes]
    truth = {
        "section": [CODES[label] for label in rows.labels],
        "class": [t.main_class if t else None for t in found],
        "subclass": [t.main_subclass if t else None for t in found],
        "group": [groups[0] if groups else None for groups in rows.groups],
    }
    levels = {}
    for level, answers in truth.items():
        pairs = [
            (answer.probability, answer.code == right)
            for prediction, right in zip(predictions, answers)
            for answer in prediction.levels
            if answer.level == level and right
        ]
        if pairs:
            confidence, correct = zip(*pairs)
            levels[level] = Reliability.table(np.array(confidence), np.array(correct, float))
    return Reliability(levels)


def calibrate_classifier(classifier, train: Split, validation: Split, *, tfidf: bool = True) -> dict:
    """Fit the TF-IDF partner on ``train`` (``tfidf``; stored in the classifier's bundle folder), then
    the calibration on ``validation``; the classifier is left calibrated. Returns the calibration
    as ``patentclf.json`` stores it."""
    if tfidf:
        fit_tfidf(train.texts, tfidf_targets(train, classifier.layout)).save(classifier.path)
        classifier.tfidf = TfidfModels.load(classifier.path)
    raw = classifier.raw_outputs(validation.texts)
    classifier.calibration = fit_calibration(classifier, validation, raw)
    return classifier.calibration.to_dict() | fit_answer_checks(classifier, validation, raw)


def _share(values) -> float:
    return round(float(np.mean(values)), 4) if len(values) else 0.0


def _by_reason(predictions: list) -> dict[str, float]:
    """The share of ``predictions`` flagged for each reason."""
    counts = Counter(r.reason for p in predictions for r in p.review_reasons)
    return {reason: round(n / len(predictions), 4) for reason, n in sorted(counts.items())}


def _held_out_flags(classifier, rows: list[dict], group: str) -> dict:
    """What the flag does on shipped texts kept for measuring: the share flagged, by reason, and by
    each row's ``group`` field (``by_<group>``)."""
    predictions = classifier.predict([row["text"] for row in rows])
    grouped: dict[str, list[bool]] = {}
    for row, p in zip(rows, predictions):
        grouped.setdefault(row[group], []).append(p.needs_review)
    return {
        "rows": len(rows),
        "flagged": _share([p.needs_review for p in predictions]),
        "by_reason": _by_reason(predictions),
        f"by_{group}": {name: _share(values) for name, values in sorted(grouped.items())},
    }


def measure_review(classifier, test: Split) -> dict:
    """What the review flag does: on the labelled ``test`` rows, the share flagged (by reason) and the
    error rate of flagged against unflagged answers and the share of all wrong answers flagged; on the
    shipped claims and description paragraphs and the non-patent texts kept for measuring (never
    fitted on), the share flagged, by form and kind."""
    predictions = classifier.predict(test.texts)
    wrong = np.array([p.label_id != label for p, label in zip(predictions, test.labels)])
    flagged = np.array([p.needs_review for p in predictions])
    disagrees = np.array([p.evidence_disagrees for p in predictions])
    return {
        "patents": {
            "rows": len(predictions),
            "flagged": _share(flagged),
            "by_reason": _by_reason(predictions),
            "error_flagged": _share(wrong[flagged]),
            "error_unflagged": _share(wrong[~flagged]),
            "errors_caught": round(float(wrong[flagged].sum() / max(wrong.sum(), 1)), 4),
            "evidence_disagrees": _share(disagrees),
            "error_evidence_disagrees": _share(wrong[disagrees]),
        },
        "patent_forms": _held_out_flags(classifier, patent_form_texts("measure"), "form"),
        "non_patent_texts": _held_out_flags(classifier, non_patent_texts("measure"), "kind"),
    }
