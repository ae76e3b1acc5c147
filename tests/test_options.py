"""Per-request options (``PredictOptions``) on the classifier: every option, on a tiny hierarchy bundle
with a small patent index whose neighbours vote in the class and subclass probabilities too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pydantic import ValidationError

from patentclf.corpus.hierarchy import parse_index_codes
from patentclf.inference.classifier import Classifier
from patentclf.inference.index import IndexedPatent, PatentIndex
from patentclf.inference.options import MAX_SUGGESTIONS, PredictOptions
from patentclf.model.bundle import model_digest


@pytest.fixture(scope="module")
def rows(toy_hierarchy_data) -> list[dict]:
    return [json.loads(line) for line in (toy_hierarchy_data / "train.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def classifier(tiny_hierarchy_bundle, rows) -> Classifier:
    classifier = Classifier.load(tiny_hierarchy_bundle, precision="fp32", index=False)
    indexed = rows[:96]
    vectors = classifier.embed([r["text"] for r in indexed])
    patents = [IndexedPatent(r["id"], f"title {i}", parse_index_codes(r["ipc"])) for i, r in enumerate(indexed)]
    index = PatentIndex.build(vectors, patents, model_digest=model_digest(tiny_hierarchy_bundle))
    index.voting = {"k": 10, "power": 2.0, "other_weight": 0.5, "prior": 0.5, "class_mix": 0.3, "subclass_mix": 0.5}
    classifier.use_index(index)
    return classifier


@pytest.fixture(scope="module")
def texts(rows) -> list[str]:
    return [r["text"] for r in rows[100:108]] + ["a valve", "x"]


@pytest.fixture(scope="module")
def full(classifier, texts):
    return classifier.predict(texts)


def searched(classifier, monkeypatch) -> list[int]:
    """The k of every index search from now on."""
    calls: list[int] = []
    search = classifier.index.search
    monkeypatch.setattr(classifier.index, "search", lambda vectors, k: calls.append(k) or search(vectors, k))
    return calls


def test_the_defaults_are_the_answer_without_options_field_by_field(classifier, texts, full):
    assert [p.to_dict() for p in classifier.predict(texts, options=PredictOptions())] == [p.to_dict() for p in full]
    # The fixture's answers have every part the options steer.
    assert all(p.classes and p.subclasses and p.groups and len(p.similar) == 5 for p in full)
    assert [len(p.levels) for p in full] == [4] * len(full)


def test_each_text_may_carry_its_own_options_in_one_call(classifier, texts, full):
    chosen = [PredictOptions(depth="section") if i % 2 else PredictOptions() for i in range(len(texts))]
    mixed = classifier.predict(texts, options=chosen)
    for i, (p, alone) in enumerate(zip(mixed, full)):
        if i % 2 == 0:
            assert p.to_dict() == alone.to_dict()
        else:
            assert p.classes == [] and p.similar == []
    streamed = dict(pair for part in classifier.iter_predictions(texts, options=chosen) for pair in part)
    assert [streamed[i].to_dict() for i in range(len(texts))] == [p.to_dict() for p in mixed]
    with pytest.raises(ValueError, match="one per text"):
        classifier.predict(texts, options=chosen[:2])


def test_counts_per_level_and_zero_switches_a_level_off(classifier, texts, full):
    few = classifier.predict(texts, options=PredictOptions(classes=1, subclasses=2, groups=1, similar=3))
    for p, alone in zip(few, full):
        assert p.classes == alone.classes[:1] and p.subclasses == alone.subclasses[:2] and p.groups == alone.groups[:1]
        assert p.similar == alone.similar[:3]
        assert p.levels == alone.levels and p.sections == alone.sections
    off = classifier.predict(texts, options=PredictOptions(classes=0, subclasses=0, groups=0, similar=0))
    for p, alone in zip(off, full):
        assert (p.classes, p.subclasses, p.groups, p.similar) == ([], [], [], [])
        assert [level.level for level in p.levels] == ["section"]
        # How many are shown changes neither the section set nor whether to trust the answer.
        assert p.sections == alone.sections and p.evidence_disagrees == alone.evidence_disagrees
        assert p.review_reasons == alone.review_reasons and p.probabilities == alone.probabilities
    many = classifier.predict(texts[:2], options=PredictOptions(classes=50, subclasses=50, groups=50, similar=12))
    for p, alone in zip(many, full):
        assert len(p.similar) == 12 and p.similar[:5] == alone.similar
        assert p.classes[:5] == alone.classes and len(p.classes) > 5  # every class the toy heads know
        assert p.subclasses[:5] == alone.subclasses and p.groups[: len(alone.groups)] == alone.groups


def test_more_similar_patents_search_more_neighbours_and_only_those_rows(classifier, texts, monkeypatch):
    calls = searched(classifier, monkeypatch)
    chosen = [PredictOptions(similar=20), PredictOptions(), PredictOptions(depth="section")]
    classifier.predict(texts[:3], options=chosen)
    assert sorted(calls) == [10, 20]  # one search per k (the index's k is 10), none for depth section


def test_a_threshold_leaves_out_codes_below_it(classifier, texts, full):
    cut = 0.2
    kept = classifier.predict(texts, options=PredictOptions(threshold=cut))
    dropped = 0
    for p, alone in zip(kept, full):
        for level in ("classes", "subclasses", "groups"):
            expected = [s for s in getattr(alone, level) if s.probability >= cut]
            assert getattr(p, level) == expected
            dropped += len(getattr(alone, level)) - len(expected)
        assert [level.level for level in p.levels] == ["section"] + [
            name for name, key in (("class", "classes"), ("subclass", "subclasses"), ("group", "groups")) if getattr(p, key)
        ]
        assert p.label == alone.label and p.similar == alone.similar  # the section and the evidence stay
    assert dropped > 0
    nothing = classifier.predict(texts[:1], options=PredictOptions(threshold=1.0))[0]
    assert nothing.classes == nothing.subclasses == nothing.groups == [] and nothing.label == full[0].label


def test_the_sections_threshold_overrides_the_models(classifier, texts, full):
    every = classifier.predict(texts, options=PredictOptions(sections_threshold=0.0))
    assert all(sorted(p.sections) == sorted(p.section_probabilities) for p in every)  # all nine
    only = classifier.predict(texts, options=PredictOptions(sections_threshold=1.0))
    for p, alone in zip(only, full):
        best = {alone.label, alone.classes[0].code[0], alone.subclasses[0].code[0]}
        assert set(p.sections) == best and p.sections[0] == alone.label  # the label and the best codes' sections
        assert set(p.sections) <= set(alone.sections)


def test_depth_section_needs_no_index_search(classifier, texts, full, monkeypatch):
    calls = searched(classifier, monkeypatch)
    shallow = classifier.predict(texts, options=PredictOptions(depth="section"))
    assert calls == []
    for p, alone in zip(shallow, full):
        assert (p.classes, p.subclasses, p.groups, p.similar, p.evidence_disagrees) == ([], [], [], [], False)
        assert p.levels == alone.levels[:1]
        assert (p.label, p.confidence, p.probabilities, p.section_probabilities) == (
            alone.label,
            alone.confidence,
            alone.probabilities,
            alone.section_probabilities,
        )
        # The review reasons (not patent-like reads the representation, not the index) are the same.
        assert p.review_reasons == alone.review_reasons and p.needs_review == alone.needs_review
        assert set(p.sections) <= set(alone.sections) and p.sections[0] == alone.label


@pytest.mark.parametrize("depth", ["class", "subclass"])
def test_depth_class_and_subclass_answer_those_levels_as_the_full_answer_does(classifier, texts, full, depth):
    partial = classifier.predict(texts, options=PredictOptions(depth=depth))
    levels = ["section", "class"] if depth == "class" else ["section", "class", "subclass"]
    for p, alone in zip(partial, full):
        assert p.classes == alone.classes and p.groups == []
        assert p.subclasses == (alone.subclasses if depth == "subclass" else [])
        assert [level.level for level in p.levels] == levels and p.levels == alone.levels[: len(levels)]
        assert p.similar == alone.similar and p.evidence_disagrees == alone.evidence_disagrees


@pytest.mark.parametrize(
    "fields, name",
    [
        ({"classes": 51}, "classes"),
        ({"subclasses": -1}, "subclasses"),
        ({"groups": "5"}, "groups"),
        ({"similar": True}, "similar"),
        ({"similar": 2.5}, "similar"),
        ({"threshold": 1.5}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"sections_threshold": -0.1}, "sections_threshold"),
        ({"depth": "subgroup"}, "depth"),
        ({"limit": 3}, "limit"),
    ],
)
def test_a_bad_option_is_refused_naming_it(fields, name):
    with pytest.raises(ValidationError) as caught:
        PredictOptions(**fields)
    assert caught.value.errors()[0]["loc"] == (name,)


def test_options_are_frozen_and_bounded():
    options = PredictOptions(classes=MAX_SUGGESTIONS, threshold=1, sections_threshold=0)
    assert options.threshold == 1.0 and options.classes == 50
    with pytest.raises(ValidationError):
        options.classes = 3  # type: ignore[misc]
    assert PredictOptions() == PredictOptions.model_validate({}) and hash(PredictOptions())
    assert np.isclose(PredictOptions(threshold=0.25).threshold, 0.25)
