"""The command line: what it prints, the files it writes, and the library functions it calls."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from patentclf.cli import app
from patentclf.inference.prediction import PREDICTION_SCHEMA, file_record, prediction_record
from patentclf.model.bundle import INFO_FILE, read_info

TEXT = "a polymer compound with acid rotary television"


def test_predict_writes_the_format_its_output_names(tiny_bundle, tmp_path):
    runner = CliRunner()
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "r1", "text": TEXT}) + "\n" + json.dumps({"text": "the engine valve"}) + "\n")
    for name in ("out.jsonl", "out.csv", "out.parquet"):
        result = runner.invoke(
            app, ["predict", "--model", str(tiny_bundle), "--input", str(source), "--output", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert lines[0]["id"] == "r1" and "id" not in lines[1] and lines[0]["label"] in "ABCDEFGHY"
    with (tmp_path / "out.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["id"] for row in rows] == ["r1", ""]
    assert [row["label"] for row in rows] == [line["label"] for line in lines]
    assert json.loads(rows[0]["probabilities"]) == lines[0]["probabilities"]  # nested fields: JSON text
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.schema.names == ["id", *PREDICTION_SCHEMA.names]
    assert table["id"].to_pylist() == ["r1", None] and table["label"].to_pylist() == [line["label"] for line in lines]


def test_predict_refuses_an_output_it_cannot_write_before_loading_a_model(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"text": TEXT}) + "\n")
    result = CliRunner().invoke(
        app, ["predict", "--model", str(tmp_path / "nowhere"), "--input", str(source), "--output", "out.txt"]
    )
    assert result.exit_code == 2
    assert "out.txt" in result.output and ".jsonl, .csv, .parquet" in result.output and "nowhere" not in result.output


def test_predict_prints_every_level_unwrapped_and_json_on_request(tiny_hierarchy_bundle):
    from patentclf.inference.classifier import Classifier

    p = Classifier.load(tiny_hierarchy_bundle).predict([TEXT])[0]
    assert p.classes and p.subclasses
    result = CliRunner().invoke(app, ["predict", "--model", str(tiny_hierarchy_bundle), TEXT])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for level, found in (("class", p.classes), ("subclass", p.subclasses)):
        for s in found:  # each suggestion on one line of its own, title whole (CliRunner's terminal is 80 wide)
            assert any(line.split()[:2] == [level, s.code] and line.endswith(s.title) for line in lines), (level, s.code)
    assert any(line.split()[:2] == ["section", p.label] for line in lines)

    result = CliRunner().invoke(app, ["predict", "--model", str(tiny_hierarchy_bundle), "--json", TEXT])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(json.dumps(file_record(prediction_record(p))))


def test_predict_flags_shape_the_answer(tiny_hierarchy_bundle):
    from patentclf.inference.classifier import Classifier
    from patentclf.inference.options import PredictOptions

    flags = ["--classes", "1", "--subclasses", "0", "--threshold", "0.05", "--sections-threshold", "0.9"]
    result = CliRunner().invoke(app, ["predict", "--model", str(tiny_hierarchy_bundle), "--json", *flags, TEXT])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    options = PredictOptions(classes=1, subclasses=0, threshold=0.05, sections_threshold=0.9)
    p = Classifier.load(tiny_hierarchy_bundle).predict([TEXT], options=options)[0]
    assert answer == json.loads(json.dumps(file_record(prediction_record(p))))
    assert len(answer["classes"]) == 1 and answer["subclasses"] == []
    result = CliRunner().invoke(app, ["predict", "--model", str(tiny_hierarchy_bundle), "--depth", "section", TEXT])
    assert result.exit_code == 0, result.output
    assert not any(line.split()[:1] in (["class"], ["subclass"]) for line in result.output.splitlines())


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--classes", "51"], "--classes 51"),
        (["--similar", "-1"], "--similar -1"),
        (["--threshold", "1.5"], "--threshold 1.5"),
        (["--sections-threshold", "2"], "--sections-threshold 2.0"),
        (["--depth", "subgroup"], "--depth 'subgroup'"),
    ],
)
def test_a_bad_answer_option_is_one_line_before_the_model_loads(tmp_path, flags, named):
    result = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "nowhere"), *flags, TEXT])
    assert result.exit_code == 2
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: {named}") and "nowhere" not in line


def test_evaluate_skips_a_baseline_it_cannot_fit_with_a_warning(tiny_bundle, toy_data, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    for partner in bundle.glob("tfidf.*"):  # no TF-IDF partner: the baseline is fitted on the training rows
        partner.unlink()
    info = json.loads((bundle / INFO_FILE).read_text())
    info["training"]["data"] = str(tmp_path / "moved-away")  # trained on rows this machine does not have
    (bundle / INFO_FILE).write_text(json.dumps(info))
    runner = CliRunner()
    result = runner.invoke(app, ["evaluate", "--model", str(bundle), "--data", str(toy_data), "--output", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "error" not in result.output and "warning: no TF-IDF baseline" in result.output
    assert "baseline" not in json.loads((tmp_path / "eval" / "metrics.json").read_text())

    # Training rows the user named, unreadable: an error, and nothing written.
    named = runner.invoke(
        app, ["evaluate", "--model", str(bundle), "--data", str(toy_data), "--baseline-data", str(tmp_path / "nope.jsonl")]
    )
    assert named.exit_code == 2 and "error: --baseline-data" in named.output


def test_calibrate_refits_on_the_rows_the_bundle_was_trained_and_tuned_on(tiny_hierarchy_bundle, toy_hierarchy_data, tmp_path):
    from patentclf.inference.classifier import Classifier
    from patentclf.training.recalibrate import stored_config
    from patentclf.training.trainer import load_training_data
    from patentclf.training.tuning import fit_calibration

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_hierarchy_bundle, bundle)
    info = json.loads((bundle / INFO_FILE).read_text())
    info["training"]["eval_limit"] = 24  # as if trained with --eval-limit 24: tuned on 24 validation rows
    (bundle / INFO_FILE).write_text(json.dumps(info))
    config = stored_config(read_info(bundle))
    assert config.eval_limit == 24 and config.data == str(toy_hierarchy_data)
    validation = load_training_data(config)["validation"]
    assert len(validation) == 24
    expected = fit_calibration(Classifier.load(bundle), validation).to_dict()

    result = CliRunner().invoke(app, ["calibrate", "--model", str(bundle), "--no-tfidf", "--no-evaluate"])
    assert result.exit_code == 0, result.output
    after = read_info(bundle).calibration
    for head in ("section", "class", "subclass"):
        assert after[head]["temperature"] == pytest.approx(expected[head]["temperature"], abs=1e-9)


def test_loading_a_bundle_leaves_bitsandbytes_unimported(tiny_bundle):
    # bitsandbytes is installed here (the quantize tests), but only a quantized model needs it.
    script = (
        "import sys; from patentclf.model.bundle import load_bundle; "
        f"load_bundle({str(tiny_bundle)!r}); print('bitsandbytes' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "False" and found.stderr == ""


@pytest.mark.slow
def test_a_first_prediction_prints_only_its_answer(shipped_model):
    found = subprocess.run(
        [sys.executable, "-m", "patentclf.cli", "predict", "A semiconductor device comprising a transistor and a capacitor."],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert found.returncode == 0 and "Electricity" in found.stdout
    assert found.stderr == ""


def test_feedback_list_and_review_show_every_code(tmp_path, monkeypatch):
    from patentclf.cli.common import console
    from patentclf.store.feedback import Feedback, FeedbackStore

    monkeypatch.setattr(console, "_width", 200)  # the table's rows on one line each
    db = str(tmp_path / "feedback.db")
    store = FeedbackStore(db)
    several = store.add(Feedback(text="a touch screen", codes=["G06F 3/00", "H04N"], sender="ui", status="pending"))
    one = store.add(Feedback(text="a door", label="E05B", sender="ui", status="pending"))
    runner = CliRunner()
    result = runner.invoke(app, ["feedback", "list", "--db", db])
    assert result.exit_code == 0, result.output
    assert "codes (main first)" in result.output
    assert "G06F 3/00, H04N" in result.output and "E05B" in result.output
    result = runner.invoke(app, ["feedback", "review", str(several), str(one), "--accept", "--reviewer", "carol", "--db", db])
    assert result.exit_code == 0, result.output
    assert f"feedback {several} (G06F 3/00, H04N): accepted by carol" in result.output
    assert f"feedback {one} (E05B): accepted by carol" in result.output
