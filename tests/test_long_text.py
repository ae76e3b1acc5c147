"""Long documents: ``long_text="chunk"`` reads every window of a text; ``truncate`` reads only the start."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from patentclf.classifier import Classifier, chunk_overlap
from patentclf.cli import app
from patentclf.labels import CODES

from .conftest import FILLER, TOY_WORDS  # the toy task: filler carries no section, each section its own words


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    return Classifier.load(tiny_bundle, precision="fp32")


def _filler(n_words: int) -> str:
    return " ".join(FILLER[i % len(FILLER)] for i in range(n_words))


@pytest.mark.parametrize("max_length", [64, 256, 512])
def test_windows_cover_every_token_and_overlap(classifier, max_length):
    ids = list(range(3 * max_length + 17))
    overlap = chunk_overlap(max_length)
    assert 0 < overlap < max_length
    step = max_length - overlap
    starts = list(range(0, max(1, len(ids) - overlap), step))
    covered = set()
    for start in starts:
        covered.update(ids[start : start + max_length])
    assert covered == set(ids)
    assert starts[-1] + max_length >= len(ids)


def test_chunk_reads_the_end_of_a_long_text_that_truncate_never_sees(classifier):
    start = _filler(72)  # more than the tiny bundle's whole 64-token window
    truncated = classifier.predict([start])[0]
    # A section the model recognises from its words alone, and not the one it reads into the filler.
    alone = {code: classifier.predict([" ".join(words)])[0] for code, words in TOY_WORDS.items()}
    target = max((c for c, p in alone.items() if p.label == c and c != truncated.label), key=lambda c: alone[c].confidence)
    text = start + " " + " ".join(TOY_WORDS[target] * 6)  # the section's words only at the very end
    assert len(classifier.tokenizer(text)["input_ids"]) > classifier.max_length + 32

    by_truncate = classifier.predict([text], long_text="truncate")[0]
    by_chunk = classifier.predict([text], long_text="chunk")[0]
    assert by_truncate.truncated and by_truncate.chunks == 1
    assert by_truncate.label == truncated.label != target  # the start alone decides
    assert not by_chunk.truncated and by_chunk.chunks >= 2
    assert by_chunk.label == target


def test_chunk_probabilities_are_the_mean_of_the_windows(classifier):
    text = _filler(60) + " polymer acid " + _filler(60) + " engine valve turbine"
    ids = classifier.tokenizer(text)["input_ids"]
    max_length = classifier.max_length
    step = max_length - chunk_overlap(max_length)
    windows = [ids[s : s + max_length] for s in range(0, len(ids) - chunk_overlap(max_length), step)]
    texts_of_windows = [classifier.tokenizer.decode(w) for w in windows]
    assert len(windows) > 1
    per_window = classifier._head_probabilities(windows, batch_size=4, progress=None)["section"]
    combined = classifier.predict([text], long_text="chunk")[0]
    assert combined.chunks == len(windows) == len(texts_of_windows)
    for index, code in enumerate(CODES):
        assert combined.probabilities[code] == pytest.approx(float(per_window[:, index].mean()), abs=1e-5)


def test_short_texts_are_the_same_in_both_modes(classifier):
    texts = ["a polymer compound with acid", "the engine valve"]
    assert [p.probabilities for p in classifier.predict(texts)] == [p.probabilities for p in classifier.predict(texts, long_text="chunk")]


def test_cli_predict_and_evaluate_take_long_text(tiny_bundle, toy_data, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["predict", "--model", str(tiny_bundle), "--long-text", "chunk", _filler(120) + " polymer acid compound"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", "--model", str(tiny_bundle), "--data", str(toy_data), "--long-text", "chunk", "--output", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert '"long_text": "chunk"' in (tmp_path / "eval" / "metrics.json").read_text()
    bad = runner.invoke(app, ["predict", "--model", str(tiny_bundle), "--long-text", "sideways", "a text"])
    assert bad.exit_code != 0
