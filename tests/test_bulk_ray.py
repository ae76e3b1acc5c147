"""Bulk classification on a real local Ray cluster (loopback), with the tiny model.

One cluster (`ray start --head` on 127.0.0.1) serves the module: Ray takes a while to start on two
cores. It has 4 logical CPUs on this 2-core machine: two 1-CPU model actors, plus the slots of
reading, writing and (on a rerun) Ray Data's checkpoint filter. Each run joins it as a client, as
`patentclf predict --engine ray --ray-address` does. Input errors that need no cluster are tested in
test_bulk_input.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.data", reason="the ray extra: pip install 'patentclf[ray]'")

import pyarrow as pa  # noqa: E402
import pyarrow.dataset as pads  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from patentclf.inference.prediction import PREDICTION_SCHEMA  # noqa: E402
from patentclf.jobs.bulk import BulkError, read_predictions, run_bulk  # noqa: E402
from patentclf.jobs.runner import CHECKPOINT_DIR  # noqa: E402

from .conftest import toy_rows, write_jsonl  # noqa: E402
from .ray_cluster import RayHead  # noqa: E402

pytestmark = pytest.mark.slow  # a Ray cluster and several model loads: about two minutes on two shared cores

ROWS = 3000
BATCH = 32  # texts per model call, here and in the actors: four times the CPU default, so the tests run faster


@pytest.fixture(scope="module")
def ray_address():
    import patentclf

    with RayHead(num_cpus=4, pythonpath=str(Path(patentclf.__file__).resolve().parents[1])) as address:
        yield address


@pytest.fixture(scope="module")
def input_rows() -> list[dict]:
    return toy_rows(ROWS, seed=11)


@pytest.fixture(scope="module")
def expected(tiny_bundle, input_rows) -> dict:
    """``Classifier.predict`` in this process, row by row: what every bulk row must say."""
    from patentclf.inference.classifier import Classifier

    predictions = Classifier.load(tiny_bundle).predict([r["text"] for r in input_rows], batch_size=BATCH)
    return {row["id"]: p for row, p in zip(input_rows, predictions)}


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
    total = 0
    for f in committed(out):
        try:
            total += pq.ParquetFile(f).metadata.num_rows
        except (OSError, pa.ArrowInvalid):  # renamed or removed while we looked
            pass
    return total


def assert_complete_and_right(out: Path, input_rows: list[dict], expected: dict) -> pa.Table:
    """Every input row once, no other row, and each one what Classifier.predict says of it."""
    table = pads.dataset(out, format="parquet").to_table()  # every file, no dedupe
    assert table.schema.names == ["id", *PREDICTION_SCHEMA.names]
    ids = table["id"].to_pylist()
    assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} rows written twice"
    assert set(ids) == {r["id"] for r in input_rows}
    for row in table.to_pylist():
        p = expected[row["id"]]
        assert row["label"] == p.label, row["id"]  # "prediction" before the section was "label" in every output
        assert row["truncated"] == p.truncated and row["sections"] == p.sections
        # bf16 on this CPU: other batch shapes round a little differently
        assert row["confidence"] == pytest.approx(p.confidence, abs=1e-2)
        assert row["probabilities"] == pytest.approx(p.probabilities, abs=1e-2)
        assert dict(row["section_probabilities"]) == pytest.approx(p.section_probabilities, abs=1e-2)
        assert row["classes"] == [c.__dict__ for c in p.classes] and row["subclasses"] == [c.__dict__ for c in p.subclasses]
    return table


def test_bulk_run_matches_the_classifier_row_by_row(ray_address, tiny_bundle, input_folder, input_rows, expected, tmp_path):
    out = tmp_path / "predictions"
    result = run_bulk(
        str(input_folder), str(out), model=tiny_bundle, address=ray_address, actors=2, rows_per_batch=200, batch_size=BATCH
    )
    assert (result.written, result.total) == (ROWS, ROWS)
    assert_complete_and_right(out, input_rows, expected)
    assert read_predictions(out).num_rows == ROWS

    again = run_bulk(str(input_folder), str(out), model=tiny_bundle, address=ray_address, actors=1)
    assert (again.written, again.total) == (0, ROWS)  # a finished job is not done twice


def test_answer_options_and_explain_shape_every_bulk_row_as_the_classifier_does(ray_address, tiny_hierarchy_bundle, tmp_path):
    """``run_bulk(options=...)`` (``patentclf predict --engine ray`` with answer flags): each row as
    ``Classifier.predict`` answers it with the same options, explanations included; a folder holds
    one job's options, so a rerun with others is refused."""
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.options import PredictOptions

    from .conftest import toy_hierarchy_rows

    rows = toy_hierarchy_rows(24, seed=3)
    for row, other in zip(rows, rows[1:] + rows[:1]):
        row["text"] = f"{row['text']}. {other['text']}."  # two sentences: something to explain
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    options = PredictOptions(classes=2, subclasses=1, threshold=0.01, depth="subclass", explain=True)
    out = tmp_path / "predictions"
    result = run_bulk(str(source), str(out), model=tiny_hierarchy_bundle, address=ray_address, actors=1, options=options)
    assert result.written == len(rows)
    expected = Classifier.load(tiny_hierarchy_bundle).predict([r["text"] for r in rows], options=options)
    table = read_predictions(out)
    assert table.schema.names == ["id", *PREDICTION_SCHEMA.names, "explanation"]
    by_id = {row["id"]: row for row in table.to_pylist()}
    for row, p in zip(rows, expected):
        got = by_id[row["id"]]
        assert [c["code"] for c in got["classes"]] == [c.code for c in p.classes] and len(got["classes"]) <= 2
        assert [c["code"] for c in got["subclasses"]] == [c.code for c in p.subclasses] and got["groups"] == []
        explained = got["explanation"]
        assert explained["sentences"] == [s.__dict__ for s in p.explanation.sentences]
        assert [c["code"] for c in explained["codes"]] == [c.code for c in p.explanation.codes]
        for code, want in zip(explained["codes"], p.explanation.codes):  # bf16 here: batch shapes round differently
            assert code["effects"] == pytest.approx(want.effects, abs=2e-2)
    with pytest.raises(BulkError, match="options"):
        run_bulk(str(source), str(out), model=tiny_hierarchy_bundle, address=ray_address, actors=1)


