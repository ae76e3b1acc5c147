"""Tags: a user's own categories fitted on a few examples over the model's representation, stored
without pickle, tied to the model, and answered by the classifier (a tiny random model trained on the
toy task; the shipped model in one slow end-to-end check)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from patentclf.corpus.inputs import DataError
from patentclf.inference.tags import EXAMPLES_FILE, INFO_FILE, WEIGHTS_FILE, TagSet, TagSetError, load_tag_sets
from patentclf.jobs.tags import fit_tags
from patentclf.training.tags import best_threshold, fit_tag_set, split_tags
from tests.conftest import toy_rows, write_jsonl

# The toy sections' rows as a user's categories: electrical (H) and optics-and-measuring (G); the
# other sections' rows carry no tag (they are what the tags are not).
TAG_OF = {"H": "electrical", "G": "measuring"}


def example_rows(n: int, seed: int) -> list[dict]:
    return [{"id": r["id"], "text": r["text"], "tags": TAG_OF.get(r["section"], "")} for r in toy_rows(n, seed)]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, tiny_bundle):
    folder = tmp_path_factory.mktemp("tags")
    examples = write_jsonl(folder / "examples.jsonl", example_rows(64, seed=5))
    result = fit_tags(examples, folder / "toy-tags", model=tiny_bundle)
    return result, folder


def test_split_tags_reads_semicolon_lists():
    assert split_tags("a; b ;a") == ["a", "b"]
    assert split_tags("a;b;") == ["a", "b"]
    assert split_tags("") == [] and split_tags(None) == []
    assert split_tags("a;;b") == ["a", "", "b"]  # refused by the reader, with its row
    assert split_tags(["x", "y"]) == ["x", "y"]


def test_the_threshold_is_the_one_that_maximises_f1_out_of_fold():
    probabilities = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1])
    truth = np.array([1, 1, 0, 1, 0, 0])
    threshold, figures = best_threshold(probabilities, truth)
    # At 0.3 and above: 3 of 4 right, all 3 found (F1 0.857) beats 0.8 and above (2 of 2, 2 of 3: F1 0.8).
    assert 0.2 < threshold < 0.3
    assert figures == {"precision": 0.75, "recall": 1.0, "f1": 0.8571}


def test_a_tag_set_is_fitted_stored_without_pickle_and_answers(fitted, tiny_bundle):
    result, folder = fitted
    output = Path(result.output)
    assert sorted(p.name for p in output.iterdir()) == sorted([INFO_FILE, WEIGHTS_FILE, EXAMPLES_FILE])
    assert not output.with_name(output.name + ".partial").exists()
    info = json.loads((output / INFO_FILE).read_text())
    assert info["tags"] == ["measuring", "electrical"] or info["tags"] == ["electrical", "measuring"]
    for tag in info["tags"]:
        figures = info["figures"][tag]
        assert set(figures) == {"examples", "precision", "recall", "f1"}
        assert figures["examples"] == 8  # 64 toy rows over eight sections
        assert figures["f1"] > 0.6, figures  # the trained tiny model's representation tells sections apart
    assert result.embedded == 64 and result.examples == 64 and result.few == {}
    examples = pq.read_table(output / EXAMPLES_FILE)
    assert examples.num_rows == 64 and len(examples["vector"][0]) == 64  # the tiny model's hidden size

    from patentclf import Classifier

    classifier = Classifier.load(tiny_bundle, tags=output)
    texts = [r["text"] for r in toy_rows(16, seed=9)]
    sections = [r["section"] for r in toy_rows(16, seed=9)]
    predictions = classifier.predict(texts)
    right = sum([m.name for m in p.tags] == ([TAG_OF[s]] if s in TAG_OF else []) for p, s in zip(predictions, sections))
    assert right >= 12, [(s, p.tags) for p, s in zip(predictions, sections)]
    tagged = next(p for p in predictions if p.tags)
    assert tagged.tags[0].set == "toy-tags" and 0 < tagged.tags[0].probability <= 1
    assert "tags" in tagged.to_dict()
    # The options' threshold is a floor for tags too.
    from patentclf.inference.options import PredictOptions

    assert all(not p.tags for p in classifier.predict(texts, options=PredictOptions(threshold=1.0)))
    # Without tag sets a prediction has no tags key at all (outputs stay as they were).
    assert "tags" not in Classifier.load(tiny_bundle).predict(texts[:1])[0].to_dict()


def test_add_refits_with_more_rows_and_embeds_only_those(fitted, tiny_bundle, tmp_path):
    result, folder = fitted
    output = tmp_path / "toy-tags"
    shutil.copytree(result.output, output)
    more = write_jsonl(
        tmp_path / "more.jsonl",
        example_rows(16, seed=6) + [{"id": "toy-5-0", "text": toy_rows(1, 5)[0]["text"], "tags": "measuring"}],
    )
    added = fit_tags(None, output, model=tiny_bundle, add=more)
    assert added.embedded == 16  # the row of a stored id with its stored text keeps its vector
    assert added.examples == 64 + 16
    tag_set = TagSet.load(output)
    assert [h["examples"] for h in tag_set.history] == [64, 80]
    rows = {r["id"]: r["tags"] for r in pq.read_table(output / EXAMPLES_FILE).to_pylist()}
    assert rows["toy-5-0"] == ["measuring"]  # its tags corrected


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"id": "1", "body": "x", "tags": "a"}], "no text column"),
        ([{"id": "1", "text": "x"}], "no 'tags' column"),
        ([{"id": "1", "text": "x", "tags": "a"}, {"id": "2", "text": "y", "tags": "a;;b"}], "row 2: an empty tag name"),
        (
            [{"id": "1", "text": "x", "tags": "a"}, {"id": "2", "text": "y", "tags": "b"}, {"id": "3", "text": "z", "tags": "b"}],
            "row 1: tag 'a' has 1 example",
        ),
        ([{"id": "1", "text": "x", "tags": "a"}, {"id": "2", "text": "", "tags": "a"}], "row 2: empty text"),
    ],
)
def test_bad_examples_are_one_line_errors_naming_file_and_row_and_nothing_is_written(tmp_path, tiny_bundle, rows, message):
    examples = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError) as caught:
        fit_tags(examples, tmp_path / "out", model=tiny_bundle)
    assert message in str(caught.value) and str(examples) in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_a_tag_set_of_another_model_is_refused(fitted, tiny_bundle, tmp_path):
    result, _ = fitted
    with pytest.raises(TagSetError, match="fitted on model .* not this bundle's"):
        load_tag_sets(result.output, model_digest="000000000000")
    # A folder of tag sets reads each; two sets of one name are refused.
    sets = tmp_path / "sets"
    shutil.copytree(result.output, sets / "one")
    assert [s.name for s in load_tag_sets(sets).sets] == ["toy-tags"]
    shutil.copytree(result.output, sets / "two")
    with pytest.raises(TagSetError, match="two tag sets are named 'toy-tags'"):
        load_tag_sets(sets)
    # An existing set is not overwritten by a new fit.
    with pytest.raises(TagSetError, match="already holds a tag set"):
        fit_tags(result.output, result.output, model=tiny_bundle)


def test_fit_warns_of_tags_with_few_examples():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(20, 8)).astype(np.float32)
    tags = [["rare"] if i < 2 else (["common"] if i < 12 else []) for i in range(20)]
    vectors[:2] += 3  # learnable
    tag_set = fit_tag_set(vectors, tags, name="t", model_digest="d")
    assert tag_set.figures["rare"]["examples"] == 2 and tag_set.tags == ["rare", "common"]
    assert tag_set.probabilities(vectors).shape == (20, 2)
    from patentclf.training.tags import few_examples

    assert few_examples(tags) == {"rare": 2}


def test_the_cli_fits_prints_the_figures_and_predicts_with_tags(fitted, tiny_bundle, tmp_path):
    from typer.testing import CliRunner

    from patentclf.cli import app
    from patentclf.inference.prediction import TAGGED_SCHEMA

    result, folder = fitted
    runner = CliRunner()
    examples = write_jsonl(tmp_path / "few.jsonl", example_rows(24, seed=7))  # 3 examples of each tag
    fitted_now = runner.invoke(
        app, ["tags", "fit", "--examples", str(examples), "--output", str(tmp_path / "few"), "--model", str(tiny_bundle)]
    )
    assert fitted_now.exit_code == 0, fitted_now.output
    assert "precision" in fitted_now.output and "electrical" in fitted_now.output
    assert "tag 'electrical' has 3 examples" in fitted_now.output  # warned: few examples
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "labels": "a"}])
    refused = runner.invoke(
        app, ["tags", "fit", "--examples", str(bad), "--output", str(tmp_path / "bad"), "--model", str(tiny_bundle)]
    )
    assert refused.exit_code == 2 and "no 'tags' column" in refused.output and "Traceback" not in refused.output

    source = write_jsonl(tmp_path / "in.jsonl", [{"id": r["id"], "text": r["text"]} for r in toy_rows(8, seed=9)])
    common = ["predict", "--model", str(tiny_bundle), "--input", str(source)]
    lines = runner.invoke(app, [*common, "--tags", result.output, "--tags", str(tmp_path / "few")])
    assert lines.exit_code == 0, lines.output
    rows = [json.loads(line) for line in lines.output.splitlines() if line.startswith("{")]
    assert len(rows) == 8 and all(isinstance(row["tags"], list) for row in rows)
    assert {m["set"] for row in rows for m in row["tags"]} == {"toy-tags", "few"}
    plain = runner.invoke(app, common)
    assert all("tags" not in json.loads(line) for line in plain.output.splitlines() if line.startswith("{"))
    parquet = tmp_path / "out.parquet"
    assert runner.invoke(app, [*common, "--tags", result.output, "--output", str(parquet)]).exit_code == 0
    table = pq.read_table(parquet)
    assert table.schema.names == ["id", *TAGGED_SCHEMA.names]
    assert table["tags"].to_pylist() == [[m for m in row["tags"] if m["set"] == "toy-tags"] for row in rows]
    other = runner.invoke(app, [*common, "--tags", str(tmp_path / "nowhere")])
    assert other.exit_code == 2 and "nowhere: no such folder" in other.output


def test_the_service_answers_tags_and_lists_the_sets(fitted, tiny_bundle, tmp_path):
    import httpx

    from tests.servers import LiveServer

    result, _ = fitted
    options = dict(feedback_db=tmp_path / "feedback.db", tags=[result.output], api_key="k", reviewers=["default"])
    with LiveServer(tiny_bundle, tags_dir=tmp_path / "fitted", **options) as live:
        texts = [r["text"] for r in toy_rows(8, seed=9)]
        answers = httpx.post(live.url + "/predict/batch", json={"texts": texts}, timeout=60).json()["predictions"]
        assert any(a["tags"] for a in answers) and all(isinstance(a["tags"], list) for a in answers)
        assert all(m["set"] == "toy-tags" and 0 <= m["probability"] <= 1 for a in answers for m in a["tags"])
        floor = httpx.post(live.url + "/predict", json={"text": texts[0], "options": {"threshold": 1.0}}, timeout=60).json()
        assert floor["tags"] == []
        [described] = httpx.get(live.url + "/model", timeout=10).json()["tags"]
        assert described["name"] == "toy-tags" and described["examples"] == 64
        assert {t["name"] for t in described["tags"]} == {"electrical", "measuring"}
        assert set(described["tags"][0]) == {"name", "threshold", "examples", "precision", "recall", "f1"}

        # A correction names tags as well as a section; without tags its answer has no tags key.
        key = {"X-API-Key": "k"}
        tag = {"set": "toy-tags", "name": "electrical"}
        sent = httpx.post(
            live.url + "/feedback", json={"text": texts[0], "label": "H", "tags": [tag, tag]}, headers=key, timeout=10
        )
        assert sent.status_code == 201, sent.text
        assert sent.json()["tags"] == [tag]
        plain = httpx.post(live.url + "/feedback", json={"text": texts[1], "label": "G"}, headers=key, timeout=10).json()
        assert "tags" not in plain
        bad = httpx.post(
            live.url + "/feedback",
            json={"text": texts[0], "label": "H", "tags": [{"set": "s", "name": "a;b"}]},
            headers=key,
            timeout=10,
        )
        assert bad.status_code == 422

        # A reviewer fits a tag set in the background, follows it, and makes it live.
        rows = [{"text": r["text"], "tags": [TAG_OF[r["section"]]] if r["section"] in TAG_OF else []} for r in toy_rows(32, 12)]
        refused = httpx.post(live.url + "/tags/fit", json={"name": "few", "examples": rows[6:9]}, headers=key, timeout=10)
        assert refused.status_code == 202 and refused.json()["status"] == "failed"
        assert "examples: row 1: tag 'measuring' has 1 example" in refused.json()["error"]
        started = httpx.post(live.url + "/tags/fit", json={"name": "api", "examples": rows}, headers=key, timeout=10)
        assert started.status_code == 202, started.text
        job = started.json()["job"]
        for _ in range(300):
            state = httpx.get(f"{live.url}/tags/fit/{job}", headers=key, timeout=10).json()
            if state["status"] != "running":
                break
            time.sleep(0.2)
        assert state["status"] == "fitted" and state["embedded"] == 32, state
        assert {t["name"] for t in state["tag_set"]["tags"]} == {"electrical", "measuring"}
        assert (
            httpx.post(live.url + "/tags/fit", json={"name": "api", "examples": rows}, headers=key, timeout=10).status_code == 409
        )
        made = httpx.post(live.url + "/tags/api/live", headers=key, timeout=10)
        assert made.status_code == 200 and made.json()["name"] == "api"
        assert [s["name"] for s in httpx.get(live.url + "/model", timeout=10).json()["tags"]] == ["toy-tags", "api"]
        answers = httpx.post(live.url + "/predict/batch", json={"texts": texts}, timeout=60).json()["predictions"]
        assert {m["set"] for a in answers for m in a["tags"]} == {"toy-tags", "api"}
        assert httpx.post(live.url + "/tags/nothing/live", headers=key, timeout=10).status_code == 404
    from patentclf.store.feedback import FeedbackStore, tag_examples

    [example] = tag_examples(FeedbackStore(tmp_path / "feedback.db"))
    assert example["text"] == texts[0] and example["tags"] == "electrical"


def test_accepted_tag_corrections_become_examples_for_add(fitted, tiny_bundle, tmp_path):
    from typer.testing import CliRunner

    from patentclf.cli import app
    from patentclf.store.feedback import PENDING, Feedback, FeedbackStore, tag_examples

    result, _ = fitted
    store = FeedbackStore(tmp_path / "feedback.db")
    rows = toy_rows(6, seed=11)
    for i, row in enumerate(rows):
        tags = [{"set": "toy-tags", "name": "measuring"}, {"set": "other", "name": "x"}] if i % 2 else None
        store.add(Feedback(text=row["text"], label=row["section"], tags=tags, status=PENDING if i == 5 else "accepted"))
    assert store.get(2)["tags"] == [{"set": "toy-tags", "name": "measuring"}, {"set": "other", "name": "x"}]
    assert "tags" not in store.get(1)
    with pytest.raises(ValueError, match="several tag sets"):
        tag_examples(store)
    assert [e["id"] for e in tag_examples(store, tag_set="toy-tags")] == ["feedback-2", "feedback-4"]  # 6 is pending
    with pytest.raises(ValueError, match="needs a set and a name"):
        store.add(Feedback(text="t", label="G", tags=[{"set": "s", "name": " "}]))

    runner = CliRunner()
    exported = tmp_path / "tag-feedback.jsonl"
    done = runner.invoke(
        app, ["feedback", "export-tags", "--db", str(tmp_path / "feedback.db"), "--set", "toy-tags", "--output", str(exported)]
    )
    assert done.exit_code == 0, done.output
    output = tmp_path / "toy-tags"
    shutil.copytree(result.output, output)
    added = runner.invoke(app, ["tags", "fit", "--add", str(exported), "--output", str(output), "--model", str(tiny_bundle)])
    assert added.exit_code == 0, added.output
    assert TagSet.load(output).figures["measuring"]["examples"] == 8 + 2


@pytest.mark.slow
def test_the_shipped_model_learns_three_categories_from_five_examples_each(tmp_path):
    """End to end on the shipped model: five held-out patents of each of three CPC main groups as a
    user's categories; new patents of those groups get their category, and the rest of the answer is
    exactly what it is without tags."""
    from patentclf import Classifier
    from patentclf.corpus.data import load_split

    names = {"A61K 31/00": "medicines", "E21B 43/00": "oil wells", "H04L 29/00": "networks"}
    validation, test = load_split("bundled", "validation"), load_split("bundled", "test")

    def of(split, group, count):
        return [t for t, g in zip(split.texts, split.groups) if g and g[0] == group][:count]

    rows = [{"text": text, "tags": name} for group, name in names.items() for text in of(validation, group, 5)]
    examples = write_jsonl(tmp_path / "examples.jsonl", rows)
    result = fit_tags(examples, tmp_path / "mine")
    assert result.examples == 15 and set(result.tag_set.figures) == set(names.values())
    texts, truth = [], []
    for group, name in names.items():
        found = of(test, group, 2)
        texts += found
        truth += [name] * len(found)
    tagged = Classifier.load(tags=tmp_path / "mine").predict(texts)
    plain = Classifier.load().predict(texts)
    right = sum(bool(p.tags) and p.tags[0].name == name for p, name in zip(tagged, truth))
    assert right >= len(texts) - 2, [(name, p.tags) for p, name in zip(tagged, truth)]
    for with_tags, without in zip(tagged, plain):
        answer = with_tags.to_dict()
        del answer["tags"]
        assert answer == without.to_dict()


def test_the_ray_bulk_worker_writes_tags_and_a_wrong_set_stops_the_job_before_any_cluster(fitted, tiny_bundle, tmp_path):
    pytest.importorskip("ray.data", reason="the ray extra: pip install 'patentclf[ray]'")
    import pyarrow as pa

    from patentclf.inference.prediction import TAGGED_SCHEMA
    from patentclf.jobs.bulk import BulkError, Predictor, PredictorSettings, run_bulk

    result, _ = fitted
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "1", "text": "an optical sensor"}])
    with pytest.raises(BulkError, match="nowhere: no such folder"):  # checked before the cluster starts
        run_bulk(str(source), str(tmp_path / "out"), model=tiny_bundle, tags=[tmp_path / "nowhere"])
    # The job's actor, in this process: its Parquet rows carry the tags.
    settings = PredictorSettings(
        str(tiny_bundle), ("text",), str(source), None, "truncate", "fp32", False, None, tags=(result.output,)
    )
    rows = toy_rows(8, seed=9)
    table = Predictor(settings, None, None)(pa.table({"id": [r["id"] for r in rows], "text": [r["text"] for r in rows]}))
    assert table.schema.names == ["id", *TAGGED_SCHEMA.names]
    assert any(table["tags"].to_pylist()) and all(m["set"] == "toy-tags" for found in table["tags"].to_pylist() for m in found)


def test_the_ui_csv_download_flattens_tags():
    import pandas as pd

    from patentclf.ui.batch import to_csv

    table = pd.DataFrame({"label": ["H"], "tags": [[{"set": "batteries", "name": "sodium-ion", "probability": 0.81234}]]})
    assert to_csv(table).decode().splitlines()[1] == "H,batteries/sodium-ion (0.812)"
