"""Data loading: every format, every data spec, every kind of bad data, subsets and text forms."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from patentclf.corpus import data
from patentclf.corpus.data import DataError
from patentclf.corpus.labels import CODES, parse_label, section

from .conftest import write_jsonl

ROWS = [
    {"id": "US1", "title": "Hip implant", "abstract": "A prosthetic hip joint.", "section": "A"},
    {"id": "US2", "title": "Transistor", "abstract": "A field effect transistor.", "section": "H"},
    {"id": "US3", "title": "Lens", "abstract": "An optical lens system.", "section": "G"},
]


def test_label_table_is_ccdv_order():
    assert CODES == ("A", "B", "C", "D", "E", "F", "G", "H", "Y")
    assert section("G").name == "Physics"
    assert parse_label("h") == 7 and parse_label(8) == 8 and parse_label("3") == 3
    for bad in ("Z", 9, -1, "", None, True, 1.5):
        with pytest.raises(ValueError):
            parse_label(bad)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_each_file_format_reads_title_and_abstract_with_section_letters(tmp_path, suffix):
    path = tmp_path / f"rows{suffix}"
    frame = pd.DataFrame(ROWS)
    if suffix == ".jsonl":
        write_jsonl(path, ROWS)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    split = data.read_file(path)
    assert split.labels == [0, 7, 6]
    assert split.ids == ["US1", "US2", "US3"]
    assert split.texts[0] == "Hip implant\nA prosthetic hip joint."


def test_text_and_numeric_label_columns(tmp_path):
    path = write_jsonl(
        tmp_path / "ccdv.jsonl", [{"text": "a method of weaving yarn", "label": 3}, {"text": "an engine", "label": 5}]
    )
    split = data.load_split(str(path), "test")
    assert split.texts == ["a method of weaving yarn", "an engine"] and split.labels == [3, 5]


def test_configurable_text_fields(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", ROWS)
    split = data.load_split(str(path), text_fields=("abstract",))
    assert split.texts[1] == "A field effect transistor."


def test_folder_with_splits_and_aliases(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", ROWS)
    pd.DataFrame(ROWS[:2]).to_csv(tmp_path / "dev.csv", index=False)
    assert len(data.load_split(str(tmp_path), "train")) == 3
    assert len(data.load_split(str(tmp_path), "validation")) == 2
    assert data.has_split(str(tmp_path), "validation") and not data.has_split(str(tmp_path), "test")
    with pytest.raises(DataError, match="no test file"):
        data.load_split(str(tmp_path), "test")


def test_bundled_data_is_the_real_uspto_abstracts():
    folder = data.bundled_data_dir()
    assert "Provenance" in (folder / "README.md").read_text()
    test = data.load_split("bundled", "test")
    train = data.load_split("bundled", "train")
    assert len(test) == 988 and len(train) == 7922  # after near-duplicates were regrouped (see the data README)
    assert test.label_counts()["D"] == 19 and test.label_counts()["Y"] == 0
    assert not set(test.ids) & set(train.ids)


@pytest.mark.parametrize(
    "rows, message",
    [
        ([{"text": "ok", "label": "Z"}], r"row 1: unknown label 'Z'"),
        ([{"text": "ok", "label": 3}, {"text": "ok", "label": 12}], r"row 2: label id 12 is outside"),
        ([{"text": "ok", "label": "A"}, {"text": "   ", "label": "A"}], r"row 2: empty text"),
        ([{"body": "no text here", "label": "A"}], r"no text column"),
        ([{"text": "no label"}], r"no label column"),
    ],
)
def test_bad_rows_name_file_row_and_problem(tmp_path, rows, message):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=message) as info:
        data.read_file(path)
    assert str(path) in str(info.value)


def test_bad_files_are_clear_errors(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine", "label": 0}\n{"text": oops}\n')
    with pytest.raises(DataError, match=r"broken.jsonl: row 2: not valid JSON"):
        data.read_file(broken)
    not_parquet = tmp_path / "fake.parquet"
    not_parquet.write_bytes(b"not a parquet file")
    with pytest.raises(DataError, match=r"fake.parquet: cannot read the file"):
        data.read_file(not_parquet)
    text_file = tmp_path / "x.txt"
    text_file.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        data.read_file(text_file)
    with pytest.raises(DataError, match="no such file"):
        data.load_split(str(tmp_path / "missing.jsonl"))
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(DataError, match="no rows"):
        data.read_file(empty)


def test_unlabelled_rows_for_prediction(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [{"id": 7, "text": "an antenna"}, {"text": "a door"}])
    split = data.load_split(str(path), require_labels=False)
    assert split.labels is None and split.ids == ["7", None]


def test_stratified_subset_is_seeded_and_keeps_the_mix():
    train = data.load_split("bundled", "train")
    subset = data.stratified_subset(train, 1000, seed=1)
    assert len(subset) == 1000
    assert subset.texts == data.stratified_subset(train, 1000, seed=1).texts
    assert subset.texts != data.stratified_subset(train, 1000, seed=2).texts
    full, small = train.label_counts(), subset.label_counts()
    for code in CODES:
        assert abs(small[code] - full[code] * 1000 / len(train)) <= 1


def test_holdout_is_disjoint_and_complete():
    rows = data.Split(texts=[f"t{i}" for i in range(50)], labels=[i % 5 for i in range(50)])
    train, held = data.stratified_holdout(rows, 0.2, seed=0)
    assert len(held) == 10 and len(train) == 40
    assert sorted(train.texts + held.texts) == sorted(rows.texts)
    assert held.label_counts()["A"] == 2


def test_bigpatent_form_matches_the_dataset_style_and_is_idempotent():
    text = "A process of dewatering primary-treated sewage (10.5% solids), which includes mixing."
    form = data.to_bigpatent_form(text)
    assert form == "a process of dewatering primary - treated sewage ( 10.5 % solids ) , which includes mixing ."
    assert data.to_bigpatent_form(form) == form


def test_hub_spec_failure_is_a_clear_error():
    # Offline here: the real hub code path runs and fails with a readable message.
    with pytest.raises(DataError, match="ccdv/patent-classification.*cannot load"):
        data.load_split("ccdv/patent-classification", "test", data_config="abstract")


def test_json_array_files(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([{"text": "a yarn", "label": "D"}]))
    assert data.read_file(path).labels == [3]
