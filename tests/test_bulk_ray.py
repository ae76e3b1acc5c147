"""Bulk classification on a real local Ray cluster (loopback), with the tiny model.

One cluster (`ray start --head`) serves the module: Ray takes a while to start on two cores. It has 4
logical CPUs on this 2-core machine: two 1-CPU actors, plus slots for reading, the checkpoint filter
and writing. Each run joins it as a client, as `patentclf predict --engine ray --ray-address` does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from patentclf.bulk import CHECKPOINT_DIR, PREDICTION_SCHEMA, BulkError, list_input_files, read_predictions, run_bulk

from .conftest import toy_rows, write_jsonl
from .ray_cluster import RayHead

pytestmark = pytest.mark.slow  # a Ray cluster and several model loads: about a minute on two shared cores

ROWS = 3000


@pytest.fixture(scope="module")
def ray_address():
    import patentclf

    with RayHead(num_cpus=4, pythonpath=str(Path(patentclf.__file__).resolve().parents[1])) as address:
        yield address


@pytest.fixture(scope="module")
def input_rows() -> list[dict]:
    return toy_rows(ROWS, seed=11)


@pytest.fixture(scope="module")
def input_folder(tmp_path_factory, input_rows) -> Path:
    """The rows split over a JSONL, a CSV and a Parquet file (ids as text in each)."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("bulk-input")
    write_jsonl(folder / "part-a.jsonl", input_rows[:1500])
    pd.DataFrame(input_rows[1500:2500]).to_csv(folder / "part-b.csv", index=False)
    pq.write_table(pa.Table.from_pylist(input_rows[2500:]), folder / "part-c.parquet")
    (folder / "README.txt").write_text("not data: skipped")
    return folder


def committed(out: Path) -> list[Path]:
    """Ray Data's committed row checkpoints (a pending one ends in .pending.parquet)."""
    return [f for f in (out / CHECKPOINT_DIR).glob("*.parquet") if not f.name.endswith(".pending.parquet")]


def committed_rows(out: Path) -> int:
    return sum(pq.ParquetFile(f).metadata.num_rows for f in committed(out))


def assert_complete_without_duplicates(out: Path, input_rows: list[dict]) -> pa.Table:
    table = pads.dataset(out, format="parquet").to_table()  # every file, no dedupe
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} rows written twice"
    assert set(ids) == {r["id"] for r in input_rows}
    return table


def test_bulk_run_matches_the_classifier_row_by_row(ray_address, tiny_bundle, input_folder, input_rows, tmp_path):
    from patentclf.classifier import Classifier

    out = tmp_path / "predictions"
    result = run_bulk(str(input_folder), str(out), model=tiny_bundle, address=ray_address, actors=2, rows_per_batch=200)
    assert (result.written, result.total) == (ROWS, ROWS)
    table = assert_complete_without_duplicates(out, input_rows)
    assert table.schema.names == ["id", *PREDICTION_SCHEMA.names]

    expected = Classifier.load(tiny_bundle).predict([r["text"] for r in input_rows])
    by_id = {row["id"]: row for row in read_predictions(out).to_pylist()}
    for source, p in zip(input_rows, expected):
        row = by_id[source["id"]]
        assert row["prediction"] == p.label, source["id"]
        assert row["truncated"] == p.truncated and row["sections"] == p.sections
        assert row["confidence"] == pytest.approx(p.confidence, abs=1e-2)
        # bf16 on this CPU: other batch shapes round a little differently
        assert row["probabilities"] == pytest.approx(p.probabilities, abs=1e-2)
        assert dict(row["section_probabilities"]) == pytest.approx(p.section_probabilities, abs=1e-2)
        assert row["classes"] == [c.__dict__ for c in p.classes] and row["subclasses"] == [c.__dict__ for c in p.subclasses]

    again = run_bulk(str(input_folder), str(out), model=tiny_bundle, address=ray_address)
    assert (again.written, again.total) == (0, ROWS)  # a finished job is not done twice


def test_killed_run_resumes_where_it_stopped(ray_address, tiny_bundle, input_folder, input_rows, tmp_path):
    out = tmp_path / "predictions"
    command = [
        sys.executable,
        "-m",
        "patentclf.cli",
        "predict",
        "--engine",
        "ray",
        "--input",
        str(input_folder / "part-*"),
        "--output",
        str(out),
        "--model",
        str(tiny_bundle),
        "--ray-address",
        ray_address,
        "--rows-per-batch",
        "25",
    ]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while committed_rows(out) < 100 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    done_at_kill = committed_rows(out)
    assert 100 <= done_at_kill < ROWS, f"the first run was not cut short midway ({done_at_kill} rows written)"
    # Each committed checkpoint is named after the data file(s) it vouches for.
    stems = [f.name.removesuffix(".parquet") for f in committed(out)]
    kept_files = {f.name: f.stat().st_mtime_ns for f in out.glob("*.parquet") if f.name.startswith(tuple(stems))}
    assert sum(pq.ParquetFile(out / name).metadata.num_rows for name in kept_files) == done_at_kill

    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr[-3000:]
    message = " ".join(second.stderr.split())  # rich wraps lines
    assert f"now holds {ROWS}" in message, message[-2000:]
    written_now = int(message.split("wrote ")[1].split()[0])
    assert written_now <= ROWS - done_at_kill  # only the rest was classified (a write in flight at the kill may have landed)
    assert_complete_without_duplicates(out, input_rows)
    # The files written before the kill are still there, untouched.
    assert {name: (out / name).stat().st_mtime_ns for name in kept_files} == kept_files


def test_bad_input_is_a_clear_error(ray_address, tiny_bundle, tmp_path):
    with pytest.raises(BulkError, match="no such file or folder"):
        list_input_files(str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BulkError, match="no .jsonl, .json, .csv, .parquet files"):
        list_input_files(str(tmp_path / "*.txt"))

    no_ids = write_jsonl(tmp_path / "no-ids.jsonl", [{"text": "a sensor"}])
    with pytest.raises(BulkError, match="no 'id' column"):
        run_bulk(str(no_ids), str(tmp_path / "out-1"), model=tiny_bundle, address=ray_address)

    empty = write_jsonl(tmp_path / "empty.jsonl", [{"id": "ok", "text": "a sensor"}, {"id": "blank-7", "text": "  "}])
    with pytest.raises(BulkError, match="blank-7.*empty text"):
        run_bulk(str(empty), str(tmp_path / "out-2"), model=tiny_bundle, address=ray_address, actors=1)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    pq.write_table(pa.table({"x": [1]}), foreign / "data.parquet")
    with pytest.raises(BulkError, match="no patentclf bulk run wrote"):
        run_bulk(str(no_ids), str(foreign), model=tiny_bundle, address=ray_address)
