"""Service settings: defaults < config file < environment < flags, each setting declared once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from patentclf.cli import app
from patentclf.service.config import ServiceConfig


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No PATENTCLF_* variable of the machine running the tests leaks in."""
    for name in ServiceConfig.model_fields:
        monkeypatch.delenv(f"PATENTCLF_{name.upper()}", raising=False)
    return monkeypatch


def test_layers_override_in_order(tmp_path, clean_env):
    config_file = tmp_path / "service.yaml"
    config_file.write_text("port: 9100\nmax_batch: 10\nreview_threshold: 0.7\nmicro_batching: true\n")
    for name, value in {
        "API_KEY": "from-env",
        "FEEDBACK_DB": str(tmp_path / "env.db"),
        "MAX_BATCH": "20",
        "MICRO_BATCHING": "false",
    }.items():
        clean_env.setenv(f"PATENTCLF_{name}", value)
    config = ServiceConfig.load(config_file, max_batch=30, port=None)
    assert config.port == 9100  # file (the flag was not given)
    assert config.review_threshold == 0.7  # file
    assert config.max_batch == 30  # flag over env over file
    assert config.micro_batching is False  # env over file
    assert config.api_key.get_secret_value() == "from-env"
    assert config.feedback_db == tmp_path / "env.db"
    assert "from-env" not in json.dumps(config.public_dict())


def test_defaults_and_json_files(tmp_path):
    config = ServiceConfig.load()
    assert (config.host, config.port, config.api_key, config.log_texts) == ("127.0.0.1", 9000, None, False)
    assert config.feedback_db.name == "feedback.db"
    json_file = tmp_path / "service.json"
    json_file.write_text(json.dumps({"queue_size": 4, "micro_batch_wait_ms": 50}))
    loaded = ServiceConfig.load(json_file)
    assert (loaded.queue_size, loaded.micro_batch_wait_ms) == (4, 50)
    assert ServiceConfig.load().queue_size == 256  # the file applied to that load only


def test_an_empty_variable_counts_as_unset(clean_env):
    clean_env.setenv("PATENTCLF_API_KEY", "")
    assert ServiceConfig.load().api_key is None


def test_bad_settings_are_refused(tmp_path, clean_env):
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("max_batchh: 3\n")
    with pytest.raises(ValidationError, match="max_batchh"):
        ServiceConfig.load(bad_file)
    with pytest.raises(FileNotFoundError):
        ServiceConfig.load(tmp_path / "missing.yaml")
    with pytest.raises(ValidationError):
        ServiceConfig.load(review_threshold=1.5)
    assert isinstance(ServiceConfig.load(model=Path("x")).model, Path)
    clean_env.setenv("PATENTCLF_MAX_BATCH", "zero")
    with pytest.raises(ValidationError):
        ServiceConfig.load()


def test_serve_has_one_flag_per_setting():
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for name, field in ServiceConfig.model_fields.items():
        flag = "--" + name.replace("_", "-")
        assert flag in result.output, flag
        if field.annotation is bool:
            assert "--no-" + name.replace("_", "-") in result.output


def test_serve_flags_reach_the_settings_over_file_and_env(tmp_path, clean_env):
    runner = CliRunner()
    missing_model = str(tmp_path / "no-model")
    config_file = tmp_path / "service.yaml"
    config_file.write_text("review_threshold: 2.0\n")  # out of range
    refused = runner.invoke(app, ["serve", "--config", str(config_file), "--model", missing_model])
    assert refused.exit_code == 2 and "review_threshold" in refused.output
    clean_env.setenv("PATENTCLF_REVIEW_THRESHOLD", "3.0")  # env over file: still out of range
    assert "review_threshold" in runner.invoke(app, ["serve", "--config", str(config_file), "--model", missing_model]).output
    # The flag wins over both, so the settings pass and serve stops at the missing model instead.
    result = runner.invoke(app, ["serve", "--config", str(config_file), "--review-threshold", "0.4", "--model", missing_model])
    assert result.exit_code == 2 and "review_threshold" not in result.output and "no-model" in result.output
    bad_choice = runner.invoke(app, ["serve", "--long-text", "sideways", "--model", missing_model])
    assert bad_choice.exit_code == 2


def test_storage_keys_and_retention_settings_from_the_environment(clean_env):
    for name, value in {
        "PATENTCLF_DATABASE_URL": "postgresql://svc:s3cret@db.internal:5432/patentclf",
        "PATENTCLF_API_KEYS": '{"alice": "alice-key", "ui": "ui-key"}',
        "PATENTCLF_REVIEWERS": '["alice"]',
        "PATENTCLF_LOG_RETENTION_ROWS": "1000000",
    }.items():
        clean_env.setenv(name, value)
    config = ServiceConfig.load()
    assert config.database_url.get_secret_value().startswith("postgresql://svc:s3cret@")
    assert {name: key.get_secret_value() for name, key in config.api_keys.items()} == {"alice": "alice-key", "ui": "ui-key"}
    assert (config.reviewers, config.review_required) == (["alice"], ["ui"])
    assert (config.log_retention_days, config.log_retention_rows) == (90, 1_000_000)
    logged = json.dumps(config.public_dict())
    assert "s3cret" not in logged and "alice-key" not in logged
    for name in ("PATENTCLF_DATABASE_URL", "PATENTCLF_API_KEYS", "PATENTCLF_REVIEWERS", "PATENTCLF_LOG_RETENTION_ROWS"):
        clean_env.delenv(name)
    defaults = ServiceConfig.load()
    assert (defaults.database_url, defaults.api_keys, defaults.reviewers) == (None, {}, [])
    clean_env.setenv("PATENTCLF_API_KEYS", "alice=key")  # not JSON
    with pytest.raises(ValueError):
        ServiceConfig.load()
    clean_env.delenv("PATENTCLF_API_KEYS")
    clean_env.setenv("PATENTCLF_LOG_RETENTION_DAYS", "0")
    with pytest.raises(ValueError):
        ServiceConfig.load()
