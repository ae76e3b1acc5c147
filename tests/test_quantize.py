"""QLoRA on the CPU (bitsandbytes 0.47+): the tiny Llama trains over an 8-bit and a 4-bit base, the
bundle records the quantization, and a reloaded bundle predicts as the one that was evaluated."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from patentclf.corpus.data import load_split
from patentclf.inference.classifier import Classifier
from patentclf.model.base import ModelError, quantization_problem
from patentclf.model.bundle import load_bundle, read_info
from tests.conftest import tiny_train_config

PROBLEM = quantization_problem(torch.device("cpu"))
needs_bnb = pytest.mark.skipif(PROBLEM is not None, reason=f"bitsandbytes cannot quantize here: {PROBLEM}")
LAYER_TYPES = {"8bit": "Linear8bitLt", "4bit": "Linear4bit"}


@pytest.fixture(scope="module", params=["8bit", "4bit"])
def quantized_bundle(request, tmp_path_factory, toy_data, tiny_base_model):
    if PROBLEM is not None:
        pytest.skip(f"bitsandbytes cannot quantize here: {PROBLEM}")
    from patentclf.training.trainer import train

    output = tmp_path_factory.mktemp(f"qlora-{request.param}") / "model"
    # precision auto: bf16 autocast on a CPU with native bf16, as `patentclf train` picks. No TF-IDF
    # partner, so the figures below are the quantized LLM's own.
    config = tiny_train_config(
        toy_data, tiny_base_model, output, quantize=request.param, epochs=4, precision="auto", tfidf_ensemble=False
    )
    return request.param, train(config, progress=False)


@needs_bnb
def test_qlora_learns_and_the_bundle_records_it(quantized_bundle, toy_data):
    kind, bundle = quantized_bundle
    info = read_info(bundle)
    assert info.training.quantize == kind
    assert info.metrics["validation"]["accuracy"] >= 0.8
    # Reloaded as recorded: the base is quantized again and the adapter sits unmerged on top.
    model, _, _ = load_bundle(bundle)
    assert type(model.model.layers[0].self_attn.q_proj.base_layer).__name__ == LAYER_TYPES[kind]
    # A reload predicts what the bundle's own evaluation measured, and the same each time.
    test = load_split(str(toy_data), "test")
    first = Classifier.load(bundle).predict(test.texts)
    second = Classifier.load(bundle).predict(test.texts)
    assert [p.probabilities for p in first] == [p.probabilities for p in second]
    accuracy = sum(p.label_id == y for p, y in zip(first, test.labels)) / len(test)
    assert accuracy == pytest.approx(info.metrics["test"]["accuracy"])


@needs_bnb
def test_quantization_can_be_overridden_on_load(quantized_bundle):
    kind, bundle = quantized_bundle
    texts = ["the engine valve and turbine", "a polymer compound with acid"]
    full, tokenizer, _ = load_bundle(bundle, quantize="none")
    assert isinstance(full.model.layers[0].self_attn.q_proj, torch.nn.Linear)  # merged into plain weights
    other = "4bit" if kind == "8bit" else "8bit"
    again, _, _ = load_bundle(bundle, quantize=other)
    assert type(again.model.layers[0].self_attn.q_proj.base_layer).__name__ == LAYER_TYPES[other]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.isfinite(full(**batch).logits).all() and torch.isfinite(again(**batch).logits).all()
    with pytest.raises(ModelError, match="unknown quantization"):
        load_bundle(bundle, quantize="3bit")


@needs_bnb
def test_quantization_problem_names_the_cause():
    assert "no meta backend" in quantization_problem(torch.device("meta"))


def test_train_without_bitsandbytes_fails_in_one_line(tmp_path, toy_data, tiny_base_model):
    """A machine without bitsandbytes (hidden from this subprocess) gets one line, not a traceback."""
    script = "import sys; sys.modules['bitsandbytes'] = None; from patentclf.cli import app; app()"
    command = [sys.executable, "-c", script, "train", "--data", str(toy_data), "--base-model", str(tiny_base_model)]
    command += ["--output-dir", str(tmp_path / "model"), "--quantize", "4bit", "--epochs", "1"]
    env = {**os.environ, "COLUMNS": "300"}  # rich wraps at 80 columns where stderr is no terminal
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["error: --quantize 4bit cannot run here: bitsandbytes is not installed: pip install 'patentclf[quantize]'"]


@needs_bnb
def test_export_merges_a_qlora_adapter_into_the_full_precision_base(quantized_bundle, tmp_path):
    import json

    from patentclf.training.export import export_merged

    _, bundle = quantized_bundle
    out = export_merged(bundle, tmp_path / "export")
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
