"""The review flag on the shipped model, with its fitted detector: real patents mostly pass, texts
that are not patents are flagged with the reason that fits (the non-patent texts' measure part,
which the detector was never fitted on)."""

import pytest

from patentclf.corpus.data import load_split
from patentclf.corpus.screening import non_patent_texts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def classifier(shipped_model):
    from patentclf import Classifier

    return Classifier.load(shipped_model)


def test_real_patents_mostly_pass_and_the_flagged_ones_are_more_often_wrong(classifier):
    rows = load_split("bundled", "test")
    texts, labels = rows.texts[:120], rows.labels[:120]
    predictions = classifier.predict(texts)
    flagged = [p.needs_review for p in predictions]
    assert sum(flagged) / len(flagged) <= 0.15  # about 8% on the whole test split
    assert all(r.reason == "uncertain" for p in predictions for r in p.review_reasons if p.needs_review) or sum(flagged) <= 3
    wrong = [p.label_id != label for p, label in zip(predictions, labels)]
    flagged_wrong = sum(w for w, f in zip(wrong, flagged) if f) / max(sum(flagged), 1)
    unflagged_wrong = sum(w for w, f in zip(wrong, flagged) if not f) / max(len(flagged) - sum(flagged), 1)
    assert flagged_wrong > unflagged_wrong
    # Every answer has its levels, each with what its probability has meant.
    assert all([level.level for level in p.levels] == ["section", "class", "subclass", "group"] for p in predictions)
    assert all(level.right_share is not None for p in predictions for level in p.levels)


def test_texts_that_are_not_patents_are_flagged_with_the_reason_that_fits(classifier):
    kinds = {"recipe", "meeting-minutes", "source-code", "licence", "news", "lorem-ipsum", "keyboard-mash", "short"}
    rows = [row for row in non_patent_texts("measure") if row["kind"] in kinds]
    rows = [row for kind in sorted(kinds) for row in rows if row["kind"] == kind][:: max(1, len(rows) // 40)]
    predictions = classifier.predict([row["text"] for row in rows])
    assert sum(p.needs_review for p in predictions) / len(rows) >= 0.9
    for row, p in zip(rows, predictions):
        reasons = {r.reason for r in p.review_reasons}
        if row["kind"] == "short":
            assert "too_short" in reasons, row
        elif row["language"] not in ("en", "zxx", "la"):
            assert "not_english" in reasons, row
    english_prose = [p for row, p in zip(rows, predictions) if row["kind"] in ("recipe", "meeting-minutes", "news", "licence")]
    caught = sum(any(r.reason == "not_patent_like" for r in p.review_reasons) for p in english_prose)
    assert caught / len(english_prose) >= 0.9


def test_a_german_patent_abstract_is_flagged_not_english(classifier):
    german = next(row for row in non_patent_texts() if row["kind"] == "patent-like" and row["language"] == "de")
    (p,) = classifier.predict([german["text"]])
    assert p.needs_review and "not_english" in [r.reason for r in p.review_reasons]
