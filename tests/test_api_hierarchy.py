"""The CPC hierarchy on every prediction surface: ``POST /predict`` and ``/predict/batch`` (a real server
on loopback serving the tiny section-only bundle), the response schema, and ``patentclf predict`` JSONL."""

from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from patentclf.cli import app
from patentclf.corpus.labels import CODES
from patentclf.inference.prediction import CodeSuggestion, Prediction
from patentclf.service.runtime import ServedPrediction
from patentclf.service.schemas import PredictionResponse

from .conftest import toy_rows, write_jsonl
from .servers import LiveServer

HIERARCHY = ("sections", "section_probabilities", "classes", "subclasses")


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    with LiveServer(tiny_bundle, feedback_db=tmp_path_factory.mktemp("hierarchy") / "feedback.db") as live:
        yield live


def check_hierarchy(answer: dict) -> None:
    """The shape every surface promises, whatever the model: see PredictionResponse."""
    sections, probabilities = answer["sections"], answer["section_probabilities"]
    assert isinstance(sections, list) and sections and set(sections) <= set(CODES)
    assert len(set(sections)) == len(sections)
    assert answer.get("label", answer.get("prediction")) in sections
    assert set(probabilities) == set(sections)
    assert all(0.0 <= p <= 1.0 for p in probabilities.values())
    for key in ("classes", "subclasses"):
        suggestions = answer[key]
        assert isinstance(suggestions, list) and len(suggestions) <= 5
        for item in suggestions:
            assert set(item) == {"code", "title", "probability"}
            assert isinstance(item["code"], str) and isinstance(item["title"], str)
            assert 0.0 <= item["probability"] <= 1.0
        ranked = [item["probability"] for item in suggestions]
        assert ranked == sorted(ranked, reverse=True), f"{key} are not best first"


def check_section_only(answer: dict) -> None:
    """A bundle trained on section labels only: its one section, and no classes or subclasses."""
    label = answer.get("label", answer.get("prediction"))
    assert answer["sections"] == [label]
    assert answer["section_probabilities"] == pytest.approx({label: answer["confidence"]})
    assert answer["classes"] == [] and answer["subclasses"] == []


def test_predict_carries_the_hierarchy(server):
    answer = httpx.post(server.url + "/predict", json={"text": "a turbine engine with a heating valve"}, timeout=60).json()
    check_hierarchy(answer)
    check_section_only(answer)
    # Added fields, nothing removed.
    before = {"id", "label", "name", "label_id", "confidence", "probabilities", "truncated", "needs_review", "model_version"}
    assert before <= set(answer)


def test_batch_carries_the_hierarchy_for_every_text(server):
    texts = [row["text"] for row in toy_rows(6, seed=21)]
    answers = httpx.post(server.url + "/predict/batch", json={"texts": texts}, timeout=60).json()["predictions"]
    assert len(answers) == len(texts)
    for answer in answers:
        check_hierarchy(answer)
        check_section_only(answer)


def test_openapi_documents_the_new_fields(server):
    schemas = httpx.get(server.url + "/openapi.json").json()["components"]["schemas"]
    fields = schemas["PredictionResponse"]["properties"]
    assert set(HIERARCHY) <= set(fields)
    assert all(fields[key].get("description") for key in HIERARCHY)
    assert fields["classes"]["items"] == {"$ref": "#/components/schemas/CodeSuggestion"}
    assert set(schemas["CodeSuggestion"]["required"]) == {"code", "title", "probability"}


def test_filled_prediction_maps_to_a_valid_response_in_order():
    """A model with class and subclass heads: the service's mapping keeps every item and its order."""
    prediction = Prediction(
        label="G",
        label_id=CODES.index("G"),
        name="Physics",
        confidence=0.8,
        probabilities={code: (0.8 if code == "G" else 0.025) for code in CODES},
        truncated=False,
        sections=["G", "H"],
        section_probabilities={"G": 0.93, "H": 0.58},
        classes=[
            CodeSuggestion("G06", "COMPUTING; CALCULATING; COUNTING", 0.7),
            CodeSuggestion("H04", "ELECTRIC COMMUNICATION TECHNIQUE", 0.2),
        ],
        subclasses=[
            CodeSuggestion("G06F", "ELECTRIC DIGITAL DATA PROCESSING", 0.41),
            CodeSuggestion("H04N", "PICTORIAL COMMUNICATION", 0.22),
        ],
    )
    response = ServedPrediction("0" * 32, prediction, needs_review=False, model_version="model@test").to_response()
    check_hierarchy(response)
    assert PredictionResponse.model_validate(response).model_dump() == response
    assert [c["code"] for c in response["classes"]] == ["G06", "H04"]
    assert response["subclasses"][0] == {"code": "G06F", "title": "ELECTRIC DIGITAL DATA PROCESSING", "probability": 0.41}
    json.dumps(response)  # the answer is plain JSON


def test_response_schema_refuses_a_probability_out_of_range():
    bad = {"code": "G06F", "title": "", "probability": 1.5}
    with pytest.raises(ValueError, match="less than or equal to 1"):
        PredictionResponse.model_validate(
            {
                "id": "x",
                "label": "G",
                "name": "Physics",
                "label_id": 6,
                "confidence": 0.9,
                "probabilities": {},
                "truncated": False,
                "needs_review": False,
                "model_version": "m",
                "subclasses": [bad],
            }
        )


def test_cli_predict_jsonl_carries_the_hierarchy(tiny_bundle, tmp_path):
    rows = [{"id": row["id"], "text": row["text"]} for row in toy_rows(4, seed=22)]
    source, out = write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["predict", "--model", str(tiny_bundle), "--input", str(source), "--output", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == [row["id"] for row in rows]
    for line in lines:
        check_hierarchy(line)
        check_section_only(line)
