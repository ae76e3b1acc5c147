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

from patentclf.bundle import read_info
from patentclf.classifier import Classifier
from patentclf.data import load_split
from patentclf.service.live import LiveServer

from .conftest import FILLER

API_KEY = "loop-key"
# The toy task has no section Y, so the tiny model never answers Y: texts about these get it wrong.
Y_WORDS = ["nanotechnology", "climate", "mitigation", "emissions", "superconductor"]


def y_texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = rng.choices(FILLER, k=8) + rng.choices(Y_WORDS, k=3)
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "patentclf.cli", *args], capture_output=True, text=True, env=env, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_feedback_retrains_the_model_on_its_mistakes(tiny_bundle, toy_data, tmp_path):
    texts = y_texts(16)
    db = tmp_path / "feedback.db"
    with LiveServer(tiny_bundle, env={"PATENTCLF_API_KEY": API_KEY}, feedback_db=db) as live:
        old = httpx.post(live.url + "/predict/batch", json={"texts": texts}).json()["predictions"]
        assert all(p["label"] != "Y" for p in old)  # the old model gets every one wrong
        for prediction in old:
            response = httpx.post(live.url + "/feedback", json={"prediction_id": prediction["id"], "label": "Y", "comment": "cross-sectional"}, headers={"X-API-Key": API_KEY})
            assert response.status_code == 201 and response.json()["agreed"] is False

    exported = tmp_path / "corrections.jsonl"
    cli("feedback", "export", "--output", str(exported), "--db", str(db))
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert [r["text"] for r in rows] == texts and {r["label"] for r in rows} == {"Y"}
    assert all(r["source"].startswith("feedback:") and r["time"] for r in rows)
    assert len(load_split(str(exported), "train")) == 16  # what --extra-data reads

    retrained = tmp_path / "retrained"
    cli(
        "train", "--data", str(toy_data), "--extra-data", str(exported), "--resume-from", str(tiny_bundle),
        "--output-dir", str(retrained), "--train-limit", "64", "--eval-limit", "24", "--epochs", "5",
        "--batch-size", "16", "--learning-rate", "3e-3", "--precision", "fp32", "--seed", "0",
    )
    info = read_info(retrained)
    assert info["base_model"] == read_info(tiny_bundle)["base_model"]
    assert info["data"]["train"]["labels"]["Y"] == 16

    new = Classifier.load(retrained, precision="fp32")
    assert [p.label for p in new.predict(texts)] == ["Y"] * len(texts)
    # ...and it still knows the toy task.
    test = load_split(str(toy_data), "test")
    accuracy = sum(p.label_id == y for p, y in zip(new.predict(test.texts), test.labels)) / len(test)
    assert accuracy >= 0.8
