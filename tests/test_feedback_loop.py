"""The correction loop end to end: predict through the API, correct the wrong answers with POST /feedback,
``patentclf feedback export``, retrain with ``--resume-from`` + ``--extra-data``, and the new model
gets those examples right where the old one did not."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import httpx

from patentclf.corpus.data import load_split
from patentclf.inference.classifier import Classifier
from patentclf.model.bundle import read_info
from patentclf.training.trainer import train

from .conftest import FILLER, tiny_train_config, toy_rows, write_jsonl
from .servers import LiveServer

API_KEY = "loop-key"
# The toy task has no section Y, so a model trained on it never answers Y: texts about these get it wrong.
Y_WORDS = ["nanotechnology", "climate", "mitigation", "emissions", "superconductor"]


def y_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words = rng.choices(FILLER, k=8) + rng.choices(Y_WORDS, k=3)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "section": "Y"})
    return rows


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "patentclf.cli", *args], capture_output=True, text=True, env=env, timeout=3600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_feedback_retrains_the_model_on_its_mistakes(tiny_base_model, toy_data, tmp_path):
    # The deployed model: a short run of the tiny Llama on the toy task (no Y in it).
    old_bundle = train(
        tiny_train_config(toy_data, tiny_base_model, tmp_path / "old", epochs=4, train_limit=96, eval_limit=16), progress=False
    )
    texts = [row["text"] for row in y_rows(16, seed=7)]
    db = tmp_path / "feedback.db"
    with LiveServer(old_bundle, env={"PATENTCLF_API_KEY": API_KEY}, feedback_db=db) as live:
        old = httpx.post(live.url + "/predict/batch", json={"texts": texts}, timeout=300).json()["predictions"]
        assert all(p["label"] != "Y" for p in old)  # the old model gets every one wrong
        for prediction in old:
            response = httpx.post(
                live.url + "/feedback",
                json={"prediction_id": prediction["id"], "label": "Y", "comment": "cross-sectional"},
                headers={"X-API-Key": API_KEY},
            )
            assert response.status_code == 201 and response.json()["agreed"] is False

    exported = tmp_path / "corrections.jsonl"
    cli("feedback", "export", "--output", str(exported), "--db", str(db))
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [r["text"] for r in rows] == texts and {r["label"] for r in rows} == {"Y"}
    assert all(r["source"].startswith("feedback:") and r["time"] for r in rows)
    assert len(load_split(str(exported), "train")) == 16  # what --extra-data reads

    # Retrain from the old adapter on some of the old data plus the corrections. Validation holds
    # other Y texts, so that choosing the best checkpoint counts Y as well.
    data = tmp_path / "retrain-data"
    write_jsonl(data / "train.jsonl", toy_rows(32, seed=31))
    write_jsonl(data / "validation.jsonl", toy_rows(16, seed=32) + y_rows(8, seed=33))
    write_jsonl(data / "test.jsonl", toy_rows(16, seed=34) + y_rows(8, seed=35))
    retrained = tmp_path / "retrained"
    cli(
        "train",
        "--data",
        str(data),
        "--extra-data",
        str(exported),
        "--resume-from",
        str(old_bundle),
        "--output-dir",
        str(retrained),
        "--epochs",
        "16",
        "--batch-size",
        "16",
        "--learning-rate",
        "5e-3",
        "--precision",
        "fp32",
        "--seed",
        "0",
    )
    info = read_info(retrained)
    assert info.base_model == read_info(old_bundle).base_model
    assert info.data["train"].labels["Y"] == 16

    # Scored on Y texts that neither model trained on: the new model learnt the section, not 16 texts.
    held_out = [row["text"] for row in y_rows(16, seed=99)]
    assert not set(held_out) & set(texts)
    assert all(p.label != "Y" for p in Classifier.load(old_bundle, precision="fp32").predict(held_out))
    new_labels = [p.label for p in Classifier.load(retrained, precision="fp32").predict(held_out)]
    assert new_labels.count("Y") >= 11, new_labels  # over two thirds; the old model: none
