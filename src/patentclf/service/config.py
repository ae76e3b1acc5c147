"""Service configuration, merged from four layers (later wins):

defaults < config file (YAML or JSON, keys = field names) < environment (``PATENTCLF_<FIELD>``) < flags.

The environment names are the field names upper-cased, e.g. ``PATENTCLF_API_KEY``,
``PATENTCLF_FEEDBACK_DB``, ``PATENTCLF_DATABASE_URL``, ``PATENTCLF_MODEL``, ``PATENTCLF_MAX_TEXT_CHARS``, ``PATENTCLF_MICRO_BATCHING``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

ENV_PREFIX = "PATENTCLF_"


def default_feedback_db() -> Path:
    """``$XDG_DATA_HOME/patentclf/feedback.db`` (``~/.local/share/...`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "patentclf" / "feedback.db"


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    model: Path | None = Field(None, description="model bundle folder (default: the shipped model)")
    host: str = "127.0.0.1"
    port: int = Field(9000, ge=0, le=65535)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    compile: bool = Field(
        False, description="torch.compile the model; /ready waits until it is compiled (30-80 s on a CPU), ~20% faster after"
    )
    long_text: Literal["truncate", "chunk"] = Field(
        "truncate", description="text longer than the model's window: read its start, or average overlapping windows"
    )

    api_key: SecretStr | None = Field(None, description="key for POST /feedback (X-API-Key), named default; no key: no feedback")
    feedback_db: Path = Field(default_factory=default_feedback_db, description="SQLite file: feedback + predictions log")
    # Storage, accountability and retention (see store.py, feedback.py and monitoring.py).
    database_url: SecretStr | None = Field(None, description="postgresql://user:pass@host:port/db (replicas); unset: feedback_db")
    api_keys: dict[str, SecretStr] = Field({}, description='named keys {"alice": "KEY", ...}: each feedback row records the name')
    review_required: list[str] = Field(["ui"], description="key names whose feedback waits for a reviewer (the web UI's key)")
    reviewers: list[str] = Field([], description="key names that may accept or reject waiting feedback")
    log_retention_days: float | None = Field(90, gt=0, description="log rows older than this are deleted (not the counts)")
    log_retention_rows: int | None = Field(None, gt=0, description="at most this many predictions log rows are kept")

    max_text_chars: int = Field(50_000, gt=0, description="longer texts are refused with 413")
    max_batch: int = Field(64, gt=0, description="most texts in one /predict/batch request (more: 413)")
    queue_size: int = Field(256, gt=0, description="requests waiting for the model; when full: 503 + Retry-After")
    micro_batching: bool = Field(True, description="coalesce concurrent requests into one model call")
    micro_batch_size: int = Field(16, gt=0, description="most texts per model call")
    micro_batch_wait_ms: float = Field(10.0, ge=0, description="longest a request waits for others to join its batch")
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with a 503")

    review_threshold: float = Field(0.5, ge=0, le=1, description="confidence below this sets needs_review")
    log_texts: bool = Field(False, description="write request texts to the log line and the predictions log")
    recent_texts: int = Field(10_000, ge=0, description="prediction id -> text entries held in memory for feedback")
    log_flush_s: float = Field(1.0, gt=0, description="how often the predictions log is written to the database")

    @field_validator("api_keys", "review_required", "reviewers", mode="before")
    @classmethod
    def _json_from_env(cls, value: Any) -> Any:
        """Environment values arrive as strings: ``PATENTCLF_API_KEYS='{"alice": "KEY"}'``, ``PATENTCLF_REVIEWERS='["alice"]'``."""
        return json.loads(value) if isinstance(value, str) else value

    @classmethod
    def load(cls, config_file: str | Path | None = None, *, env: Mapping[str, str] | None = None, **flags: Any) -> "ServiceConfig":
        """Merge the layers; flags given as ``None`` count as not given."""
        values: dict[str, Any] = {}
        if config_file:
            values.update(read_config_file(config_file))
        values.update(from_env(os.environ if env is None else env))
        values.update({k: v for k, v in flags.items() if v is not None})
        return cls(**values)

    def public_dict(self) -> dict:
        """The settings without secrets, for logs."""
        return self.model_dump(mode="json", exclude={"api_key"}) | {"api_key_set": self.api_key is not None}


def read_config_file(path: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(path)
    text = path.read_text()
    values = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of option: value")
    unknown = set(values) - set(ServiceConfig.model_fields)
    if unknown:
        raise ValueError(f"{path}: unknown option(s) {sorted(unknown)}; known: {sorted(ServiceConfig.model_fields)}")
    return values


def from_env(env: Mapping[str, str]) -> dict[str, str]:
    """``PATENTCLF_<FIELD>`` values; pydantic turns the strings into numbers, booleans and paths."""
    found = {}
    for name in ServiceConfig.model_fields:
        value = env.get(ENV_PREFIX + name.upper())
        if value is not None and value.strip() != "":
            found[name] = value
    return found
