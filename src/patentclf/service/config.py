"""Service settings, declared once (pydantic-settings) and merged from four layers (later wins):

defaults < config file (YAML or JSON, keys = field names) < environment (``PATENTCLF_<FIELD>``) < flags.

The environment names are the field names upper-cased, e.g. ``PATENTCLF_API_KEY``,
``PATENTCLF_FEEDBACK_DB``, ``PATENTCLF_DATABASE_URL``, ``PATENTCLF_MODEL``, ``PATENTCLF_MAX_TEXT_CHARS``, ``PATENTCLF_MICRO_BATCHING``.
``patentclf serve`` builds one flag per field from the same declarations.
"""

from __future__ import annotations

import json
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "PATENTCLF_"
# The config file of the ServiceConfig.load() call in progress (a source is built per instantiation).
_config_file: ContextVar[Path | None] = ContextVar("patentclf_config_file", default=None)


def default_feedback_db() -> Path:
    """``$XDG_DATA_HOME/patentclf/feedback.db`` (``~/.local/share/...`` when unset)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "patentclf" / "feedback.db"


class ServiceConfig(BaseSettings):
    # An empty environment variable counts as unset (PATENTCLF_API_KEY= switches feedback off).
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid", validate_default=True)

    model: Path | None = Field(None, description="model bundle folder (default: the shipped model)")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: all interfaces)")
    port: int = Field(9000, ge=0, le=65535, description="port to listen on")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="weights: auto (bf16 where the hardware has it), bf16 or fp32"
    )
    compile: bool = Field(
        False, description="torch.compile the model; /ready waits until it is compiled (30-80 s on a CPU), ~20% faster after"
    )
    engine: Literal["torch", "vllm", "openvino"] = Field(
        "torch",
        description="torch: the model in this process | vllm: on a vLLM server of its merged export (vllm_url) | "
        "openvino: in this process, the backbone compiled by OpenVINO (the openvino extra; ~1.2x on a bf16 CPU)",
    )
    vllm_url: str | None = Field(
        None, description="engine vllm: address of a `vllm serve EXPORT --runner pooling` (implies engine vllm)"
    )
    long_text: Literal["truncate", "chunk"] = Field(
        "truncate", description="text longer than the model's window: read its start, or average overlapping windows"
    )
    index: Path | None = Field(
        None,
        description="patent index (`patentclf index`) whose patents are the evidence and vote for the main groups "
        "(default: the bundle's own, where it has one)",
    )
    no_index: bool = Field(False, description="answer no main groups and no evidence, even where the bundle has an index")
    tags: list[Path] = Field(
        [],
        description="tag set folders (`patentclf tags fit`), or folders of tag sets: each answer carries its tags "
        "(none: answers have no tags field)",
    )
    tags_dir: Path | None = Field(
        None, description="folder of the tag sets fitted through the API (POST /tags/fit); default: 'tags' beside feedback_db"
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
    # 8 explained texts: ~40 texts of model work for abstracts, 80 for long ones (~50 s on a 2-core CPU):
    # within the default request_timeout_s.
    max_explain_batch: int = Field(
        8,
        gt=0,
        description="most texts in one /predict/batch request with options.explain (more: 422 naming it): each costs "
        "about one prediction per sentence",
    )
    queue_size: int = Field(256, gt=0, description="requests waiting for the model; when full: 503 + Retry-After")
    micro_batching: bool = Field(True, description="coalesce concurrent requests into one model call")
    micro_batch_size: int = Field(16, gt=0, description="most texts per model call")
    micro_batch_wait_ms: float = Field(10.0, ge=0, description="longest a request waits for others to join its batch")
    retry_after_s: int = Field(1, ge=0, description="Retry-After sent with a 503")
    request_timeout_s: float = Field(
        60.0,
        gt=0,
        description="deadline of a request, body upload included; then 503 + Retry-After, and its queued work is dropped",
    )

    review_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="confidence below this marks an answer 'uncertain' (needs_review); default: the model's own "
        "threshold, fitted on validation",
    )
    log_texts: bool = Field(False, description="write request texts to the log line and the predictions log")
    recent_texts: int = Field(10_000, ge=0, description="prediction id -> text entries held in memory for feedback")
    recent_texts_chars: int = Field(
        20_000_000, ge=0, description="most characters of those texts held in memory (oldest dropped first)"
    )
    log_flush_s: float = Field(1.0, gt=0, description="how often the predictions log is written to the database")

    @field_validator("api_keys", "review_required", "reviewers", mode="before")
    @classmethod
    def _json_from_env(cls, value: Any) -> Any:
        """Environment values arrive as strings: ``PATENTCLF_API_KEYS='{"alice": "KEY"}'``, ``PATENTCLF_REVIEWERS='["alice"]'``."""
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("tags", mode="before")
    @classmethod
    def _paths_from_env(cls, value: Any) -> Any:
        """``PATENTCLF_TAGS`` may be one folder, or a JSON list of them."""
        if isinstance(value, str | Path):
            return json.loads(value) if str(value).lstrip().startswith("[") else [value]
        return value

    @model_validator(mode="after")
    def _engine_needs_url(self) -> "ServiceConfig":
        if self.vllm_url and self.engine == "torch":
            self.engine = "vllm"
        if self.index and self.no_index:
            raise ValueError("index and no_index contradict each other: give one")
        if self.engine == "openvino" and (self.compile or self.vllm_url):
            raise ValueError("engine openvino compiles the backbone with OpenVINO in this process: no compile, no vllm_url")
        if self.engine == "vllm" and not self.vllm_url:
            raise ValueError("engine vllm needs vllm_url: the address of a `vllm serve` of the bundle's merged export")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest first: flags (the constructor's arguments), environment, config file; then the defaults.
        No .env or secret files."""
        path = _config_file.get()
        if path is None:
            return init_settings, env_settings
        if path.suffix.lower() == ".json":
            return init_settings, env_settings, JsonConfigSettingsSource(settings_cls, json_file=path)
        return init_settings, env_settings, YamlConfigSettingsSource(settings_cls, yaml_file=path)

    @classmethod
    def load(cls, config_file: str | Path | None = None, **flags: Any) -> "ServiceConfig":
        """Merge the layers; flags given as ``None`` count as not given. Unknown keys in the file are refused."""
        path = Path(config_file) if config_file else None
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        token = _config_file.set(path)
        try:
            return cls(**{k: v for k, v in flags.items() if v is not None})
        finally:
            _config_file.reset(token)

    def public_dict(self) -> dict:
        """The settings without secrets, for logs."""
        return self.model_dump(mode="json", exclude={"api_key"}) | {"api_key_set": self.api_key is not None}