def test_killed_run_resumes_where_it_stopped(ray_address, tiny_bundle, input_folder, input_rows, expected, tmp_path):
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
        "50",
        "--batch-size",
        str(BATCH),
    ]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while committed_rows(out) < 100 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)  # the driver dies at once: no cleanup of its own
        _, stderr = first.communicate()
    done_at_kill = committed_rows(out)
    assert 100 <= done_at_kill < ROWS, f"the first run was not cut short midway ({done_at_kill} rows written): {stderr[-2000:]}"
    # Each committed checkpoint is named after the data file it vouches for.
    stems = [f.name.removesuffix(".parquet") for f in committed(out)]
    kept_files = {f.name: f.stat().st_mtime_ns for f in out.glob("*.parquet") if f.name.startswith(tuple(stems))}
    assert sum(pq.ParquetFile(out / name).metadata.num_rows for name in kept_files) == done_at_kill
    time.sleep(2)  # the cluster ends the dead driver's tasks; a write in flight may still have committed
    done_before = committed_rows(out)

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    message = " ".join(second.stderr.split())  # rich wraps lines
    assert f"now holds {ROWS}" in message, message[-2000:]
    written_now = int(message.split("wrote ")[1].split()[0])
    assert written_now == ROWS - done_before  # only the rest was classified
    assert_complete_and_right(out, input_rows, expected)
    # The files written before the kill are still there, untouched.
    assert {name: (out / name).stat().st_mtime_ns for name in kept_files} == kept_files


def test_a_bad_row_stops_the_run_with_its_id(ray_address, tiny_bundle, tmp_path):
    rows = [{"id": "ok", "text": "a sensor"}, {"id": "blank-7", "text": "  "}]
    source = write_jsonl(tmp_path / "blank.jsonl", rows)
    with pytest.raises(BulkError, match="blank-7.*empty text"):
        run_bulk(str(source), str(tmp_path / "out"), model=tiny_bundle, address=ray_address, actors=1)


def test_an_index_built_on_ray_resumes_and_matches_the_local_one(ray_address, tiny_hierarchy_bundle, tmp_path):
    """`patentclf index --engine ray`, killed midway and run again, indexes each row once, with the
    vectors the local engine computes."""
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.index import PatentIndex

    from .conftest import toy_hierarchy_rows

    rows = toy_hierarchy_rows(1200, seed=5)
    for row in rows[:10]:
        row["title"] = f"title {row['id']}"
    rows[7]["ipc"] = ""  # a row without codes is embedded but not indexed
    corpus = write_jsonl(tmp_path / "corpus.jsonl", rows)
    out = tmp_path / "index"
    command = [sys.executable, "-m", "patentclf.cli", "index", "--engine", "ray", "--input", str(corpus), "--output", str(out)]
    command += ["--model", str(tiny_hierarchy_bundle), "--ray-address", ray_address, "--rows-per-batch", "50", "--actors", "1"]
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ray_out = out / "_vectors" / "ray"
    try:
        deadline = time.monotonic() + 300
        while committed_rows(ray_out) < 100 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        _, stderr = first.communicate()
    assert 100 <= committed_rows(ray_out) < len(rows), f"the first run was not cut short midway: {stderr[-2000:]}"
    time.sleep(2)
    done_before = committed_rows(ray_out)

    second = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    message = " ".join(second.stderr.split())
    assert f"holds {len(rows) - 1} patents" in message and "1 rows without a readable code" in message, message[-2000:]
    assert f"({len(rows) - done_before} embedded now" in message  # only the rest went through the model
    assert not (out / "_vectors").exists()

    index = PatentIndex.load(out)
    assert sorted(p.id for p in index.patents) == sorted(r["id"] for r in rows if r["ipc"])
    by_id = {p.id: p for p in index.patents}
    assert by_id[rows[0]["id"]].title == f"title {rows[0]['id']}" and by_id[rows[20]["id"]].title == ""
    # The vectors are the local engine's: each text finds itself.
    texts = [r["text"] for r in rows[:20] if r["ipc"]]
    vectors = Classifier.load(tiny_hierarchy_bundle, index=False).embed(texts)
    similarities, found = index.search(vectors, 1)
    assert similarities[:, 0].min() > 0.99
    ids = [r["id"] for r in rows[:20] if r["ipc"]]
    assert sum(index.patents[i].id == own for i, own in zip(found[:, 0], ids)) >= len(ids) - 1  # a twin text may come first
