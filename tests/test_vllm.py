"""The vLLM engine against real vLLM servers on loopback (``make vllm`` builds their venv).

One server per model for the whole module: the shipped model's merged export (float32, as a CPU
without fast bf16 needs), and a tiny random Llama-3-shaped model trained with ``patentclf train``.

Probability bound: both sides run float32, so vLLM's raw logits equal transformers' up to the order
of floating-point sums (measured below 1e-4); softmax, the TF-IDF blend, the pool and the
confidence map are all Lipschitz with small constants, so a published probability may move by a few
1e-4. The test allows 0.01 (a label can only flip on a near tie: 99.5% agreement is required). With
a bf16 server (a GPU) the logits move by up to ~0.12 (DESIGN.md, "Probes of 2026-12-01"), so there
the labels agree on near all rows but probabilities only within a few hundredths.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from patentclf.inference.engines.vllm import VllmEngine, VllmServer, vllm_available
from tests.servers import LiveServer

pytestmark = pytest.mark.slow

PROBABILITY_BOUND = 0.01
AGREEMENT_ROWS = 200


@pytest.fixture(scope="module")
def vllm_python():
    reason = vllm_available()
    if reason:
        pytest.skip(f"vLLM cannot run here: {reason}")


def start_server(export, log):
    try:
        # Eager: torch.compile of the model would add ~3 minutes per server start on a CPU.
        return VllmServer(export, max_model_len=256, enforce_eager=True, log=log).start()
    except RuntimeError as exc:
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(f"{exc}\n{tail}")


@pytest.fixture(scope="module")
def shipped_export(shipped_model, tmp_path_factory):
    from patentclf.training.export import export_merged

    return export_merged(shipped_model, tmp_path_factory.mktemp("vllm") / "shipped-export", dtype="float32")


@pytest.fixture(scope="module")
def shipped_server(vllm_python, shipped_export, tmp_path_factory):
    server = start_server(shipped_export, tmp_path_factory.mktemp("vllm-log") / "shipped.log")
    yield server
    server.stop()


def test_export_names_an_architecture_vllm_serves(shipped_export):
    config = json.loads((shipped_export / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForSequenceClassification"]
    assert len(config["id2label"]) > 9  # every head output named (631: nine sections, then the other heads)
    assert config["patentclf_text_normalization"].startswith("bigpatent")
    assert "vllm serve" in (shipped_export / "README.md").read_text()


def test_vllm_answers_classify_for_the_export(shipped_server, shipped_export):
    """vLLM's own API, as a user who never heard of patentclf would call it (text in, its tokenizer)."""
    config = json.loads((shipped_export / "config.json").read_text())
    reply = httpx.post(
        shipped_server.url + "/classify",
        json={"model": str(shipped_export), "input": ["a circuit with a transistor and an antenna ."], "use_activation": False},
        timeout=120,
    )
    assert reply.status_code == 200, reply.text
    (row,) = reply.json()["data"]
    assert row["num_classes"] == len(config["id2label"]) == len(row["probs"])
    assert row["label"] in config["id2label"].values()


def test_the_shipped_model_through_vllm_agrees_with_predict(shipped_server, shipped_model):
    from patentclf.corpus.data import load_split, stratified_subset
    from patentclf.inference.classifier import Classifier

    texts = stratified_subset(load_split("bundled", "test"), AGREEMENT_ROWS, seed=11).texts
    # The two sides at once: vLLM computes in its own process while this one runs the torch model.
    with ThreadPoolExecutor(1) as pool:
        via_vllm = pool.submit(Classifier.load(shipped_model, engine="vllm", vllm_url=shipped_server.url).predict, texts)
        # Without the patent index on both sides: its neighbours also vote in the classes and subclasses,
        # and the vLLM engine gives no representations to search it with.
        local = Classifier.load(shipped_model, precision="fp32", index=False).predict(texts)
        served = via_vllm.result()

    n = len(texts)
    assert n >= 200
    agree = sum(a.label == b.label for a, b in zip(local, served)) / n
    sections = sum(a.sections == b.sections for a, b in zip(local, served)) / n
    classes = sum(a.classes[0].code == b.classes[0].code for a, b in zip(local, served)) / n
    subclasses = sum(a.subclasses[0].code == b.subclasses[0].code for a, b in zip(local, served)) / n
    gap = max(max(abs(a.probabilities[c] - b.probabilities[c]) for c in a.probabilities) for a, b in zip(local, served))
    section_gap = max(
        max(abs(a.section_probabilities[c] - b.section_probabilities[c]) for c in a.section_probabilities)
        for a, b in zip(local, served)
    )
    figures = f"label {agree:.4f}, sections {sections:.4f}, class {classes:.4f}, subclass {subclasses:.4f}, max |dp| {gap:.2e} / {section_gap:.2e}"
    print(figures)
    assert agree >= 0.995, figures
    assert sections >= 0.995 and classes >= 0.995 and subclasses >= 0.995, figures
    assert gap <= PROBABILITY_BOUND and section_gap <= PROBABILITY_BOUND, figures


