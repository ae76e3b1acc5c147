"""`--engine ray` without a cluster: what it refuses before any cluster starts, the rows it writes, and
the error when Ray is not installed. How files are read is in test_inputs.py; the runs on a real
cluster are in test_bulk_ray.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from patentclf.cli import app
from patentclf.corpus.inputs import DataError
from patentclf.jobs.files import MANIFEST

from .conftest import write_jsonl


@pytest.fixture
def runner(monkeypatch):
    """patentclf.jobs.runner, with any cluster start turned into a failure: nothing here may need one."""
    pytest.importorskip("ray.data", reason="the ray extra: pip install 'patentclf[ray]'")
    from patentclf.jobs import runner

    def no_cluster(*args, **kwargs):
        raise AssertionError("this check should have stopped the run before any cluster started")

    monkeypatch.setattr(runner, "_connect", no_cluster)
    return runner


@pytest.fixture
def bulk(runner):
    """patentclf.jobs.bulk, on the runner that starts no cluster."""
    from patentclf.jobs import bulk

    return bulk


@pytest.fixture
def fake_bundle(tmp_path):
    """Enough of a bundle for the checks made before a cluster starts (its info and adapter digest)."""
    from patentclf.model.bundle import ADAPTER_FILE, INFO_FILE, label_table

    def make(name: str, weights: bytes = b"weights"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / INFO_FILE).write_text(json.dumps({"labels": label_table(), "base_model": "smollm2-135m"}))
        (folder / ADAPTER_FILE).write_bytes(weights)
        return folder

    return make


def test_input_is_checked_before_a_cluster_starts(bulk, runner, fake_bundle, tmp_path):
    model = fake_bundle("model")

    def run(source, **options):
        bulk.run_bulk(str(source), str(tmp_path / "out"), model=model, **options)

    with pytest.raises(bulk.BulkError, match="missing: no such file or folder"):
        run(tmp_path / "missing")
    with pytest.raises(bulk.BulkError, match=r"\*.jsonl: no file matches"):
        run(tmp_path / "*.jsonl")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "read-me.txt").write_text("x")
    with pytest.raises(bulk.BulkError, match=r"no .jsonl, .json, .csv, .parquet files \(found .txt\)"):
        run(tmp_path / "notes")

    data = tmp_path / "data"
    write_jsonl(data / "good.jsonl", [{"id": "1", "text": "a sensor"}])
    write_jsonl(data / "no-text.jsonl", [{"id": "2", "body": "a lamp"}])
    with pytest.raises(bulk.BulkError, match=r"no-text.jsonl: no text column 'text' \(columns: \['body', 'id'\]\)"):
        run(data)
    (data / "no-text.jsonl").unlink()
    (data / "no-ids.csv").write_text("text\na door\n")
    with pytest.raises(bulk.BulkError, match=r"no-ids.csv: no 'id' column"):
        run(data)
    with pytest.raises(bulk.BulkError, match=r"missing text column\(s\) \['claims'\]"):
        run(data / "good.jsonl", text_fields=("claims",))
    (data / "empty.jsonl").write_text("")  # an empty file adds no rows and needs no columns
    assert runner.plan_input(str(data / "*.jsonl"), None)[1:] == (
        [str(data / "empty.jsonl"), str(data / "good.jsonl")],
        ("text",),
    )


def test_repeated_ids_refuse_the_job_before_a_cluster_starts(bulk, runner, fake_bundle, tmp_path):
    """Rows are checkpointed and read back by id: a repeated id would silently lose a row, so it is an
    error that names the ids and the files, across files and formats."""
    model, data = fake_bundle("model"), tmp_path / "data"
    write_jsonl(data / "a.jsonl", [{"id": "7", "text": "a sensor"}, {"id": 8, "text": "a lamp"}])
    (data / "b.csv").write_text("id,text\n08,a door\n11,a hinge\n")  # "08" is not "8": ids are text
    pq.write_table(pa.table({"id": ["9"], "text": ["a wheel"]}), data / "c.parquet")
    (data / "empty.csv").write_text("")
    fs = pafs.LocalFileSystem()
    _, files, _ = runner.plan_input(str(data), None)
    assert runner.check_unique_ids(fs, files) == 5

    pq.write_table(pa.table({"id": [7, 8], "text": ["a gear", "a shaft"]}), data / "d.parquet")  # ints read as text
    with pytest.raises(
        bulk.BulkError, match=r"ids must be unique, and 2 repeat: '7' \(2 rows\), '8' \(2 rows\), in a.jsonl, d.parquet\."
    ):
        bulk.run_bulk(str(data), str(tmp_path / "out"), model=model)
    assert not (tmp_path / "out").exists()  # refused before the output folder was made

    write_jsonl(data / "e.jsonl", [{"id": "  ", "text": "a spring"}])
    (data / "d.parquet").unlink()
    with pytest.raises(DataError, match=r"e.jsonl: a row has no id"):
        runner.check_unique_ids(fs, runner.plan_input(str(data), None)[1])


def test_an_output_folder_holds_one_job(bulk, fake_bundle, tmp_path):
    model, other_model = fake_bundle("model"), fake_bundle("other", b"other weights")
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "1", "text": "a sensor"}])
    out = tmp_path / "out"

    def run(model=model, source=source, out=out, **kw):
        bulk.run_bulk(str(source), str(out), model=model, **kw)

    with pytest.raises(AssertionError, match="before any cluster"):  # a new folder: the job starts
        run()
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["model_version"].startswith("model@") and manifest["input"] == str(source)
    with pytest.raises(AssertionError, match="before any cluster"):  # nothing written yet: another job may take it
        run(model=other_model)
    assert json.loads((out / MANIFEST).read_text())["model_version"].startswith("other@")

    pq.write_table(pa.table({"id": ["1"]}), out / "part-0.parquet")  # once it holds predictions it is that job's
    with pytest.raises(bulk.BulkError, match=r"another job's predictions \(model 'other@.*' -> 'model@"):
        run()
    with pytest.raises(bulk.BulkError, match=r"input .* -> .*elsewhere.jsonl"):
        run(model=other_model, source=write_jsonl(tmp_path / "elsewhere.jsonl", [{"id": "1", "text": "x"}]))
    with pytest.raises(bulk.BulkError, match="long text 'truncate' -> 'chunk'"):
        run(model=other_model, long_text="chunk")
    with pytest.raises(AssertionError, match="before any cluster"):  # the same job again: it resumes
        run(model=other_model)

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    pq.write_table(pa.table({"x": [1]}), foreign / "data.parquet")
    with pytest.raises(bulk.BulkError, match="already holds Parquet files that no patentclf bulk run wrote"):
        run(out=foreign)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(bulk.BulkError, match="is a file"):
        run(out=tmp_path / "a-file")


def cli_error(*args: str) -> str:
    """The CLI's error message, with rich's line wrapping undone; it must exit 2, without a traceback."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return " ".join(result.output.split())


