"""Explanations (``options.explain``): sentences as spans of the text, each sentence's effect the final
probability with the whole text minus without it, on the classifier, the files, the CLI and the API.
A tiny hierarchy bundle with a small patent index, so the section, subclass and group are explained."""

from __future__ import annotations

import json

import httpx
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from patentclf.cli import app
from patentclf.corpus.hierarchy import parse_index_codes
from patentclf.inference.classifier import Classifier
from patentclf.inference.explain import MAX_SENTENCES, SentenceSpan, sentence_spans, without
from patentclf.inference.index import IndexedPatent, PatentIndex
from patentclf.inference.options import PredictOptions
from patentclf.inference.prediction import PREDICTION_SCHEMA, write_predictions
from patentclf.model.bundle import model_digest

from .servers import LiveServer

EXPLAIN = PredictOptions(explain=True)


@pytest.fixture(scope="module")
def rows(toy_hierarchy_data) -> list[dict]:
    return [json.loads(line) for line in (toy_hierarchy_data / "train.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def classifier(tiny_hierarchy_bundle, rows) -> Classifier:
    classifier = Classifier.load(tiny_hierarchy_bundle, precision="fp32", index=False)
    indexed = rows[:96]
    vectors = classifier.embed([r["text"] for r in indexed])
    patents = [IndexedPatent(r["id"], f"title {i}", parse_index_codes(r["ipc"])) for i, r in enumerate(indexed)]
    index = PatentIndex.build(vectors, patents, model_digest=model_digest(tiny_hierarchy_bundle))
    index.voting = {"k": 10, "power": 2.0, "other_weight": 0.5, "prior": 0.5, "class_mix": 0.3, "subclass_mix": 0.5}
    classifier.use_index(index)
    return classifier


@pytest.fixture(scope="module")
def texts(rows) -> list[str]:
    """Texts of a title line and sentences of toy rows of different sections."""
    return [f"Title {i}\n" + ". ".join(r["text"].capitalize() for r in rows[100 + 3 * i : 103 + 3 * i]) + "." for i in range(3)]


def test_sentences_are_spans_of_the_text_as_sent():
    text = "  A title\nFirst one (1). Second!  Third? e.g.x\n\n  Last without a stop  "
    spans = sentence_spans(text)
    assert [text[s.start : s.end] for s in spans] == [
        "A title",
        "First one (1).",
        "Second!",
        "Third?",
        "e.g.x",  # no white space after the stops: one sentence
        "Last without a stop",
    ]
    assert without(text, spans[1]) == "  A title\nSecond!  Third? e.g.x\n\n  Last without a stop  "
    assert without(text, spans[-1]) == "  A title\nFirst one (1). Second!  Third? e.g.x\n\n  "
    assert sentence_spans("one sentence only") == [SentenceSpan(0, 17)]


def test_each_effect_is_the_final_probability_with_the_sentence_minus_without(classifier, texts):
    explained = classifier.predict(texts, options=EXPLAIN)
    plain = classifier.predict(texts)
    # Explaining changes nothing else in the answer; the answer not asked for one has none.
    assert [{k: v for k, v in p.to_dict().items() if k != "explanation"} for p in explained] == [p.to_dict() for p in plain]
    assert all("explanation" not in p.to_dict() for p in plain)
    full = PredictOptions(subclasses=50, groups=50)  # enough codes to find the explained ones in each variant
    for text, p in zip(texts, explained):
        e = p.explanation
        assert e.method == "occlusion" and e.sentence_count == len(e.sentences) == 4 and not e.capped
        assert text[e.sentences[0].start : e.sentences[0].end].startswith("Title")
        assert [(c.level, c.code, c.probability) for c in e.codes] == [
            (b.level, b.code, b.probability) for b in p.levels if b.level != "class"
        ]
        variants = classifier.predict([without(text, span) for span in e.sentences], options=full)
        for code in e.codes:
            found = [
                v.probabilities[code.code]
                if code.level == "section"
                else next(
                    (
                        s.probability
                        for s in getattr(v, code.level + "s" if code.level == "group" else "subclasses")
                        if s.code == code.code
                    ),
                    0.0,
                )
                for v in variants
            ]
            assert code.effects == pytest.approx([code.probability - f for f in found], abs=2e-6)
    assert any(abs(effect) > 1e-3 for p in explained for c in p.explanation.codes for effect in c.effects)


def test_a_text_and_its_variants_share_one_model_call(classifier, texts, monkeypatch):
    calls = []
    outputs_of = classifier.engine.outputs_of
    monkeypatch.setattr(classifier.engine, "outputs_of", lambda ids: calls.append(len(ids)) or outputs_of(ids))
    classifier.predict(texts[:1], options=EXPLAIN, batch_size=64)
    assert calls == [1 + 4]


def test_the_options_say_which_levels_are_explained(classifier, texts):
    [no_subclass] = classifier.predict(texts[:1], options=PredictOptions(explain=True, subclasses=0))
    assert [c.level for c in no_subclass.explanation.codes] == ["section", "group"]
    [section_only] = classifier.predict(texts[:1], options=PredictOptions(explain=True, depth="section"))
    assert [c.level for c in section_only.explanation.codes] == ["section"]
    # Each text its own options in one call: only the one that asks is explained.
    answers = classifier.predict(texts[:2], options=[EXPLAIN, PredictOptions()])
    assert answers[0].explanation is not None and answers[1].explanation is None


def test_many_sentences_are_capped_to_the_first_and_one_sentence_has_nothing_to_leave_out(classifier):
    many = " ".join(f"Sentence {i} of a sensor." for i in range(MAX_SENTENCES + 5))
    [capped, single] = classifier.predict([many, "a sensor with a valve"], options=EXPLAIN)
    e = capped.explanation
    assert (len(e.sentences), e.sentence_count, e.capped) == (MAX_SENTENCES, MAX_SENTENCES + 5, True)
    assert all(len(c.effects) == MAX_SENTENCES for c in e.codes) and e.codes
    assert single.explanation.sentences == [SentenceSpan(0, 21)] and single.explanation.codes == []


def test_a_bad_explain_value_is_refused_naming_it(classifier):
    with pytest.raises(ValidationError, match="explain"):
        PredictOptions(explain="yes")
    with pytest.raises(ValueError, match="explain"):
        classifier.answers(classifier.raw_outputs(["a sensor"]), ["a sensor"], options=EXPLAIN)


def test_files_hold_the_explanation_only_when_asked(classifier, texts, tmp_path):
    answers = classifier.predict(texts[:2], options=[EXPLAIN, PredictOptions()])
    for name in ("out.jsonl", "out.csv", "out.parquet"):
        write_predictions(tmp_path / name, ["a", "b"], answers)
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines[0]["explanation"] == answers[0].to_dict()["explanation"] and "explanation" not in lines[1]
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.names == ["id", *PREDICTION_SCHEMA.names, "explanation"]
    assert table["explanation"].to_pylist() == [lines[0]["explanation"], None]
    assert "explanation" in (tmp_path / "out.csv").read_text().splitlines()[0]
    write_predictions(tmp_path / "plain.parquet", ["b"], answers[1:])
    assert pq.read_table(tmp_path / "plain.parquet").schema.names == ["id", *PREDICTION_SCHEMA.names]


def test_the_cli_writes_the_explanation_into_jsonl(tiny_hierarchy_bundle, texts, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "r1", "text": texts[0]}) + "\n")
    result = CliRunner().invoke(app, ["predict", "--model", str(tiny_hierarchy_bundle), "--input", str(source), "--explain"])
    assert result.exit_code == 0, result.output
    [line] = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [c["level"] for c in line["explanation"]["codes"]] == ["section", "subclass"]  # no index here: no group
    assert len(line["explanation"]["sentences"]) == 4
    printed = CliRunner().invoke(app, ["predict", "--model", str(tiny_hierarchy_bundle), texts[0], "--explain"])
    assert printed.exit_code == 0 and "Title 0" in printed.output and "the probability each added" in printed.output


