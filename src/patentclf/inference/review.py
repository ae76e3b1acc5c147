"""When not to trust an answer: the reasons a prediction is marked ``needs_review``.

Four reasons, each from what the prediction already has:

* ``too_short``: fewer words than a patent's title and abstract could be classified from (the words
  counted in the text, ``screening.SHORT_WORDS``);
* ``not_english``: the text reads as another language (``screening.probably_not_english``); the model
  was trained on English patents;
* ``not_patent_like``: the model's own representation of the text (the hidden state its heads read)
  is unlike a patent's: a logistic regression fitted on the validation patents' abstracts and on
  claims and description paragraphs (``resources/patent-forms``) against non-patent texts
  (``resources/non-patent-texts``), each's ``fit`` part (the ``measure`` parts measure it), its
  threshold set so that few real patents cross it;
* ``uncertain``: the calibrated section confidence is below a threshold chosen on validation, where
  answers that unsure were wrong about half the time.

The fitted numbers are the ``review`` block of a bundle's ``calibration`` (``patentclf.json``); a bundle
without one is checked on its text alone and on a confidence of 0.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from patentclf.corpus.screening import SHORT_WORDS, probably_not_english, word_count

REASONS = {
    "too_short": f"the text is too short to classify (under {SHORT_WORDS} words)",
    "not_english": "the text does not look like English; the model reads English patents",
    "not_patent_like": "the text does not look like a patent's text (title, abstract, claims or description)",
    "uncertain": "the model is unsure of this answer: its confidence is under the review threshold",
}
DEFAULT_UNCERTAIN_BELOW = 0.5


@dataclass
class PatentLikeness:
    """A logistic regression over the model's representation of a text (standardised): the
    probability that the text is a patent; below ``threshold`` it is not patent-like."""

    mean: list[float]
    scale: list[float]
    coefficients: list[float]
    intercept: float
    threshold: float
    fitted_on: str = ""

    def probability(self, representations: np.ndarray) -> np.ndarray:
        x = (np.asarray(representations, np.float64) - np.array(self.mean)) / np.array(self.scale)
        return 1.0 / (1.0 + np.exp(-(x @ np.array(self.coefficients) + self.intercept)))

    @classmethod
    def fit(cls, patents: np.ndarray, others: np.ndarray, *, patent_flag_rate: float = 0.02) -> "PatentLikeness":
        """Fitted on representations of patents and of non-patent texts; the threshold lets about
        ``patent_flag_rate`` of the patents through as not patent-like, judged on 5-fold
        cross-validated probabilities (not on the rows each fold was fitted on)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import cross_val_predict

        x = np.concatenate([patents, others]).astype(np.float64)
        y = np.concatenate([np.ones(len(patents)), np.zeros(len(others))])
        mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        z = (x - mean) / scale
        model = LogisticRegression(C=0.05, max_iter=5000, class_weight="balanced")
        held_out = cross_val_predict(model, z, y, cv=5, method="predict_proba")[:, 1]
        threshold = float(np.quantile(held_out[: len(patents)], patent_flag_rate))
        model.fit(z, y)
        return cls(
            np.round(mean, 6).tolist(),
            np.round(scale, 6).tolist(),
            np.round(model.coef_[0], 6).tolist(),
            round(float(model.intercept_[0]), 6),
            round(threshold, 6),
            f"{len(patents)} patent texts, {len(others)} non-patent texts",
        )


@dataclass
class ReviewRules:
    """What marks an answer for review (see the module's docstring)."""

    uncertain_below: float = DEFAULT_UNCERTAIN_BELOW
    patent_likeness: PatentLikeness | None = None
    figures: dict = field(default_factory=dict)  # what the rules were measured to do, for the card

    def reasons(self, text: str, confidence: float, representation: np.ndarray | None = None) -> list[str]:
        """The reasons to review one answer, in the order of ``REASONS`` (empty: none)."""
        found = []
        if word_count(text) < SHORT_WORDS:
            found.append("too_short")
        elif probably_not_english(text):
            found.append("not_english")
        if self.patent_likeness is not None and representation is not None and "too_short" not in found:
            if self.patent_likeness.probability(representation[None, :])[0] < self.patent_likeness.threshold:
                found.append("not_patent_like")
        if confidence < self.uncertain_below:
            found.append("uncertain")
        return found

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "ReviewRules":
        if not data:
            return cls()
        likeness = data.get("patent_likeness")
        return cls(
            float(data.get("uncertain_below", DEFAULT_UNCERTAIN_BELOW)),
            PatentLikeness(**likeness) if likeness else None,
            dict(data.get("figures") or {}),
        )


