"""Batch mode's file handling: uploads in, results table and downloads out; and the examples are real."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest

from patentclf.corpus.data import DataError, bundled_data_dir
from patentclf.corpus.labels import CODES
from patentclf.ui.batch import MAX_ROWS, read_upload, results_table, table_has_hierarchy, to_csv, to_jsonl
from patentclf.ui.examples import EXAMPLES

from .ui_samples import hierarchy_answer


def _prediction(code: str, pid: str) -> dict:
    """A section-only model's answer."""
    probabilities = {c: (0.92 if c == code else 0.01) for c in CODES}
    return {
        "id": pid,
        "label": code,
        "name": "n",
        "confidence": 0.92,
        "probabilities": probabilities,
        "truncated": False,
        "needs_review": False,
        "sections": [code],
        "section_probabilities": {code: 0.92},
        "classes": [],
        "subclasses": [],
    }


def test_csv_with_title_and_abstract():
    upload = read_upload("patents.csv", b'id,title,abstract\nUS1,Lamp,"A lamp, with a wick"\nUS2,Valve,A valve\n')
    assert upload.ids == ["US1", "US2"]
    assert upload.texts == ["Lamp\nA lamp, with a wick", "Valve\nA valve"]


def test_jsonl_with_text_and_no_ids():
    upload = read_upload("patents.jsonl", b'{"text": "first"}\n\n{"text": "second"}\n')
    assert upload.ids == ["1", "2"] and upload.texts == ["first", "second"]


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("patents.txt", b"hello", "patents.txt: unsupported file type"),
        ("patents.csv", b"name,claims\nx,y\n", "patents.csv: no text column"),
        ("patents.jsonl", b'{"text": "ok"}\nnot json\n', "patents.jsonl: row 2: not valid JSON"),
        ("patents.jsonl", b'{"text": "ok"}\n{"text": "  "}\n', "patents.jsonl: row 2: empty text"),
    ],
)
def test_bad_uploads_name_the_file_and_the_problem(name, content, message):
    with pytest.raises(DataError) as caught:
        read_upload(name, content)
    assert str(caught.value).startswith(message)
    assert "/tmp" not in str(caught.value)  # the user's file name, not the temporary copy's path


def test_too_many_rows():
    content = "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(MAX_ROWS + 1)).encode()
    with pytest.raises(DataError, match=f"up to {MAX_ROWS}"):
        read_upload("big.jsonl", content)


def test_results_table_and_downloads():
    upload = read_upload("p.jsonl", b'{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}\n')
    table = results_table(upload, [_prediction("G", "p1"), _prediction("H", "p2")])
    assert list(table["label"]) == ["G", "H"] and list(table["prediction_id"]) == ["p1", "p2"]

    from_csv = pd.read_csv(io.BytesIO(to_csv(table)))
    assert list(from_csv["id"]) == ["a", "b"] and from_csv.loc[1, "p_H"] == pytest.approx(0.92)

    rows = [json.loads(line) for line in to_jsonl(table).decode().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert rows[0]["probabilities"] == _prediction("G", "p1")["probabilities"]
    assert "p_G" not in rows[0]


def test_downloads_carry_the_hierarchy():
    upload = read_upload("p.jsonl", b'{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}\n')
    answer = hierarchy_answer()
    table = results_table(upload, [answer, _prediction("F", "p2")])
    assert table_has_hierarchy(table)

    from_csv = pd.read_csv(io.BytesIO(to_csv(table)), keep_default_na=False)
    assert list(from_csv["sections"]) == ["H;G", "F"]
    assert list(from_csv["section_probabilities"]) == ["H (0.880); G (0.570)", "F (0.920)"]
    assert from_csv.loc[0, "classes"] == "H04 (0.620); G06 (0.210); G07 (0.060); G09 (0.040); G08 (0.020)"
    assert from_csv.loc[0, "subclasses"].startswith("H04M (0.470); G06Q (0.180); H04W (0.090)")
    assert from_csv.loc[1, "classes"] == from_csv.loc[1, "subclasses"] == ""
    assert from_csv.loc[0, "p_H"] == pytest.approx(0.71)  # the per-section columns are still there

    first, second = (json.loads(line) for line in to_jsonl(table).decode().splitlines())
    for key in ("sections", "section_probabilities", "classes", "subclasses"):
        assert first[key] == answer[key]  # structured, titles included, best first
    assert (second["sections"], second["classes"], second["subclasses"]) == (["F"], [], [])
    assert first["probabilities"] == answer["probabilities"]


def test_section_only_answers_have_no_hierarchy_to_show():
    upload = read_upload("p.jsonl", b'{"text": "one"}\n')
    assert not table_has_hierarchy(results_table(upload, [_prediction("G", "p1")]))
    # An API from before the hierarchy (no such fields) reads as a section-only answer.
    hierarchy = ("sections", "section_probabilities", "classes", "subclasses")
    old = {k: v for k, v in _prediction("G", "p1").items() if k not in hierarchy}
    table = results_table(upload, [old])
    assert not table_has_hierarchy(table)
    assert json.loads(to_jsonl(table))["sections"] == ["G"]


def test_examples_are_real_test_rows_from_several_sections():
    rows = {r["id"]: r for r in map(json.loads, (bundled_data_dir() / "test.jsonl").read_text().splitlines())}
    for example in EXAMPLES:
        row = rows[example.number]
        assert (example.title, example.abstract, example.section) == (row["title"], row["abstract"], row["section"])
    assert len({e.section for e in EXAMPLES}) == len(EXAMPLES) >= 4


def test_an_explanation_is_a_column_only_when_answered_and_json_in_the_csv():
    upload = read_upload("p.jsonl", b'{"id": "a", "text": "One. Two."}\n{"id": "b", "text": "three"}\n')
    assert "explanation" not in results_table(upload, [_prediction("G", "p1"), _prediction("H", "p2")]).columns
    explanation = {
        "method": "occlusion",
        "sentences": [{"start": 0, "end": 4}, {"start": 5, "end": 9}],
        "sentence_count": 2,
        "capped": False,
        "codes": [{"level": "section", "code": "G", "probability": 0.9, "effects": [0.2, -0.01]}],
    }
    table = results_table(upload, [_prediction("G", "p1") | {"explanation": explanation}, _prediction("H", "p2")])
    assert list(table["explanation"]) == [explanation, None]
    from_csv = pd.read_csv(io.BytesIO(to_csv(table)), keep_default_na=False)
    assert json.loads(from_csv.loc[0, "explanation"]) == explanation and from_csv.loc[1, "explanation"] == ""
    first, second = (json.loads(line) for line in to_jsonl(table).decode().splitlines())
    assert first["explanation"] == explanation and second["explanation"] is None
