"""The patent index (index.py) and `patentclf index` (indexing.py): faiss over the model's own
representations, evidence and main groups in predictions, resuming, adding, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from patentclf.corpus.inputs import DataError
from patentclf.inference.classifier import Classifier
from patentclf.inference.index import INFO_FILE, IndexedPatent, PatentIndex, PatentIndexError, check_factory
from patentclf.jobs.indexing import VECTORS_DIR, build_index, embed_locally, read_corpus
from patentclf.model.bundle import model_digest
from tests.conftest import write_jsonl


def patents(n: int) -> list[IndexedPatent]:
    return [IndexedPatent(f"P{i}", f"patent {i}", [f"F16K {i % 3 + 1}/0{i}"]) for i in range(n)]


def test_an_index_finds_each_vector_itself_and_survives_a_round_trip(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    index = PatentIndex.build(vectors * 3.0, patents(50), model_digest="abc")  # scale is irrelevant: cosine
    index.voting = {"k": 7}
    similarities, rows = index.search(vectors[:5], 3)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]
    assert np.allclose(similarities[:, 0], 1.0, atol=1e-3)  # SQfp16: half-precision vectors
    loaded = PatentIndex.load(index.save(tmp_path / "index"), model_digest="abc")
    assert len(loaded) == 50 and loaded.voting == {"k": 7} and loaded.patents[3] == index.patents[3]
    assert loaded.search(vectors[:5], 3)[1].tolist() == rows.tolist()
    assert loaded.groups[4] == ["F16K 2/00"]


def test_an_index_of_another_model_or_format_is_refused(tmp_path):
    vectors = np.random.default_rng(1).normal(size=(10, 8)).astype(np.float32)
    folder = PatentIndex.build(vectors, patents(10), model_digest="abc").save(tmp_path / "index")
    with pytest.raises(PatentIndexError, match="built with model abc, not this bundle's def"):
        PatentIndex.load(folder, model_digest="def")
    info = json.loads((folder / INFO_FILE).read_text())
    (folder / INFO_FILE).write_text(json.dumps({**info, "format": 99}))
    with pytest.raises(PatentIndexError, match="format 99"):
        PatentIndex.load(folder)
    with pytest.raises(PatentIndexError, match="not a patent index"):
        PatentIndex.load(tmp_path)
    with pytest.raises(PatentIndexError, match="8-dimensional"):
        PatentIndex.build(vectors, patents(10), model_digest="abc").search(np.zeros((1, 4), np.float32), 3)


def test_a_factory_that_cannot_index_is_refused_before_any_work():
    check_factory("IVF4,PQ4", 16)
    with pytest.raises(PatentIndexError, match="cannot index 10-dimensional"):
        check_factory("PQ4", 10)  # PQ needs the dimension divisible by its parts
    with pytest.raises(PatentIndexError, match="nonsense"):
        check_factory("nonsense", 16)
    with pytest.raises(PatentIndexError, match="cannot be trained on 5 patents"):
        PatentIndex.build(np.ones((5, 16), np.float32), patents(5), model_digest="x", factory="IVF64,Flat")


def test_reading_a_corpus_names_bad_rows(tmp_path):
    good = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": "a valve", "ipc": "F16K 1/00"}, {"id": "2", "text": "b"}])
    rows, skipped = read_corpus(str(good), None)
    assert [r["id"] for r in rows] == ["1"] and skipped == 1  # a row without codes is not indexed
    with pytest.raises(DataError, match="row 2: no id"):
        read_corpus(str(write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "text": "x", "ipc": "F16K 1/00"}, {"text": "y"}])), None)
    with pytest.raises(DataError, match="'1' repeats"):
        read_corpus(str(write_jsonl(tmp_path / "c.jsonl", [{"id": 1, "text": "x", "ipc": "A"}, {"id": "1", "text": "y"}])), None)
    with pytest.raises(DataError, match="no codes column"):
        read_corpus(str(write_jsonl(tmp_path / "d.jsonl", [{"id": "1", "text": "x"}])), None)
    with pytest.raises(DataError, match="no such file"):
        read_corpus(str(tmp_path / "missing.jsonl"), None)


@pytest.fixture(scope="module")
def toy_index(tiny_hierarchy_bundle, toy_hierarchy_data, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("toy-index") / "index"
    result = build_index(
        str(toy_hierarchy_data / "train.jsonl"),
        output,
        model=tiny_hierarchy_bundle,
        rows_per_part=100,
        fit_on=str(toy_hierarchy_data),
    )
    assert result.patents == 320 and result.embedded == 320 and result.skipped == 0
    voting = PatentIndex.load(output).voting  # fitted on the toy validation split, with its figures
    assert voting["fitted_on"] == 48 and voting["figures"]["group_top5"] >= voting["default_figures"]["group_top5"]
    assert voting["figures"]["group_top1"] > 0.5  # each toy subclass has one group: right whenever the subclass is
    return output


def test_predictions_carry_groups_and_the_nearest_patents(tiny_hierarchy_bundle, toy_hierarchy_data, toy_index):
    rows = [json.loads(line) for line in (toy_hierarchy_data / "train.jsonl").read_text().splitlines()[:6]]
    classifier = Classifier.load(tiny_hierarchy_bundle, precision="fp32", index=toy_index)
    predictions = classifier.predict([r["text"] for r in rows])
    for row, prediction in zip(rows, predictions):
        # An indexed text's nearest patent is itself (or a patent with the very same representation).
        nearest = prediction.similar[0]
        assert nearest.similarity == pytest.approx(1.0, abs=2e-3)
        assert all(-1.0 <= near.similarity <= 1.0 for near in prediction.similar)  # the schema's bounds
        assert len(prediction.similar) == 5 and prediction.similar[0].similarity >= prediction.similar[-1].similarity
        assert nearest.codes and nearest.code == nearest.codes[0]
        assert 1 <= len(prediction.groups) <= 5
        likely = {s.code for s in prediction.subclasses}
        assert all(g.code[:4] in likely for g in prediction.groups)  # a group's subclass is a likely one
        assert sum(g.probability for g in prediction.groups) <= 1.0 + 1e-6
        assert [g.probability for g in prediction.groups] == sorted((g.probability for g in prediction.groups), reverse=True)
    assert classifier.embed(["a valve"]).shape == (1, 64)
    # The same prediction without an index: the same section answer, no groups, no evidence.
    plain = Classifier.load(tiny_hierarchy_bundle, precision="fp32", index=False).predict([rows[0]["text"]])[0]
    assert plain.groups == [] and plain.similar == []
    assert plain.probabilities == predictions[0].probabilities and plain.subclasses == predictions[0].subclasses


def test_an_index_of_another_bundle_is_refused_at_load(tiny_bundle, toy_index):
    with pytest.raises(PatentIndexError, match="built with model"):
        Classifier.load(tiny_bundle, precision="fp32", index=toy_index)


def test_a_cut_short_index_run_resumes_and_a_different_one_is_refused(tiny_hierarchy_bundle, toy_hierarchy_data, tmp_path):
    corpus = str(toy_hierarchy_data / "train.jsonl")
    output = tmp_path / "index"
    # A run cut short after two parts: what the first call leaves behind.
    rows, _ = read_corpus(corpus, None)
    classifier = Classifier.load(tiny_hierarchy_bundle, precision="fp32", index=False)
    folder = output / VECTORS_DIR
    folder.mkdir(parents=True)
    (folder / "_manifest.json").write_text(
        json.dumps({"model_digest": model_digest(tiny_hierarchy_bundle), "input": corpus, "text_fields": []})
    )
    embed_locally(classifier, rows[:200], folder, rows_per_part=100, batch_size=None)
    with pytest.raises(PatentIndexError, match="another job's vectors"):
        build_index(str(toy_hierarchy_data / "validation.jsonl"), output, model=tiny_hierarchy_bundle, rows_per_part=100)
    result = build_index(corpus, output, model=tiny_hierarchy_bundle, rows_per_part=100)
    assert result.embedded == 120 and result.patents == 320  # the two parts written were kept
    assert not folder.exists()
    with pytest.raises(PatentIndexError, match="already holds an index"):
        build_index(corpus, output, model=tiny_hierarchy_bundle)
    # Adding: new patents join, patents already there stay as they were.
    added = build_index(str(toy_hierarchy_data / "validation.jsonl"), output, model=tiny_hierarchy_bundle, add=True)
    assert added.patents == 368 and added.embedded == 48
    again = build_index(str(toy_hierarchy_data / "validation.jsonl"), output, model=tiny_hierarchy_bundle, add=True)
    assert again.patents == 368 and again.embedded == 0


def test_a_bundle_s_own_index_is_told_of_in_its_card(tiny_hierarchy_bundle, toy_hierarchy_data, tmp_path):
    """The card is rendered from the bundle's files, its index included: building or adding to the
    bundle's own ``index/`` rewrites it, with each step's history."""
    import shutil

    from patentclf.model.bundle import read_info
    from patentclf.training.cards import render_model_card

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_hierarchy_bundle, bundle)
    assert "Patent index" not in (bundle / "README.md").read_text()
    build_index(str(toy_hierarchy_data / "train.jsonl"), bundle / "index", model=bundle)
    build_index(str(toy_hierarchy_data / "validation.jsonl"), bundle / "index", model=bundle, add=True)
    history = PatentIndex.load(bundle / "index").history
    assert [(h["action"], h["patents"], h["embedded"]) for h in history] == [("built", 320, 320), ("added", 48, 48)]
    assert history[0]["input"] == str(toy_hierarchy_data / "train.jsonl") and history[0]["engine"] == "local"
    card = (bundle / "README.md").read_text()
    assert card == render_model_card(bundle, read_info(bundle))
    assert "## Patent index (`index/`)\n\n368 classified patents'" in card
    assert "- built on " in card and ": 320 patents (local engine" in card and "- added on " in card
    assert "not fitted to this index" in card  # no --fit-on: the bundle's default voting settings


def run_cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "patentclf.cli", *args], capture_output=True, text=True, timeout=600)
    done.stderr = " ".join(done.stderr.split())  # rich wraps long lines to the terminal's width
    return done


def test_the_index_and_predict_commands(tiny_hierarchy_bundle, toy_hierarchy_data, toy_index, tmp_path):
    rows = tmp_path / "rows.jsonl"
    write_jsonl(rows, [{"id": "q1", "text": "a turbine engine valve rotary"}])
    out = tmp_path / "out.jsonl"
    done = run_cli(
        "predict", "--model", str(tiny_hierarchy_bundle), "--index", str(toy_index), "--input", str(rows), "--output", str(out)
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(out.read_text())
    assert record["groups"] and {"code", "title", "probability"} == set(record["groups"][0])
    assert record["similar"] and {"id", "title", "code", "codes", "similarity"} == set(record["similar"][0])
    done = run_cli("predict", "--model", str(tiny_hierarchy_bundle), "--no-index", "--input", str(rows), "--output", str(out))
    assert done.returncode == 0 and json.loads(out.read_text())["groups"] == []
    # Bad input: one line each, before any model loads.
    done = run_cli(
        "index", "--input", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "i"), "--model", str(tiny_hierarchy_bundle)
    )
    assert done.returncode == 2 and "no such file" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("index", "--input", str(rows), "--output", str(tmp_path / "i"), "--model", str(tiny_hierarchy_bundle))
    assert done.returncode == 2 and "no codes column" in done.stderr
    done = run_cli("predict", "--model", str(tiny_hierarchy_bundle), "--index", str(tmp_path / "nowhere"), "some text")
    assert done.returncode == 2 and "no such folder" in done.stderr
    corpus = write_jsonl(tmp_path / "corpus.jsonl", [{"id": "c1", "text": "a valve", "ipc": "F16K 1/00"}])
    done = run_cli(
        "index",
        "--input",
        str(corpus),
        "--output",
        str(tmp_path / "j"),
        "--model",
        str(tiny_hierarchy_bundle),
        "--factory",
        "PQ7",
    )
    assert done.returncode == 2 and "factory 'PQ7'" in done.stderr and "Traceback" not in done.stderr


def test_the_service_answers_groups_and_evidence_from_its_index(tiny_hierarchy_bundle, toy_index, tmp_path):
    import httpx

    from tests.servers import LiveServer

    with LiveServer(tiny_hierarchy_bundle, feedback_db=tmp_path / "f.db", index=toy_index) as server:
        answer = httpx.post(server.url + "/predict", json={"text": "a turbine engine valve rotary"}, timeout=60).json()
        assert answer["groups"] and answer["groups"][0]["code"][:4] in {s["code"] for s in answer["subclasses"]}
        assert len(answer["similar"]) == 5 and answer["similar"][0]["id"].startswith("toy-")
        batch = httpx.post(server.url + "/predict/batch", json={"texts": ["an acid", "a lamp"]}, timeout=60).json()
        assert all(p["groups"] and p["similar"] for p in batch["predictions"])
        assert httpx.get(server.url + "/model", timeout=10).json()["index"]["patents"] == 320
    with LiveServer(tiny_hierarchy_bundle, feedback_db=tmp_path / "g.db", no_index=True) as server:
        answer = httpx.post(server.url + "/predict", json={"text": "a turbine engine valve rotary"}, timeout=60).json()
        assert answer["groups"] == [] and answer["similar"] == []
        assert httpx.get(server.url + "/model", timeout=10).json()["index"] is None


def test_accepted_feedback_joins_an_index_as_evidence(tiny_hierarchy_bundle, toy_index, tmp_path):
    import shutil

    from patentclf.store.feedback import training_row

    index = tmp_path / "index"
    shutil.copytree(toy_index, index)
    # What `patentclf feedback export` writes for an accepted correction at the subclass level.
    row = training_row(
        {"id": 7, "text": "a turbine engine valve with a ceramic seal", "label": "F", "code": "F01D", "time": None}
    )
    # And one that gave several codes, main first, down to main groups.
    codes = ["F01D 25/00", "F01D", "F16J 15/00"]
    several = training_row(
        {"id": 8, "text": "a seal for a turbine shaft", "label": "F", "codes": json.dumps(codes), "time": None}
    )
    rows = [several, row]
    build_index(str(write_jsonl(tmp_path / "feedback.jsonl", rows)), index, model=tiny_hierarchy_bundle, add=True)
    loaded = PatentIndex.load(index)
    assert len(loaded) == 322 and loaded.patents[-1] == IndexedPatent("feedback-7", "", ["F01D"])
    assert loaded.groups[-1] == []  # a subclass names no main group: evidence, but no group votes
    assert loaded.patents[-2] == IndexedPatent("feedback-8", "", codes)
    assert loaded.groups[-2] == ["F01D 25/00", "F16J 15/00"]  # its main groups vote
    prediction = Classifier.load(tiny_hierarchy_bundle, precision="fp32", index=index).predict([row["text"]])[0]
    assert prediction.similar[0].id == "feedback-7" and prediction.similar[0].code == "F01D"


def test_a_compressed_index_answers_cosines_within_bounds(tiny_hierarchy_bundle, toy_hierarchy_data, tmp_path):
    """8-bit vectors are not exactly unit length, so a text's similarity to itself can come out above
    1: the answer keeps it at 1 (the API's schema says at most 1; more would be a 500)."""
    texts = [json.loads(line)["text"] for line in (toy_hierarchy_data / "train.jsonl").read_text().splitlines()[:40]]
    classifier = Classifier.load(tiny_hierarchy_bundle, precision="fp32", index=False)
    vectors = classifier.embed(texts)
    index = PatentIndex.build(vectors, patents(40), model_digest=model_digest(tiny_hierarchy_bundle), factory="SQ8")
    classifier.use_index(index)
    predictions = classifier.predict(texts)
    assert all(-1.0 <= near.similarity <= 1.0 for p in predictions for near in p.similar)
    assert max(p.similar[0].similarity for p in predictions) == 1.0  # capped, not above