def test_the_cli_gives_one_line_errors(bulk, tmp_path):
    missing = str(tmp_path / "nothing")
    assert f"error: {missing}: no such file or folder" in cli_error(
        "predict", "--engine", "ray", "--input", missing, "--output", "o"
    )
    assert "--engine ray classifies files" in cli_error("predict", "--engine", "ray", "a patent text")
    # A choice the parser knows: refused before anything loads, with the choices named.
    refused = " ".join(cli_error("predict", "--engine", "spark", "a patent text").replace("│", " ").split())
    assert "'spark' is not one of 'local', 'ray'" in refused


def test_without_ray_the_ray_engine_says_what_to_install(monkeypatch, tmp_path):
    for name in [m for m in sys.modules if m.startswith("ray.")]:  # a Ray imported by other tests
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as where it is not installed
    for name in ("patentclf.jobs.bulk", "patentclf.jobs.runner"):  # the modules that import Ray
        monkeypatch.delitem(sys.modules, name, raising=False)
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "1", "text": "a sensor"}])
    message = cli_error("predict", "--engine", "ray", "--input", str(source), "--output", str(tmp_path / "o"))
    assert message.startswith("error: --engine ray needs Ray (ray") and message.endswith(
        "is missing): pip install 'patentclf[ray]'"
    )


def test_the_cli_imports_ray_only_for_the_ray_engine():
    code = "import sys, patentclf.cli; print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_the_index_job_and_the_predict_job_refuse_each_other_s_folder(bulk, runner, fake_bundle, tmp_path):
    """Both jobs run on the one runner and share its manifest: a folder one wrote is refused to the other,
    and folders written before the runner (each job's manifest as it was) are resumed."""
    from patentclf.jobs.indexing import embed_on_ray
    from patentclf.model.bundle import model_version

    model = fake_bundle("model")
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "1", "text": "a valve", "ipc": "F16K 1/00"}])
    predictions, vectors = tmp_path / "predictions", tmp_path / "vectors"

    def predict(out):
        bulk.run_bulk(str(source), str(out), model=model)

    def embed(out):
        embed_on_ray(str(source), str(out), model=model, text_fields=None, cluster=runner.Cluster(actors=1))

    for run, out in ((predict, predictions), (embed, vectors)):
        with pytest.raises(AssertionError, match="before any cluster"):  # a new folder: the job starts
            run(out)
        pq.write_table(pa.table({"id": ["1"]}), out / "part-0.parquet")  # once it holds rows it is that job's
    with pytest.raises(bulk.BulkError, match=r"another job's output \(job 'predict' -> 'index'"):
        embed(predictions)
    with pytest.raises(bulk.BulkError, match=r"another job's output \(job 'index' -> 'predict'"):
        predict(vectors)

    # The manifests of the bulk module before the runner: the predict job's (older ones had no job)
    # and the index job's, which run_bulk(job="index") wrote.
    before = {"model": str(model), "model_version": model_version(model), "input": str(source), "text_fields": ["text"]}
    old_predict = {**before, "long_text": "truncate", "index": None}
    (predictions / MANIFEST).write_text(json.dumps(old_predict))
    with pytest.raises(AssertionError, match="before any cluster"):
        predict(predictions)
    with pytest.raises(bulk.BulkError, match=r"another job's output \(job 'predict' -> 'index'"):
        embed(predictions)
    (vectors / MANIFEST).write_text(json.dumps({"job": "index", **old_predict}))
    with pytest.raises(AssertionError, match="before any cluster"):
        embed(vectors)


def test_read_predictions_reads_an_older_folder_whose_section_is_prediction(bulk, tmp_path):
    # Bulk output written before the section was called "label" in every output.
    pq.write_table(pa.table({"id": ["US1"], "prediction": ["H"], "confidence": [0.9]}), tmp_path / "part-0.parquet")
    table = bulk.read_predictions(tmp_path)
    assert table.column_names == ["id", "label", "confidence"] and table["label"].to_pylist() == ["H"]