def model_calls(url: str) -> tuple[float, float]:
    """The service's model calls so far, and the texts they held (its Prometheus histogram)."""
    lines = httpx.get(url + "/metrics").text.splitlines()
    value = lambda name: float(next(line.split()[-1] for line in lines if line.startswith(name + " ")))  # noqa: E731
    return value("patentclf_batch_texts_count"), value("patentclf_batch_texts_sum")


def test_the_api_explains_on_request_and_bounds_explained_batches(tiny_bundle, texts, tmp_path):
    with LiveServer(tiny_bundle, feedback_db=tmp_path / "fb.db", max_explain_batch=2, micro_batch_size=4) as live:
        plain = httpx.post(live.url + "/predict", json={"text": texts[0]}).json()
        before = model_calls(live.url)
        explained = httpx.post(live.url + "/predict", json={"text": texts[0], "options": {"explain": True}}).json()
        # The text and its four variants went through the fair queue as texts of the request, in calls
        # of at most micro_batch_size (4 + 1): another request would have shared the second call.
        after = model_calls(live.url)
        batch = httpx.post(live.url + "/predict/batch", json={"texts": texts[:2], "options": {"explain": True}})
        too_many = httpx.post(live.url + "/predict/batch", json={"texts": texts, "options": {"explain": True}})
        bad = httpx.post(live.url + "/predict", json={"text": texts[0], "options": {"explain": "yes"}})
    assert (after[0] - before[0], after[1] - before[1]) == (2, 5)
    assert "explanation" not in plain and explained["label"] == plain["label"]
    spans = explained["explanation"]["sentences"]
    assert [texts[0][s["start"] : s["end"]] for s in spans][0] == "Title 0" and len(spans) == 4
    assert [c["level"] for c in explained["explanation"]["codes"]] == ["section"]  # a section-only bundle
    assert batch.status_code == 200 and all(p["explanation"]["codes"] for p in batch.json()["predictions"])
    assert too_many.status_code == 422 and too_many.json()["detail"][0]["loc"] == ["body", "options", "explain"]
    assert "at most 2" in too_many.json()["detail"][0]["msg"]
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "options", "explain"]


