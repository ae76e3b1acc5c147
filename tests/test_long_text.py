"""Long documents: ``long_text="chunk"`` reads every window of a text; ``truncate`` reads only the start."""

from __future__ import annotations

import random

import pytest
import torch
from typer.testing import CliRunner

from patentclf.cli import app
from patentclf.corpus.labels import CODES
from patentclf.inference.classifier import Classifier
from patentclf.model.windows import chunk_overlap, make_windows

from .conftest import FILLER, TOY_WORDS  # the toy task: filler carries no section, each section its own words


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    # The LLM alone: the bundle's TF-IDF partner reads the whole text whatever the window mode, so
    # it would hide what truncation and chunking do to the model's own reading.
    return Classifier.load(tiny_bundle, precision="fp32", use_tfidf=False)


def _filler(n_words: int) -> str:
    return " ".join(FILLER[i % len(FILLER)] for i in range(n_words))


def _words(n_words: int, seed: int = 0) -> str:
    """Toy words in a random order: a token sequence without a period, so a misplaced window shows."""
    rng = random.Random(seed)
    vocabulary = FILLER + [w for words in TOY_WORDS.values() for w in words]
    return " ".join(rng.choice(vocabulary) for _ in range(n_words))


@pytest.mark.parametrize("max_length", [64, 256, 512])
def test_windows_cover_every_token_and_overlap(classifier, monkeypatch, max_length):
    monkeypatch.setattr(classifier, "max_length", max_length)
    text = _words(3 * max_length + 17)  # already lowercase words: the same tokens after normalising
    ids = classifier.tokenizer(text)["input_ids"]
    assert len(ids) > 3 * max_length
    overlap = chunk_overlap(max_length)
    assert 0 < overlap < max_length

    found = make_windows(classifier.tokenizer, [text], classifier.max_length, normalize=classifier.normalize, chunk=True)
    windows, owners, truncated = found.ids, found.owners, found.truncated
    assert owners == [0] * len(windows) and truncated == [False]
    assert all(len(w) == max_length for w in windows[:-1])
    assert overlap < len(windows[-1]) <= max_length  # the last window reads something new
    for before, after in zip(windows, windows[1:]):
        assert after[:overlap] == before[-overlap:]  # neighbours share `overlap` tokens
    # Without the shared tokens, the windows are the text: every token, in order, once.
    assert windows[0] + [t for w in windows[1:] for t in w[overlap:]] == ids

    found = make_windows(classifier.tokenizer, [text], classifier.max_length, normalize=classifier.normalize, chunk=False)
    [start], [was_truncated] = found.ids, found.truncated
    assert start == ids[:max_length] and was_truncated


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
    windows = make_windows(classifier.tokenizer, [text], classifier.max_length, normalize=classifier.normalize, chunk=True).ids
    assert len(windows) > 1
    section = classifier.layout.slices()["section"]
    per_window = torch.cat(
        [torch.softmax(torch.from_numpy(classifier.engine.logits([w]))[:, section], dim=-1) for w in windows]
    )  # each on its own
    combined = classifier.predict([text], long_text="chunk")[0]
    assert combined.chunks == len(windows)
    raw = classifier.raw_outputs([text], long_text="chunk")["section"][0]  # before the temperature
    for index, code in enumerate(CODES):
        assert raw[index] == pytest.approx(float(per_window[:, index].mean()), abs=1e-5)
    assert combined.label == CODES[int(per_window.mean(0).argmax())]


def test_short_texts_are_the_same_in_both_modes(classifier):
    texts = ["a polymer compound with acid", "the engine valve"]
    assert [p.probabilities for p in classifier.predict(texts)] == [
        p.probabilities for p in classifier.predict(texts, long_text="chunk")
    ]


def test_cli_predict_and_evaluate_take_long_text(tiny_bundle, toy_data, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        app, ["predict", "--model", str(tiny_bundle), "--long-text", "chunk", _filler(120) + " polymer acid compound"]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            str(tiny_bundle),
            "--data",
            str(toy_data),
            "--long-text",
            "chunk",
            "--output",
            str(tmp_path / "eval"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"long_text": "chunk"' in (tmp_path / "eval" / "metrics.json").read_text()
    bad = runner.invoke(app, ["predict", "--model", str(tiny_bundle), "--long-text", "sideways", "a text"])
    assert bad.exit_code != 0
