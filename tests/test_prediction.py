"""The prediction record: one declaration that the API's schema, the CLI's JSONL lines, the bulk
Parquet files and the UI's downloads are derived from."""

from __future__ import annotations

import json

from patentclf.corpus.labels import CODES
from patentclf.inference.prediction import (
    FILE_FIELDS,
    RECORD_FIELDS,
    CodeSuggestion,
    Prediction,
    PredictionRecord,
    file_record,
    prediction_record,
)
from patentclf.service.schemas import PredictionResponse


def _prediction() -> Prediction:
    return Prediction(
        label="G",
        label_id=6,
        name="Physics",
        confidence=0.8,
        probabilities={code: (0.8 if code == "G" else 0.025) for code in CODES},
        truncated=True,
        chunks=2,
        sections=["G", "H"],
        section_probabilities={"G": 0.93, "H": 0.58},
        classes=[CodeSuggestion("G06", "COMPUTING; CALCULATING; COUNTING", 0.7)],
        subclasses=[CodeSuggestion("G06F", "ELECTRIC DIGITAL DATA PROCESSING", 0.41)],
    )


def test_the_api_answers_the_record_with_the_same_fields_as_before_then_groups_and_evidence():
    schema = PredictionResponse.model_json_schema()
    assert list(schema["properties"]) == [
        "id",
        "label",
        "name",
        "label_id",
        "confidence",
        "probabilities",
        "truncated",
        "chunks",
        "needs_review",
        "model_version",
        "sections",
        "section_probabilities",
        "classes",
        "subclasses",
        "groups",  # added after the pipeline refactor: main groups and evidence (issue 20)
        "similar",
        "levels",  # added for one coherent, honest answer (issue 25)
        "review_reasons",
        "evidence_disagrees",
        "tags",  # added for the user's own tags (issue 27): absent from an answer without tag sets
        "explanation",  # added for explanations, only in answers that ask for one (issue 26)
    ]
    assert schema["required"] == [
        "id",
        "label",
        "name",
        "label_id",
        "confidence",
        "probabilities",
        "truncated",
        "needs_review",
        "model_version",
    ]
    assert schema["title"] == "PredictionResponse" and "description" not in schema
    suggestion = schema["$defs"]["CodeSuggestion"]
    assert suggestion["description"] == "A CPC class, subclass or main group the patent may belong to."
    assert list(schema["$defs"]["SimilarPatent"]["properties"]) == ["id", "title", "code", "codes", "similarity"]
    assert suggestion["properties"]["probability"] == {"maximum": 1, "minimum": 0, "title": "Probability", "type": "number"}
    assert list(schema["$defs"]["LevelAnswer"]["properties"]) == ["level", "code", "title", "probability", "right_share"]
    assert list(schema["$defs"]["ReviewReason"]["properties"]) == ["reason", "message"]


def test_a_prediction_becomes_the_record_and_a_file_row():
    record = prediction_record(_prediction(), id="0" * 32, needs_review=False, model_version="m@1")
    assert list(record) == list(RECORD_FIELDS)
    assert PredictionRecord.model_validate(record).model_dump() == record
    assert record["classes"] == [{"code": "G06", "title": "COMPUTING; CALCULATING; COUNTING", "probability": 0.7}]
    json.dumps(record)  # plain JSON

    # The keys of `patentclf predict --input`'s lines (README), the section named "label" as in the API
    # (files of older versions called it "prediction").
    row = file_record(record)
    assert list(row) == [
        "label",
        "confidence",
        "probabilities",
        "truncated",
        "needs_review",  # in files too since the answer's own flag (issue 25)
        "sections",
        "section_probabilities",
        "classes",
        "subclasses",
        "groups",
        "similar",
        "levels",
        "review_reasons",
        "evidence_disagrees",
    ]
    assert row["label"] == "G" and row["classes"] == record["classes"]
    assert file_record(prediction_record(_prediction())) == row  # a file needs none of the service's fields
    assert len(FILE_FIELDS) == len(row)


def test_the_parquet_rows_are_the_jsonl_lines():
    """The Parquet schema is derived from the prediction record: each row holds what a line of
    `patentclf predict --input` holds, the nine probabilities as a struct, the predicted sections' as a map."""
    import pyarrow as pa

    from patentclf.inference.prediction import prediction_table

    prediction = _prediction()
    table = prediction_table(pa.array(["US1"]), [prediction])
    line = file_record(prediction_record(prediction))
    assert table.schema.names == ["id", *line]
    assert table.schema.field("probabilities").type == pa.struct([(code, pa.float64()) for code in CODES])
    assert pa.types.is_map(table.schema.field("section_probabilities").type)
    row = table.to_pylist()[0]
    row["section_probabilities"] = dict(row["section_probabilities"])
    assert row == {"id": "US1", **line}
