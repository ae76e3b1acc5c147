"""The one reader of patent files: each format read by its rules, and the local path (training data,
`patentclf predict --input`, the UI's uploads) and the bulk job's read tasks reading a file alike."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from patentclf.corpus import inputs
from patentclf.corpus.data import read_file, rows_to_split
from patentclf.corpus.inputs import DataError

from .conftest import write_jsonl


def read(path, fields=("text",)) -> list[dict]:
    """What the bulk job's read tasks make of one file."""
    with pa.OSFile(str(path)) as f:
        return pa.concat_tables(inputs.read_rows(f, str(path), fields)).to_pylist()


def test_each_format_is_read_as_the_local_engine_reads_it(tmp_path):
    jsonl = write_jsonl(tmp_path / "a.jsonl", [{"id": 7, "text": "a sensor", "n": 1}, {"id": "x", "title": "no text"}])
    assert read(jsonl) == [{"id": "7", "text": "a sensor"}, {"id": "x", "text": None}]
    array = tmp_path / "b.json"
    array.write_text(json.dumps([{"id": "j", "text": "a lamp"}]))
    assert read(array) == [{"id": "j", "text": "a lamp"}]
    csv = tmp_path / "c.csv"
    csv.write_text("id,text,count\n00123,a valve,1\n00124,,2\n")
    assert read(csv) == [{"id": "00123", "text": "a valve"}, {"id": "00124", "text": ""}]  # ids stay text
    parquet = tmp_path / "d.parquet"
    pq.write_table(pa.table({"id": [1, 2], "title": ["t", None], "abstract": ["a", "b"]}), parquet)
    assert read(parquet, ("title", "abstract")) == [
        {"id": "1", "title": "t", "abstract": "a"},
        {"id": "2", "title": None, "abstract": "b"},
    ]

    broken = tmp_path / "e.jsonl"
    broken.write_text('{"id": "1", "text": "fine"}\n\n{"id": "3", "text": \n')
    with pytest.raises(DataError, match=r"e.jsonl: row 3: not valid JSON"):
        read(broken)


@pytest.fixture
def one_file_each(tmp_path) -> list:
    """The same rows as JSONL, a JSON array, CSV and Parquet: ids that look like numbers, a title
    missing in one row, a text with a line separator inside a JSON string."""
    rows = [
        {"id": "00123", "title": "Lamp", "abstract": "A lamp\u2028with a wick."},
        {"id": "7", "title": "", "abstract": "A valve."},
    ]
    jsonl = write_jsonl(tmp_path / "rows.jsonl", rows)
    array = tmp_path / "rows.json"
    array.write_text(json.dumps(rows, ensure_ascii=False))
    csv = tmp_path / "rows.csv"
    csv.write_text('id,title,abstract\n00123,Lamp,"A lamp\u2028with a wick."\n7,,A valve.\n', encoding="utf-8")
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    return [jsonl, array, csv, parquet]


def test_the_local_path_and_the_bulk_reader_read_a_file_alike(one_file_each):
    fields = ("title", "abstract")
    for path in one_file_each:
        local = read_file(path, require_labels=False)
        bulk = rows_to_split(read(path, fields), str(path), text_fields=fields, require_labels=False)
        assert local.ids == bulk.ids == ["00123", "7"], path
        assert local.texts == bulk.texts == ["Lamp\nA lamp\u2028with a wick.", "A valve."], path


def test_csv_cells_are_text_and_parquet_keeps_its_types(tmp_path):
    csv = tmp_path / "rows.csv"
    csv.write_text("id,text,label\n007,a gear,3\n008,,\n")
    assert inputs.read_local_records(csv) == [
        {"id": "007", "text": "a gear", "label": "3"},
        {"id": "008", "text": "", "label": ""},
    ]
    parquet = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"id": pa.array([1, None], pa.int64()), "text": ["a", "b"]}), parquet)
    assert inputs.read_local_records(parquet) == [{"id": 1, "text": "a"}, {"id": None, "text": "b"}]
    assert read_file(parquet, require_labels=False).ids == ["1", None]  # an int id stays "1", not "1.0"


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("x.txt", b"x", r"x.txt: unsupported file type '.txt'; use one of .jsonl, .json, .csv, .parquet"),
        ("x.json", b"[1, 2]", r"x.json: a JSON array must hold objects"),
        ("x.json", b"[{", r"x.json: not valid JSON"),
        ("x.jsonl", b'{"text": "a"}\n[1]\n', r"x.jsonl: row 2: expected a JSON object, got list"),
        ("x.jsonl", b'{"text": "\xff"}\n', r"x.jsonl: cannot read the file"),
        ("x.csv", b"id,text\n1,a,extra\n", r"x.csv: cannot read the file: CSV parse error: Expected 2 columns, got 3"),
        ("x.parquet", b"not parquet", r"x.parquet: cannot read the file"),
    ],
)
def test_bad_files_are_one_line_errors_naming_the_file(name, content, message):
    with pytest.raises(DataError, match=message):
        inputs.read_records(pa.BufferReader(content), name)


def test_an_empty_csv_has_no_rows(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert inputs.read_local_records(empty) == []
    with pytest.raises(DataError, match="empty.csv: no rows"):
        read_file(empty)
