"""The hierarchy heads: their layout and targets, the last-token rule, and predictions at every level."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from patentclf.corpus import data
from patentclf.inference.classifier import Classifier
from patentclf.model.bundle import BundleInfo, load_bundle, read_info
from patentclf.model.heads import IGNORE, HeadLayout, LossWeights, encode_targets, head_loss
from patentclf.training.trainer import HeadTrainer, TrainConfig


def test_layout_slices_and_targets():
    layout = HeadLayout.from_codes([["G06F", "H04N"], ["G06K"], ["A61K"], []])
    assert layout.classes == ["A61", "G06"] and layout.subclasses == ["A61K", "G06F", "G06K"]
    assert layout.size == 9 + 9 + 2 + 3
    parts = layout.slices()
    assert [parts[h].stop - parts[h].start for h in ("section", "sections", "class", "subclass")] == [9, 9, 2, 3]
    encoded = encode_targets(layout, [["G06F", "H04N"], [], ["B65D"]])
    assert encoded["section_targets"][0] == [0, 0, 0, 0, 0, 0, 1, 1, 0]
    assert encoded["section_targets"][1] == [-1.0] * 9  # no codes: unknown, not "no section"
    assert encoded["class_labels"] == [1, IGNORE, IGNORE]  # B65 is outside the vocabulary
    assert encoded["subclass_labels"] == [1, IGNORE, IGNORE]
    assert HeadLayout().size == 9 and not HeadLayout().hierarchical
    assert HeadLayout.from_info(BundleInfo.new(base_model="x", heads=layout.to_dict())) == layout


def test_rows_without_codes_do_not_train_the_extra_heads():
    layout = HeadLayout(classes=["G06"], subclasses=["G06F"])
    logits = torch.randn(2, layout.size, requires_grad=True)
    labels = torch.tensor([6, 6])
    extra = {key: torch.tensor(values) for key, values in encode_targets(layout, [["G06F"], []]).items()}
    head_loss(logits, labels, extra, layout, LossWeights()).backward()
    grad = logits.grad
    parts = layout.slices()
    assert grad[1, parts["sections"]].abs().sum() == 0 and grad[1, parts["class"]].abs().sum() == 0
    assert grad[0, parts["sections"]].abs().sum() > 0 and grad[1, parts["section"]].abs().sum() > 0


def test_training_and_prediction_read_the_same_token_even_when_eos_is_appended(tiny_hierarchy_bundle, tmp_path):
    """A tokenizer that appends EOS, which is also the pad token: transformers' own classifier reads
    the last token that is not a pad (the one before EOS); our one rule reads the EOS in training
    and in prediction alike."""
    from transformers import TrainingArguments

    classifier = Classifier.load(tiny_hierarchy_bundle, precision="fp32")
    eos = classifier.tokenizer.pad_token_id
    windows = [
        classifier.tokenizer("a turbine engine valve")["input_ids"] + [eos],
        classifier.tokenizer("an acid")["input_ids"] + [eos],
    ]
    serving, _ = classifier.engine.forward(windows)

    model, tokenizer, info = load_bundle(tiny_hierarchy_bundle, dtype=torch.float32, merge=False)
    batch = tokenizer.pad({"input_ids": windows}, return_tensors="pt")
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, remove_unused_columns=False, report_to="none")
    trainer = HeadTrainer(model=model, args=args, layout=HeadLayout.from_info(info), config=TrainConfig())
    model.eval()
    with torch.no_grad():
        _, outputs = trainer.compute_loss(model, {**batch, "labels": torch.tensor([5, 2])}, return_outputs=True)
        transformers_rule = model(**batch).logits
    assert torch.allclose(outputs.logits, serving, atol=1e-4)
    assert not torch.allclose(transformers_rule, serving, atol=1e-3)  # the test can tell the rules apart


def test_hierarchy_bundle_predicts_every_level(tiny_hierarchy_bundle, toy_hierarchy_data):
    info = read_info(tiny_hierarchy_bundle)
    assert info.heads.subclasses and 0 < info.calibration["sections_threshold"] < 1
    assert {"llm_weight", "temperature", "llm_temperature"} <= set(info.calibration["section"])
    # The section is pooled with the finer heads summed up to sections, all weights fitted on validation.
    assert list(info.calibration["section"]["weights"]) == ["llm", "tfidf", "class", "subclass"]
    test = data.load_split(str(toy_hierarchy_data), "test")
    predictions = Classifier.load(tiny_hierarchy_bundle, precision="fp32").predict(test.texts)
    for p in predictions:
        assert p.sections[0] == p.label and len(set(p.sections)) == len(p.sections)
        assert set(p.section_probabilities) == set("ABCDEFGHY")
        assert len(p.classes) == 5 and len(p.subclasses) == 5
        assert [c.probability for c in p.classes] == sorted((c.probability for c in p.classes), reverse=True)
        assert abs(sum(p.probabilities.values()) - 1) < 1e-4
    main_subclass = [codes[0] for codes in test.codes]
    top1 = np.mean([p.subclasses[0].code == s for p, s in zip(predictions, main_subclass)])
    assert top1 >= 0.8  # the toy subclasses are learnable
    with_second = [p for p, codes in zip(predictions, test.codes) if "H04N" in codes]
    assert np.mean(["H" in p.sections for p in with_second]) >= 0.7  # the multi-label head learned H04N


def test_pooled_section_probabilities_follow_the_stored_weights(tiny_hierarchy_bundle, toy_hierarchy_data):
    from patentclf.corpus.labels import CODES
    from patentclf.inference import calibration as cal

    classifier = Classifier.load(tiny_hierarchy_bundle, precision="fp32")
    texts = data.load_split(str(toy_hierarchy_data), "test").texts[:12]
    raw = classifier.raw_outputs(texts)
    sources = cal.section_sources(raw, classifier.tfidf_outputs(texts)["section"], classifier.layout)
    weights = classifier.calibration.pool.weights
    confidence_map = classifier.calibration.confidence_map
    expected = confidence_map.read(cal.combine([sources[name] for name in weights], list(weights.values())))
    got = np.array([[p.probabilities[c] for c in CODES] for p in classifier.predict(texts)])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # Only the weights decide: the LLM section head alone would answer otherwise.
    classifier.calibration.pool = cal.SectionPool({"llm": 1.0})
    alone = np.array([[p.probabilities[c] for c in CODES] for p in classifier.predict(texts)])
    np.testing.assert_allclose(alone, confidence_map.read(cal.combine([raw["section"]], [1.0])), atol=1e-5)


def test_sections_come_from_the_stored_stack_and_fall_back_to_the_raw_head_without_tfidf(
    tiny_hierarchy_bundle, toy_hierarchy_data
):
    from patentclf.corpus.labels import CODES
    from patentclf.inference import calibration as cal

    calibration = read_info(tiny_hierarchy_bundle).calibration
    stack = calibration["sections_stack"]
    assert stack["features"] == list(cal.STACK_FEATURES) and len(stack["coefficients"]) == len(stack["features"])
    classifier = Classifier.load(tiny_hierarchy_bundle, precision="fp32")
    texts = data.load_split(str(toy_hierarchy_data), "test").texts[:12]
    raw = classifier.raw_outputs(texts)
    tfidf = classifier.tfidf_outputs(texts)
    # The stack reads the pooled section as it is before the confidence map.
    weights = calibration["section"]["weights"]
    sources = cal.section_sources(raw, tfidf["section"], classifier.layout)
    pooled = cal.combine([sources[name] for name in weights], list(weights.values()))
    expected = cal.SectionsStack(**stack).probabilities(cal.stack_tables(raw, pooled, tfidf, classifier.layout))
    predictions = classifier.predict(texts)
    got = np.array([[p.section_probabilities[c] for c in CODES] for p in predictions])
    # Membership is at least the main-section probability (the answer's levels agree).
    main = np.array([[p.probabilities[c] for c in CODES] for p in predictions])
    np.testing.assert_allclose(got, np.maximum(expected, main), atol=1e-5)
    for p, row in zip(predictions, np.maximum(expected, main)):
        chosen = {CODES[i] for i in np.flatnonzero(row >= stack["threshold"])} | {p.label}
        # ... and the best class's and subclass's sections belong to the patent too.
        chosen |= {suggestions[0].code[0] for suggestions in (p.classes, p.subclasses) if suggestions}
        assert set(p.sections) == chosen
    # The LLM alone (no TF-IDF): the stack cannot be read, so the multi-label head and its own threshold.
    alone = Classifier.load(tiny_hierarchy_bundle, precision="fp32", use_tfidf=False).predict(texts)
    for p, row in zip(alone, raw["sections"]):
        row = np.maximum(row, [p.probabilities[c] for c in CODES])
        assert [p.section_probabilities[c] for c in CODES] == pytest.approx(row.tolist(), abs=1e-5)
        chosen = {CODES[i] for i in np.flatnonzero(row >= calibration["sections_threshold"])} | {p.label}
        chosen |= {suggestions[0].code[0] for suggestions in (p.classes, p.subclasses) if suggestions}
        assert set(p.sections) == chosen


def test_section_only_bundle_keeps_working(tiny_bundle):
    p = Classifier.load(tiny_bundle, precision="fp32").predict(["a turbine engine"])[0]
    assert p.sections == [p.label] and p.classes == [] and p.subclasses == []
    assert "heads" not in read_info(tiny_bundle).model_dump()


def test_bundle_names_its_base_model_not_a_path_of_the_training_machine(tiny_hierarchy_bundle):
    adapter = json.loads((tiny_hierarchy_bundle / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == read_info(tiny_hierarchy_bundle).base_model
