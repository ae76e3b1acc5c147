"""jobs/files.py: the one file lister and output-folder manifest of every job, local or on Ray."""

from __future__ import annotations

import pytest

from patentclf.corpus.inputs import DataError
from patentclf.jobs.files import list_input_files
from patentclf.jobs.indexing import read_corpus

from .conftest import write_jsonl


def test_the_lister_reads_folders_and_globs(tmp_path):
    row = [{"id": "1", "text": "a valve", "ipc": "F16K 1/00"}]
    a = write_jsonl(tmp_path / "in" / "a.jsonl", row)
    b = tmp_path / "in" / "2024" / "b.csv"
    b.parent.mkdir()
    b.write_text("id,text,ipc\n2,a lamp,F21V 1/00\n")
    write_jsonl(tmp_path / "in" / "_checkpoint" / "c.jsonl", row)  # names starting with _ or . are not data
    write_jsonl(tmp_path / "in" / "2024" / ".hidden.jsonl", row)
    (tmp_path / "in" / "notes.txt").write_text("not data")

    assert list_input_files(str(tmp_path / "in"))[1] == [str(b), str(a)]  # recursive, sorted
    assert list_input_files(str(tmp_path / "in" / "*.jsonl"))[1] == [str(a)]  # a pattern in a file name: that folder
    assert list_input_files(str(tmp_path / "in" / "*" / "*.csv"))[1] == [str(b)]  # in a folder name: below it
    with pytest.raises(DataError, match=r"nothing\*.jsonl: no file matches"):
        list_input_files(str(tmp_path / "nothing*.jsonl"))
    # The local index engine reads the same files as the Ray jobs.
    rows, skipped = read_corpus(str(tmp_path / "in"), None)
    assert [r["id"] for r in rows] == ["2", "1"] and skipped == 0
    assert [r["id"] for r in read_corpus(str(tmp_path / "in" / "*" / "*.csv"), None)[0]] == ["2"]
