"""Training on the toy task with a tiny real Llama: learns, evaluates, saves, reloads identically; extra
rows never bring evaluation rows back in."""

from __future__ import annotations

import json
import warnings

import torch

from patentclf.corpus.data import Split, load_split
from patentclf.inference.classifier import Classifier
from patentclf.model.bundle import load_bundle, read_info
from patentclf.training.trainer import train, without_evaluation_rows
from tests.conftest import tiny_train_config


def test_tiny_llama_learns_the_toy_task(tiny_bundle, toy_data):
    info = read_info(tiny_bundle)
    # compute_metrics really ran during training (transformers issue 29186) and after it.
    assert any("eval_macro_f1" in row for row in info.training.log_history)
    assert info.metrics["validation"]["accuracy"] >= 0.9
    assert info.metrics["test"]["accuracy"] >= 0.9
    test = load_split(str(toy_data), "test")
    predictions = Classifier.load(tiny_bundle, precision="fp32").predict(test.texts)
    accuracy = sum(p.label_id == y for p, y in zip(predictions, test.labels)) / len(test)
    assert accuracy >= 0.9


def test_bundle_holds_adapter_head_tokenizer_info_and_card(tiny_bundle):
    names = {p.name for p in tiny_bundle.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "patentclf.json", "README.md", "tokenizer.json"} <= names
    adapter_config = json.loads((tiny_bundle / "adapter_config.json").read_text())
    assert adapter_config["task_type"] == "SEQ_CLS"
    assert "score" in str(adapter_config["modules_to_save"])
    info = read_info(tiny_bundle)
    assert [label.code for label in info.labels] == list("ABCDEFGHY")
    assert info.versions["torch"] == torch.__version__
    assert "patentclf" in (tiny_bundle / "README.md").read_text()
    # Peak memory is recorded (what --quantize saves shows here): at least the loaded torch + model.
    assert info.training.peak_memory_mb["process_rss"] > 100


def test_saved_bundle_reloads_with_identical_logits(tiny_bundle):
    texts = ["the engine valve and turbine", "a polymer compound with acid"]
    first, tokenizer, _ = load_bundle(tiny_bundle, dtype=torch.float32)
    second, _, _ = load_bundle(tiny_bundle, dtype=torch.float32, merge=False)
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        merged = first(**batch).logits
        unmerged = second(**batch).logits
    again, _, _ = load_bundle(tiny_bundle, dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(merged, again(**batch).logits)
    assert torch.allclose(merged, unmerged, atol=1e-4)


def test_extra_rows_that_are_evaluation_rows_are_dropped_with_a_warning():
    evaluation = Split(texts=["A Lens, for cameras.", "a pump"], labels=[6, 5], ids=["US1", "US2"])
    extra = Split(texts=["a lens , for cameras .", "something new", "other text"], labels=[6, 1, 5], ids=[None, None, "US2"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kept = without_evaluation_rows(extra, [evaluation])
    assert kept.texts == ["something new"]
    assert any("dropped 2 of 3" in str(w.message) for w in caught)


def test_training_leaves_the_callers_config_as_it_was(tiny_bundle, toy_data, tmp_path):
    """A continued run takes the earlier bundle's base model and window, in its own copy of the settings."""
    config = tiny_train_config(
        toy_data, "not-the-base", tmp_path / "continued", max_length=48, epochs=1, resume_from=str(tiny_bundle)
    )
    before = config.model_copy(deep=True)
    out = train(config, progress=False)
    assert config == before
    info = read_info(out)
    assert (info.base_model, info.max_length) == (read_info(tiny_bundle).base_model, 64)
    assert info.training.resumed_from.bundle == str(tiny_bundle)
    assert not out.with_name(out.name + ".partial").exists()