@pytest.mark.slow
def test_on_the_shipped_model_the_top_sentence_carries_the_answer_more_than_the_least(shipped_model):
    """A faithfulness sanity check on a few bundled test rows (the figures are bench/explain.py's): a
    fresh prediction without the top-attributed sentence loses what its effect says, and that sentence
    alone keeps more of the probability than the least-attributed one alone."""
    from patentclf.corpus.data import load_split
    from patentclf.inference.explain import code_probability, probe_options

    texts = load_split("bundled", "test").texts[:6]
    classifier = Classifier.load(shipped_model)
    answers = classifier.predict(texts, options=EXPLAIN)
    cases, variants = [], []
    for text, answer in zip(texts, answers):
        e = answer.explanation
        assert [c.level for c in e.codes] == ["section", "subclass", "group"]
        for code in e.codes:
            top, least = code.effects.index(max(code.effects)), code.effects.index(min(code.effects))
            assert top != least
            cases.append((code, top, len(variants)))
            variants += [without(text, e.sentences[top])] + [
                text[e.sentences[i].start : e.sentences[i].end] for i in (top, least)
            ]
    predicted = classifier.predict(variants, options=probe_options(PredictOptions()))
    top_alone = least_alone = 0.0
    for code, top, at in cases:
        p = [code_probability(predicted[at + i], code.level, code.code) for i in range(3)]
        assert code.probability - p[0] == pytest.approx(code.effects[top], abs=1e-2)  # bf16: batch shapes round differently
        top_alone, least_alone = top_alone + p[1], least_alone + p[2]
    assert top_alone > least_alone * 1.2, (top_alone, least_alone)
