"""The OpenVINO engine (``engine="openvino"``, the openvino extra) answers as the torch engine does:
the tiny model in fp32 to float precision, the shipped model in bf16 to the agreement bound of issue 28
(same labels, probabilities within 0.02). Skipped with the reason where openvino cannot be imported."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'patentclf[openvino]')")
pytest.importorskip("onnxscript", reason="the openvino extra is not installed (pip install 'patentclf[openvino]')")

from patentclf.inference.classifier import Classifier  # noqa: E402

TEXTS = [
    "a turbine engine with a valve and a lamp for heating the engine",
    "an optical sensor measuring the time of a clock with a computer",
    "a woven fabric of yarn and paper fibre",
    "a pharmaceutical composition of a compound for treating a disease",
    "a bridge of concrete beams with a road and a tunnel",
]


def test_the_openvino_engine_answers_as_torch_and_reuses_its_export(tiny_hierarchy_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("PATENTCLF_CACHE", str(tmp_path))
    torch_answers = Classifier.load(tiny_hierarchy_bundle, precision="fp32", index=False).predict(TEXTS)
    openvino = Classifier.load(tiny_hierarchy_bundle, engine="openvino", precision="fp32", index=False)
    answers = openvino.predict(TEXTS)
    assert [a.label for a in answers] == [t.label for t in torch_answers]
    for a, t in zip(answers, torch_answers):
        assert np.allclose(list(a.probabilities.values()), list(t.probabilities.values()), atol=1e-4)
        assert [c.code for c in a.classes] == [c.code for c in t.classes]
    # The export is made once per bundle, into the cache, and read by the next load.
    [export] = list((tmp_path / "openvino").glob("*/model.xml"))
    assert [f.name for f in (tmp_path / "openvino").iterdir()] == [export.parent.name]  # no staging folder left
    written = export.stat().st_mtime_ns
    again = Classifier.load(tiny_hierarchy_bundle, engine="openvino", precision="fp32", index=False)
    assert export.stat().st_mtime_ns == written
    assert [a.label for a in again.predict(TEXTS)] == [a.label for a in answers]


def test_the_openvino_engine_refuses_what_it_cannot_do(tiny_bundle):
    with pytest.raises(ValueError, match="OpenVINO engine runs on the CPU"):
        Classifier.load(tiny_bundle, engine="openvino", compile=True)
    with pytest.raises(ValueError, match="precision must be"):
        Classifier.load(tiny_bundle, engine="openvino", precision="fp16")


@pytest.mark.slow
def test_the_shipped_model_through_openvino_agrees_with_predict(shipped_model):
    from patentclf.corpus.data import load_split, stratified_subset

    texts = list(stratified_subset(load_split("bundled", "test"), 32, seed=0).texts)
    expected = Classifier.load(shipped_model).predict(texts)
    answers = Classifier.load(shipped_model, engine="openvino").predict(texts)
    assert [a.label for a in answers] == [e.label for e in expected]
    largest = max(
        abs(a.probabilities[code] - e.probabilities[code]) for a, e in zip(answers, expected) for code in e.probabilities
    )
    assert largest < 0.02