def fit_uncertain_below(confidence: np.ndarray, *, flag_rate: float = 0.08) -> float:
    """The confidence below which about ``flag_rate`` of the validation answers fall (rounded down to
    0.01): measured on the shipped model, answers below it were wrong ~57% of the time against ~18%."""
    return float(np.floor(np.quantile(confidence, flag_rate) * 100) / 100)


RELIABILITY_BINS = 8
LEVELS = ("section", "class", "subclass", "group")


@dataclass
class Reliability:
    """Per level, what a top answer's probability has meant: points (mean probability, share right)
    of equal-count bins of validation answers, made non-decreasing, read by linear interpolation
    (flat beyond the outer bins). Calibrated probabilities make the two close; this says it in the
    answer with a measured figure."""

    levels: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def right_share(self, level: str, probability: float) -> float | None:
        table = self.levels.get(level)
        if not table or not table.get("confidence"):
            return None
        return round(float(np.interp(probability, table["confidence"], table["accuracy"])), 3)

    @staticmethod
    def table(confidence: np.ndarray, correct: np.ndarray, bins: int = RELIABILITY_BINS) -> dict[str, list[float]]:
        """One level's points from its answers' probabilities and whether each was right (each bin's
        share with one right and one wrong answer added, so a small perfect bin claims no certainty)."""
        from sklearn.isotonic import IsotonicRegression

        confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
        if len(confidence) == 0:
            return {}
        groups = np.array_split(np.argsort(confidence, kind="stable"), min(bins, len(confidence)))
        x = np.array([confidence[g].mean() for g in groups])
        share = np.array([(correct[g].sum() + 1.0) / (len(g) + 2.0) for g in groups])
        y = IsotonicRegression(y_min=0.0, y_max=1.0).fit(x, share).predict(x)
        return {
            "confidence": np.round(x, 4).tolist(),
            "accuracy": np.round(y, 4).tolist(),
            "count": [len(g) for g in groups],
        }

    def to_dict(self) -> dict:
        return dict(self.levels)

    @classmethod
    def from_dict(cls, data: dict | None) -> "Reliability":
        return cls({level: dict(table) for level, table in (data or {}).items() if level in LEVELS})


# --- the review queue ----------------------------------------------------------------------------

QUEUE_ORDER = (
    "review_score = 1 - confidence (the calibrated section confidence), highest first: on the bundled test split, "
    "the first 5%, 10% and 20% of answers in this order held 14.5%, 24.8% and 43.9% of all wrong answers "
    "(random order: 5%, 10%, 20%; bench/review_queue.py)"
)


def queue_score(confidence: float) -> float:
    """How much an answer needs a person's look, for the review queue (higher: look first).

    ``1 - confidence``. Measured on the shipped model's bundled test answers (``bench/review_queue.py``)
    against the margin to the second section, ``needs_review`` first, ``evidence_disagrees`` and the
    nearest patents' share against, alone and combined: none beat it by more than the test split's
    noise (paired bootstrap), and it needs nothing a bundle without an index lacks."""
    return round(1.0 - float(confidence), 6)


def queue_details(prediction) -> dict:
    """What a reviewer needs besides the text, as the predictions log keeps it (JSON): the review
    reasons, whether the nearest patents vote for another section, the three most probable sections
    and the best code of each level."""
    top = sorted(prediction.probabilities.items(), key=lambda item: -item[1])[:3]
    return {
        "reasons": [r.reason for r in prediction.review_reasons],
        "evidence_disagrees": bool(prediction.evidence_disagrees),
        "sections": [{"code": code, "probability": round(float(p), 6)} for code, p in top],
        "levels": [{"level": a.level, "code": a.code, "title": a.title, "probability": a.probability} for a in prediction.levels],
    }
