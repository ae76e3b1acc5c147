"""Classifier's fast inference path: unmasked right-padded batches, token-budget batching, torch.compile."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

from patentclf.inference.classifier import Classifier
from patentclf.inference.engines.torch import CPU_BATCH_TOKENS, PAD_MULTIPLE, padded_length
from patentclf.model.windows import make_windows

TEXTS = [
    "a polymer compound",
    "The ENGINE valve and turbine, with heating lamp and a long description of the pump " * 3,
    "circuit with antenna and a battery",
    "yarn fabric weaving method of paper and a loom with a shuttle",
    "x",
]


def test_unmasked_fast_path_gives_the_logits_of_the_masked_model(tiny_bundle):
    classifier = Classifier.load(tiny_bundle, precision="fp32")
    assert classifier.engine.backbone is not None  # a Llama classifier takes the fast path
    windows = make_windows(classifier.tokenizer, TEXTS, classifier.max_length, normalize=classifier.normalize, chunk=False).ids
    assert len({len(w) for w in windows}) == len(windows)  # every row is padded differently
    batch = classifier.tokenizer.pad({"input_ids": windows}, return_tensors="pt")
    assert batch["attention_mask"].min() == 0
    with torch.inference_mode():
        masked = classifier.engine.model(**batch).logits  # transformers' own masked forward and pooling
        fast, _ = classifier.engine.forward(windows)
    torch.testing.assert_close(fast, masked, atol=1e-5, rtol=1e-5)


def test_predictions_do_not_depend_on_how_texts_are_batched(tiny_bundle):
    classifier = Classifier.load(tiny_bundle, precision="fp32")
    together = classifier.predict(TEXTS, batch_size=5)
    for text, expected in zip(TEXTS, together):
        alone = classifier.predict([text])[0]
        assert alone.label == expected.label
        for code, p in alone.probabilities.items():
            assert abs(p - expected.probabilities[code]) < 1e-5


def test_batches_hold_similar_lengths_within_the_row_and_token_limits(tiny_bundle):
    classifier = Classifier.load(tiny_bundle, precision="fp32", device="cpu")
    lengths = [300, 5, 120, 7, 100, 6, 110, 90, 800, 95]
    groups = classifier.engine.batches(lengths, batch_size=3)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    flat = [lengths[i] for g in groups for i in g]
    assert flat == sorted(lengths)  # shortest first, so each batch pads little
    for group in groups:
        assert len(group) <= 3
        padded = len(group) * padded_length(max(lengths[i] for i in group))
        assert padded <= CPU_BATCH_TOKENS or len(group) == 1  # a row over the budget goes alone
    assert [800] in [[lengths[i] for i in g] for g in groups]
    assert [len(g) for g in classifier.engine.batches([10] * 20, batch_size=8)] == [8, 8, 4]


def test_batches_come_in_few_shapes_whatever_the_text_lengths(tiny_bundle):
    # oneDNN keeps a kernel per input shape (bf16 on CPU): every new shape costs memory for good, so
    # the model must see lengths rounded to PAD_MULTIPLE, not one shape per batch.
    classifier = Classifier.load(tiny_bundle, precision="fp32")
    shapes = []
    hook = classifier.engine.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        texts = [" ".join(f"word{j}" for j in range(n)) for n in range(1, 200, 3)]
        classifier.predict(texts, batch_size=4)
    finally:
        hook.remove()
    assert len(shapes) >= len(texts) // 4
    assert all(length % PAD_MULTIPLE == 0 and length <= padded_length(classifier.max_length) for _, length in shapes)
    assert len({length for _, length in shapes}) <= -(-classifier.max_length // PAD_MULTIPLE)
    assert len(set(shapes)) < len(shapes) / 2  # shapes repeat, so kernels are reused


def test_compiled_classifier_predicts_like_the_eager_one_without_compiling_again(tiny_bundle):
    eager = Classifier.load(tiny_bundle, precision="fp32")
    compiled = Classifier.load(tiny_bundle, precision="fp32", compile=True)  # compiles and warms up
    long_text = " ".join(TEXTS) * 4  # several full windows in chunk mode
    # What serving sends after the warm-up: one text or several, one token ("x") to a full window,
    # chunked long texts. None of it may wait for the compiler again.
    with torch._dynamo.config.patch(error_on_recompile=True):
        for batch_size in (1, 2, 5):
            for want, got in zip(eager.predict(TEXTS, batch_size=batch_size), compiled.predict(TEXTS, batch_size=batch_size)):
                assert want.label == got.label
                for code, p in want.probabilities.items():
                    assert abs(p - got.probabilities[code]) < 1e-4
        for text in ("x", "x y"):
            assert compiled.predict([text])[0].label == eager.predict([text])[0].label
        assert compiled.predict(["x", "y"])[0].label == eager.predict(["x"])[0].label
        chunked = compiled.predict([long_text, TEXTS[0]], long_text="chunk")
        assert chunked[0].chunks > 1 and chunked[0].label == eager.predict([long_text], long_text="chunk")[0].label


def test_cli_compile_failure_is_one_clear_line(tiny_bundle, tmp_path):
    # A machine without a working C++ compiler: inductor cannot build its kernels (a fresh cache
    # directory makes sure nothing compiled earlier is reused).
    env = {**os.environ, "CXX": "/nonexistent/c++", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    done = subprocess.run(
        [sys.executable, "-m", "patentclf.cli", "predict", "--model", str(tiny_bundle), "--compile", "an optical sensor"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode != 0
    assert "--compile failed" in done.stderr and "run without --compile" in done.stderr
    assert "Traceback" not in done.stderr


def test_import_sets_a_short_openmp_spin_unless_the_user_chose_one():
    """libgomp's long spin collapses prediction on a busy machine (bench/busy_machine.py); patentclf
    shortens it before torch loads, and leaves any OpenMP wait setting the user made."""
    probe = "import patentclf, os, torch; print(os.environ.get('GOMP_SPINCOUNT'))"

    def seen(**settings) -> str:
        env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
        done = subprocess.run([sys.executable, "-c", probe], env={**env, **settings}, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert seen() == "1000"
    assert seen(GOMP_SPINCOUNT="300000") == "300000"
    assert seen(OMP_WAIT_POLICY="PASSIVE") == "None"


def test_a_classifier_without_an_index_has_every_attribute(tiny_bundle):
    classifier = Classifier.load(tiny_bundle, precision="fp32", index=False)
    assert classifier.index is None and classifier.voting is None and classifier.priors is None
    assert classifier.neighbours({"embedding": np.zeros((1, 4), np.float32)}) == {}


def test_the_vllm_engine_needs_no_torch_and_gives_torchs_probabilities():
    """The vLLM engine's module and its probabilities are torch-free (a Classifier on it still loads torch
    today: model/base.py imports it at the top, and transformers' AutoTokenizer imports it)."""
    code = (
        "import sys\n"
        "from patentclf.inference.engines.vllm import VllmEngine\n"
        "engine = VllmEngine('http://127.0.0.1:9', outputs=18)\n"
        "import numpy as np\n"
        "engine.probabilities(np.zeros((2, 18), np.float32), {'section': slice(0, 9), 'sections': slice(9, 18)}, {'sections'})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert found.returncode == 0, found.stderr
    from patentclf.inference.engines.torch import TorchEngine
    from patentclf.inference.engines.vllm import VllmEngine

    logits = np.random.default_rng(0).normal(0, 4, (50, 30)).astype(np.float32)
    parts = {"section": slice(0, 9), "sections": slice(9, 18), "class": slice(18, 30)}
    ours, torchs = VllmEngine.probabilities(logits, parts, {"sections"}), TorchEngine.probabilities(logits, parts, {"sections"})
    for head in parts:
        assert ours[head].dtype == np.float32
        np.testing.assert_allclose(ours[head], torchs[head], atol=1e-6)
