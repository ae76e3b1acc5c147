"""The bundle description: read and checked in one place (``bundle.read_info``), its format version
honoured, and the model card rendered from its template."""

from __future__ import annotations

import json
import shutil

import pytest

from patentclf.model.base import ModelError
from patentclf.model.bundle import FORMAT_VERSION, INFO_FILE, default_model_dir, read_info
from patentclf.training.cards import render_model_card


def _copy_with(tmp_path, source, **changes):
    folder = tmp_path / "bundle"
    shutil.copytree(source, folder)
    info = json.loads((folder / INFO_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            info.pop(key, None)
        else:
            info[key] = value
    (folder / INFO_FILE).write_text(json.dumps(info))
    return folder


def test_a_bundle_from_a_newer_patentclf_is_refused_in_one_line(tmp_path, tiny_bundle):
    folder = _copy_with(tmp_path, tiny_bundle, format=FORMAT_VERSION + 1)
    with pytest.raises(ModelError, match=f"format {FORMAT_VERSION + 1} was written by a newer patentclf"):
        read_info(folder)


def test_a_bundle_without_a_format_reads_as_format_1(tmp_path, tiny_bundle):
    from patentclf.inference.classifier import Classifier

    folder = _copy_with(tmp_path, tiny_bundle, format=None)
    assert "format" not in read_info(folder).model_fields_set
    assert Classifier.load(folder, precision="fp32").predict(["a polymer"])[0].label


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"max_length": 0}, "max_length: Input should be greater than 0"),
        ({"normalize": "lower"}, "normalize: Input should be 'bigpatent' or 'none'"),
        ({"base_model": None}, "base_model: Field required"),
        ({"heads": {"classes": "A01"}}, "heads.classes: Input should be a valid list"),
    ],
)
def test_a_broken_description_is_one_clear_error(tmp_path, tiny_bundle, changes, message):
    with pytest.raises(ModelError, match=message):
        read_info(_copy_with(tmp_path, tiny_bundle, **changes))


def test_the_shipped_card_is_what_its_template_renders():
    """The shipped bundle (written by the previous release's hand-written renderer) reads, and the
    template gives its card byte for byte."""
    folder = default_model_dir()
    assert render_model_card(folder, read_info(folder)) == (folder / "README.md").read_text()


def test_the_export_card_states_the_window_and_its_overlap_as_the_classifier_reads_them():
    from patentclf.model.windows import chunk_overlap
    from patentclf.training.cards import export_card

    info = read_info(default_model_dir())
    card = export_card(info, "bfloat16")
    assert f"windows of {info.max_length} tokens that\noverlap by {chunk_overlap(info.max_length)} tokens" in card
    assert "(bfloat16 weights)" in card and "$" not in card.replace("$ ", "")


def test_the_shipped_description_reads_typed_and_writes_back_byte_for_byte(tmp_path):
    from patentclf.model.bundle import BundleInfo, write_info

    info = read_info(default_model_dir())
    assert isinstance(info, BundleInfo) and info.training.lora_layers == 12 and info.heads.subclasses
    assert info.data["train"].rows == 7922 and info.metrics["test"]["n"] == 988
    # Settings added since it was trained read as their defaults, and are not written into it.
    assert info.training.tfidf_ensemble and "tfidf_ensemble" not in info.training.model_fields_set
    write_info(tmp_path, info)
    assert (tmp_path / INFO_FILE).read_text() == (default_model_dir() / INFO_FILE).read_text()


def test_keys_from_a_newer_patentclf_are_kept(tmp_path, tiny_bundle):
    from patentclf.model.bundle import write_info

    folder = _copy_with(tmp_path, tiny_bundle, future={"a": 1})
    raw = json.loads((folder / INFO_FILE).read_text())
    raw["training"]["future_setting"] = "x"
    (folder / INFO_FILE).write_text(json.dumps(raw))
    info = read_info(folder)
    write_info(folder, info)
    again = json.loads((folder / INFO_FILE).read_text())
    assert again["future"] == {"a": 1} and again["training"]["future_setting"] == "x"
    assert list(again) == list(raw)
