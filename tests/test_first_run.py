"""A first run converts the embedded base model (about a minute): the CLI and the API say so."""

from patentclf.model.base import conversion_message
from patentclf.service.config import ServiceConfig
from patentclf.service.runtime import ServiceRuntime


def test_a_missing_conversion_is_announced_and_a_done_one_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("PATENTCLF_CACHE", str(tmp_path))
    note = conversion_message("gemma3-270m")
    assert note and "converting the base model gemma3-270m once" in note and str(tmp_path) in note
    (tmp_path / "gemma3-270m").mkdir()
    (tmp_path / "gemma3-270m" / "config.json").write_text("{}")
    assert conversion_message("gemma3-270m") is None
    assert conversion_message("HuggingFaceTB/SmolLM2-135M") is None  # a hub id or folder: nothing to convert


def test_ready_says_the_base_model_is_being_converted(shipped_model, tmp_path, monkeypatch):
    """What /ready and every 503 say while a first start converts the base model (the UI shows that detail)."""
    monkeypatch.setenv("PATENTCLF_CACHE", str(tmp_path / "empty-cache"))
    runtime = ServiceRuntime(ServiceConfig(model=shipped_model, feedback_db=tmp_path / "feedback.db"))
    assert runtime.not_ready_reason == "the model is still loading"
    runtime.loading_note = conversion_message("gemma3-270m")  # what start() sets for the shipped model's base
    assert runtime.not_ready_reason.startswith("the model is still loading: converting the base model gemma3-270m once")