def test_explanations_through_vllm_agree_with_torch(shipped_server, shipped_model):
    """``explain`` needs the engine's outputs only: on vLLM a text and its variants (one per sentence
    left out) go in one engine call, and each effect is the torch engine's within the probability bound."""
    from patentclf.corpus.data import load_split
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.options import PredictOptions

    texts = load_split("bundled", "test").texts[:4]
    explain = PredictOptions(explain=True)
    served = Classifier.load(shipped_model, engine="vllm", vllm_url=shipped_server.url).predict(texts, options=explain)
    local = Classifier.load(shipped_model, precision="fp32", index=False).predict(texts, options=explain)
    for a, b in zip(local, served):
        assert a.explanation.sentences == b.explanation.sentences and len(a.explanation.sentences) > 1
        assert [(c.level, c.code) for c in a.explanation.codes] == [(c.level, c.code) for c in b.explanation.codes]
        assert [c.level for c in b.explanation.codes] == ["section", "subclass"]  # no index on vLLM: no groups
        for mine, theirs in zip(a.explanation.codes, b.explanation.codes):
            assert theirs.effects == pytest.approx(mine.effects, abs=2 * PROBABILITY_BOUND)


def test_engine_logits_equal_transformers(shipped_server, shipped_export, shipped_model):
    """The engine's raw logits for token-id windows, against transformers on the same export."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from patentclf.corpus.data import load_split, to_bigpatent_form
    from patentclf.model.bundle import read_info
    from patentclf.model.heads import HeadLayout

    texts = load_split("bundled", "test").texts[:8]
    tokenizer = AutoTokenizer.from_pretrained(shipped_export)
    windows = [tokenizer(to_bigpatent_form(t))["input_ids"][:256] for t in texts]
    engine = VllmEngine(shipped_server.url, outputs=HeadLayout.from_info(read_info(shipped_model)).size)
    served = engine.logits(windows)
    model = AutoModelForSequenceClassification.from_pretrained(shipped_export, dtype=torch.float32).eval()
    with torch.inference_mode():
        expected = np.stack([model(input_ids=torch.tensor([w])).logits[0].numpy() for w in windows])
    assert served.shape == expected.shape == (8, engine.outputs)
    assert np.abs(served - expected).max() < 1e-3
    assert engine.batches([5] * 70, 32) == [list(range(32)), list(range(32, 64)), list(range(64, 70))]


def test_service_on_vllm_answers_refuses_bad_input_and_turns_unready_when_vllm_dies(shipped_server, shipped_model, tmp_path):
    """Last of the shipped model's tests: it stops the module's server."""
    with LiveServer(shipped_model, vllm_url=shipped_server.url, feedback_db=tmp_path / "fb.db", max_text_chars=2000) as live:
        ready = httpx.get(live.url + "/ready").json()
        assert ready["ready"] is True
        reply = httpx.post(live.url + "/predict", json={"text": "A battery charging circuit with a transistor."}, timeout=120)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["label"] == "H" and body["classes"] and body["subclasses"]
        # Bad input never reaches vLLM: patentclf's own limits and validation answer.
        assert httpx.post(live.url + "/predict", json={"text": "x" * 2001}, timeout=30).status_code == 413
        assert httpx.post(live.url + "/predict", json={"text": "   "}, timeout=30).status_code == 422
        assert httpx.post(live.url + "/predict", json={"txt": "a"}, timeout=30).status_code == 422

        shipped_server.stop()
        assert wait_for(lambda: httpx.get(live.url + "/ready").status_code == 503, 30)
        detail = httpx.get(live.url + "/ready").json()["detail"]
        assert "vLLM server" in detail
        reply = httpx.post(live.url + "/predict", json={"text": "a turbine blade"}, timeout=60)
        assert reply.status_code == 503 and "Retry-After" in reply.headers
        assert httpx.get(live.url + "/health").status_code == 200  # the process lives on


def wait_for(condition, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


# -- the default base model's shape (Llama-3.2) end to end ------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama3(tmp_path_factory):
    """A random Llama with Llama-3.2's features (grouped-query attention, llama3 rope scaling, tied
    embeddings) in miniature, with SmolLM2's real tokenizer, saved as a local folder. Head size 32:
    vLLM's CPU attention has no kernel for smaller heads."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from patentclf.model.base import EMBEDDED_MODEL, resolve_base_model

    folder = tmp_path_factory.mktemp("tiny-llama3")
    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(EMBEDDED_MODEL))
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=131072,  # Llama-3.2's; the rope scaling needs more than its original 8192
        tie_word_embeddings=True,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_llama3_shape_trains_exports_and_serves_on_vllm(vllm_python, tiny_llama3, toy_data, tmp_path):
    from patentclf.inference.classifier import Classifier

    bundle = tmp_path / "bundle"
    train = [sys.executable, "-m", "patentclf.cli", "train", "--data", str(toy_data), "--base-model", str(tiny_llama3)]
    train += ["--output-dir", str(bundle), "--max-length", "64", "--epochs", "4", "--batch-size", "16"]
    train += ["--learning-rate", "5e-3", "--precision", "fp32"]
    done = subprocess.run(train, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    rows = [json.loads(line) for line in (toy_data / "test.jsonl").read_text().splitlines()]
    texts = [row["text"] for row in rows]
    local = Classifier.load(bundle, precision="fp32").predict(texts)
    assert sum(p.label == row["section"] for p, row in zip(local, rows)) / len(rows) > 0.5  # it learned

    export = tmp_path / "export"
    done = subprocess.run(
        [sys.executable, "-m", "patentclf.cli", "export", "--model", str(bundle), "--merged", str(export)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    config = json.loads((export / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["rope_parameters"]["rope_type"] == "llama3" and config["tie_word_embeddings"] is True

    server = start_server(export, tmp_path / "vllm.log")
    try:
        served = Classifier.load(bundle, engine="vllm", vllm_url=server.url).predict(texts)
    finally:
        server.stop()
    assert [p.label for p in served] == [p.label for p in local]
    assert max(abs(a.confidence - b.confidence) for a, b in zip(local, served)) <= PROBABILITY_BOUND
