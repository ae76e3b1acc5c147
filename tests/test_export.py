"""`patentclf export --merged`: a plain transformers checkpoint that predicts exactly like the bundle."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from patentclf.cli import app
from patentclf.corpus.labels import CODES
from patentclf.inference.classifier import Classifier

TEXTS = [
    "A polymer compound made with an acid Catalyst.",
    "The ENGINE valve and turbine, with heating lamp.",
    "Circuit with antenna; a transistor and battery signal.",
    "yarn fabric weaving method of paper",
]

# Runs in a fresh interpreter, so the check that peft is never imported is real.
LOAD_WITHOUT_PEFT = r"""
import json, sys
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from patentclf.corpus.data import to_bigpatent_form
folder, max_length = sys.argv[1], int(sys.argv[2])
texts = json.loads(sys.stdin.read())
model = AutoModelForSequenceClassification.from_pretrained(folder, dtype="auto").eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
batch = tokenizer([to_bigpatent_form(t) for t in texts], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
with torch.no_grad():
    probs = torch.softmax(model(**batch).logits, dim=-1)
print(json.dumps({"probs": probs.tolist(), "id2label": model.config.id2label, "pad": model.config.pad_token_id,
                  "tok_pad": tokenizer.pad_token_id, "peft_imported": "peft" in sys.modules,
                  "weights_dtype": str(next(model.parameters()).dtype)}))
"""


def load_without_peft(folder, max_length: int) -> dict:
    loaded = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_PEFT, str(folder), str(max_length)],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(loaded.stdout.strip().splitlines()[-1])


def test_export_merged_loads_without_peft_and_predicts_like_the_bundle(tiny_bundle, tmp_path):
    out = tmp_path / "merged"
    result = CliRunner().invoke(app, ["export", "--model", str(tiny_bundle), "--merged", str(out)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "patentclf.json", "README.md"} <= names
    assert "adapter_config.json" not in names and "adapter_model.safetensors" not in names
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert "to_bigpatent_form" in (out / "README.md").read_text()  # external servers must normalise too

    classifier = Classifier.load(tiny_bundle, precision="fp32")
    exported = load_without_peft(out, classifier.max_length)
    assert exported["peft_imported"] is False
    assert exported["id2label"] == {str(i): code for i, code in enumerate(CODES)}
    assert exported["pad"] == exported["tok_pad"] is not None

    # The export is the LLM alone: its softmax is the bundle's raw section output (before the TF-IDF
    # blend and the temperature, which live in patentclf.json).
    for raw, probs in zip(classifier.raw_outputs(TEXTS)["section"], exported["probs"]):
        assert max(range(len(probs)), key=probs.__getitem__) == int(raw.argmax())
        for index, p in enumerate(probs):
            assert abs(float(raw[index]) - p) < 1e-4


def test_export_bfloat16_keeps_the_labels(tiny_bundle, tmp_path):
    out = tmp_path / "merged-bf16"
    result = CliRunner().invoke(app, ["export", "--model", str(tiny_bundle), "--merged", str(out), "--dtype", "bfloat16"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    classifier = Classifier.load(tiny_bundle, precision="fp32")
    exported = load_without_peft(out, classifier.max_length)
    assert exported["weights_dtype"] == "torch.bfloat16"
    # bf16 rounds the probabilities a little; the predicted sections stay those of the bundle.
    assert [CODES[max(range(len(p)), key=p.__getitem__)] for p in exported["probs"]] == [
        p.label for p in classifier.predict(TEXTS)
    ]


def test_export_rejects_a_folder_that_is_not_a_bundle(tmp_path):
    result = CliRunner().invoke(app, ["export", "--model", str(tmp_path), "--merged", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "patentclf model bundle" in " ".join(result.output.split())
