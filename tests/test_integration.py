"""Integration with the real SmolLM2 and the shipped model, through the real command line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from patentclf.corpus.data import load_split, stratified_subset
from patentclf.corpus.labels import CODES
from patentclf.inference.classifier import Classifier
from patentclf.model.bundle import read_info

from .conftest import write_jsonl

pytestmark = pytest.mark.slow


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "patentclf.cli", *args], capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"patentclf {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


# Real abstracts from the bundled test split (never trained on), one per section, by patent number.
REAL = {"US6302908": "A", "US6800592": "C", "US10718657": "G", "US8724782": "H"}


def real_texts() -> dict[str, str]:
    test = load_split("bundled", "test")
    return {row_id: text for row_id, text in zip(test.ids, test.texts) if row_id in REAL}


def test_shipped_model_classifies_real_abstracts(shipped_model):
    classifier = Classifier.load(shipped_model)
    texts = real_texts()
    predictions = classifier.predict([texts[row_id] for row_id in REAL])
    assert [p.label for p in predictions] == list(REAL.values())
    for p in predictions:
        assert set(p.probabilities) == set(CODES)
        assert abs(sum(p.probabilities.values()) - 1) < 1e-3
    test = stratified_subset(load_split("bundled", "test"), 80, seed=7)
    labels = [p.label_id for p in classifier.predict(test.texts)]
    accuracy = sum(a == b for a, b in zip(labels, test.labels)) / len(test)
    assert accuracy >= 0.6  # the model card reports the full-test figure; this guards against a broken model


def test_shipped_model_info_records_both_text_forms(shipped_model):
    metrics = read_info(shipped_model).metrics
    assert {"validation", "test", "test (BIGPATENT form)", "test (first 200 characters)"} <= set(metrics)
    assert metrics["test"]["n"] == 988  # the bundled test split after near-duplicates were regrouped


def test_shipped_model_reaches_its_card_figures_on_the_whole_test_split(shipped_model):
    # What the README and the model card claim, measured again through Classifier (the pooled section).
    from patentclf.training.evaluation import compute_metrics

    info = read_info(shipped_model)
    assert set(info.calibration["section"]["weights"]) == {"llm", "tfidf", "class", "subclass"}
    test = load_split("bundled", "test")
    predictions = Classifier.load(shipped_model).predict(test.texts)
    found = compute_metrics(test.labels, [p.label_id for p in predictions])
    assert found["accuracy"] >= 0.78 and found["macro_f1"] >= 0.77
    assert abs(found["accuracy"] - info.metrics["test"]["accuracy"]) < 0.005
    # The main groups from the bundle's index, as its index.json records them (bf16 on some CPUs,
    # fp32 on others: neighbours near a tie may swap, so up to 2 points of difference).
    from patentclf.inference.groups import group_figures

    recorded = json.loads((shipped_model / "index" / "index.json").read_text())["voting"]["test_figures"]
    groups = group_figures([[g.code for g in p.groups] for p in predictions], test.groups)
    assert groups == pytest.approx(recorded, abs=0.02)


def test_evaluate_writes_metrics_and_confusion_matrix(tmp_path):
    out = tmp_path / "eval"
    result = run_cli("evaluate", "--data", "bundled", "--split", "test", "--limit", "60", "--output", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 60
    assert {"accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix"} <= set(metrics)
    assert set(metrics["per_class"]) == set(CODES)
    assert sum(map(sum, metrics["confusion_matrix"])) == 60
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "macro-F1" in result.stdout and "Physics" in result.stdout


def test_predict_file_keeps_order_and_ids(tmp_path):
    texts = real_texts()
    rows = [{"id": f"row-{i}", "text": texts[row_id]} for i, row_id in enumerate(list(REAL) * 2)]
    rows.insert(2, {"text": "A door hinge for a building with a locking mechanism."})  # no id
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    run_cli("predict", "--input", str(source), "--output", str(out))
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == len(rows)
    assert [line.get("id") for line in lines] == [row.get("id") for row in rows]
    assert [line["label"] for line in lines[:2]] == ["A", "C"]  # "prediction" before it was "label" everywhere
    assert lines[0]["label"] == lines[5]["label"]  # same text, same answer, wherever it sits
    assert all(set(line["probabilities"]) == set(CODES) for line in lines)


def test_predict_arguments_and_bad_input():
    result = run_cli("predict", real_texts()["US8724782"])
    assert "Electricity" in result.stdout
    bad = run_cli("predict", "--input", "no-such-file.jsonl", check=False)
    assert bad.returncode == 2 and "no such file" in bad.stderr
    assert "error" not in result.stderr.lower()


def test_smollm2_lora_training_saves_the_head_and_round_trips(tmp_path):
    from patentclf.model.bundle import load_bundle
    from patentclf.model.heads import HeadLayout
    from patentclf.training.trainer import TrainConfig, train

    out = train(
        TrainConfig(
            base_model="smollm2-135m",
            data="bundled",
            output_dir=str(tmp_path / "model"),
            train_limit=32,
            eval_limit=16,
            max_length=64,
            batch_size=8,
            epochs=1,
            evaluate_test=False,
        ),
        progress=False,
    )
    info = read_info(out)
    assert info.base_model == "smollm2-135m" and info.metrics["validation"]["n"] == 16
    model, tokenizer, _ = load_bundle(out, dtype=torch.float32)
    again, _, _ = load_bundle(out, dtype=torch.float32)
    batch = tokenizer(["a lens for a camera", "an antenna array"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again(**batch).logits)
    # The trained head is in the adapter file (two loads agree only because neither draws a random head).
    from safetensors import safe_open

    with safe_open(str(out / "adapter_model.safetensors"), "pt") as saved:
        head = [key for key in saved.keys() if "score" in key]
        # The bundled rows carry IPC codes, so the head has the hierarchy outputs beside the nine sections.
        layout = HeadLayout.from_info(info)
        assert layout.hierarchical and head and saved.get_tensor(head[0]).shape == (layout.size, model.config.hidden_size)
