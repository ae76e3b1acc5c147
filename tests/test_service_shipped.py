"""The service serving the shipped model (SmolLM2 + LoRA): slow, needs the bundle in the package."""

from __future__ import annotations

import httpx
import pytest

from patentclf.corpus.data import load_split, stratified_subset
from patentclf.corpus.labels import CODES, SECTIONS

from .servers import LiveServer


@pytest.mark.slow
def test_the_shipped_model_serves_real_patents(shipped_model, tmp_path):
    test = stratified_subset(load_split("bundled", "test"), 40, seed=7)
    texts, labels = test.texts, test.labels
    with LiveServer(shipped_model, env={"PATENTCLF_API_KEY": "k"}, feedback_db=tmp_path / "fb.db", precision="auto") as live:
        info = httpx.get(live.url + "/model").json()
        assert info["base_model"] and info["model_version"]
        body = httpx.post(live.url + "/predict/batch", json={"texts": texts}, timeout=300).json()
        predictions = body["predictions"]
        assert [p["label"] for p in predictions] == [SECTIONS[p["label_id"]].code for p in predictions]
        for p in predictions:
            assert set(p["probabilities"]) == set(CODES) and sum(p["probabilities"].values()) == pytest.approx(1, abs=1e-3)
        # Far better than chance on real abstracts (the shipped model reaches 0.74 on the whole test split).
        assert sum(p["label_id"] == y for p, y in zip(predictions, labels)) >= 24
        one = httpx.post(live.url + "/predict", json={"text": texts[0]}, timeout=300).json()
        assert one["label"] == predictions[0]["label"]
        feedback = httpx.post(
            live.url + "/feedback", json={"prediction_id": one["id"], "label": CODES[labels[0]]}, headers={"X-API-Key": "k"}
        )
        assert feedback.status_code == 201
        assert httpx.get(live.url + "/stats").json()["training_mix"]["G"] > 0
