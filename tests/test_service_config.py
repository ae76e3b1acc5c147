"""Service configuration: defaults < config file < environment < flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from patentclf.service.config import ServiceConfig


def test_layers_override_in_order(tmp_path):
    config_file = tmp_path / "service.yaml"
    config_file.write_text("port: 9100\nmax_batch: 10\nreview_threshold: 0.7\nmicro_batching: true\n")
    env = {"PATENTCLF_API_KEY": "from-env", "PATENTCLF_FEEDBACK_DB": str(tmp_path / "env.db"), "PATENTCLF_MAX_BATCH": "20", "PATENTCLF_MICRO_BATCHING": "false"}
    config = ServiceConfig.load(config_file, env=env, max_batch=30, port=None)
    assert config.port == 9100  # file (the flag was not given)
    assert config.review_threshold == 0.7  # file
    assert config.max_batch == 30  # flag over env over file
    assert config.micro_batching is False  # env over file
    assert config.api_key.get_secret_value() == "from-env"
    assert config.feedback_db == tmp_path / "env.db"
    assert "from-env" not in json.dumps(config.public_dict())


def test_defaults_and_json_files(tmp_path):
    config = ServiceConfig.load(env={})
    assert (config.host, config.port, config.api_key, config.log_texts) == ("127.0.0.1", 9000, None, False)
    assert config.feedback_db.name == "feedback.db"
    json_file = tmp_path / "service.json"
    json_file.write_text(json.dumps({"queue_size": 4, "micro_batch_wait_ms": 50}))
    loaded = ServiceConfig.load(json_file, env={})
    assert (loaded.queue_size, loaded.micro_batch_wait_ms) == (4, 50)


def test_bad_settings_are_refused(tmp_path):
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("max_batchh: 3\n")
    with pytest.raises(ValueError, match="unknown option"):
        ServiceConfig.load(bad_file, env={})
    with pytest.raises(ValidationError):
        ServiceConfig.load(env={"PATENTCLF_MAX_BATCH": "zero"})
    with pytest.raises(ValidationError):
        ServiceConfig.load(env={}, review_threshold=1.5)
    assert isinstance(ServiceConfig.load(env={}, model=Path("x")).model, Path)


def test_storage_keys_and_retention_settings_from_the_environment():
    env = {
        "PATENTCLF_DATABASE_URL": "postgresql://svc:s3cret@db.internal:5432/patentclf",
        "PATENTCLF_API_KEYS": '{"alice": "alice-key", "ui": "ui-key"}',
        "PATENTCLF_REVIEWERS": '["alice"]',
        "PATENTCLF_LOG_RETENTION_ROWS": "1000000",
    }
    config = ServiceConfig.load(env=env)
    assert config.database_url.get_secret_value().startswith("postgresql://svc:s3cret@")
    assert {name: key.get_secret_value() for name, key in config.api_keys.items()} == {"alice": "alice-key", "ui": "ui-key"}
    assert (config.reviewers, config.review_required) == (["alice"], ["ui"])
    assert (config.log_retention_days, config.log_retention_rows) == (90, 1_000_000)
    logged = json.dumps(config.public_dict())
    assert "s3cret" not in logged and "alice-key" not in logged
    defaults = ServiceConfig.load(env={})
    assert (defaults.database_url, defaults.api_keys, defaults.reviewers) == (None, {}, [])
    with pytest.raises(ValidationError):
        ServiceConfig.load(env={"PATENTCLF_API_KEYS": "alice=key"})  # not JSON
    with pytest.raises(ValidationError):
        ServiceConfig.load(env={"PATENTCLF_LOG_RETENTION_DAYS": "0"})
