"""Pydantic models for every request and response of the API (they also make the OpenAPI docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..labels import CODES, parse_label

_TEXT_DOC = "patent text: title and abstract, claims or description (longer than the model's window: truncated, or read in overlapping windows with long_text=chunk)"


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace")
    return text


def _section_code(value: object) -> str:
    """A section letter (any case) or an id 0..8 -> the letter; anything else fails validation (422)."""
    try:
        return CODES[parse_label(value)]
    except ValueError:
        raise ValueError(f"unknown section {value!r}: expected one of {', '.join(CODES)}") from None


# --- prediction ------------------------------------------------------------------------------


class PredictRequest(BaseModel):
    text: str = Field(..., description=_TEXT_DOC, examples=["An optical sensor measuring the distance to an object."])

    _check_text = field_validator("text")(_non_empty)


class BatchPredictRequest(BaseModel):
    texts: list[str] = Field(..., min_length=1, description="texts to classify; answers keep this order")

    @field_validator("texts")
    @classmethod
    def _check_texts(cls, texts: list[str]) -> list[str]:
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            raise ValueError(f"texts at positions {empty[:10]} are empty or only whitespace")
        return texts


class CodeSuggestion(BaseModel):
    """A CPC class or subclass the patent may belong to."""

    code: str = Field(..., description="class (G06) or subclass (G06F) code", examples=["G06F"])
    title: str = Field(..., description="its English title in the CPC scheme (empty when the scheme has none)")
    probability: float = Field(..., ge=0, le=1)


class PredictionResponse(BaseModel):
    id: str = Field(..., description="prediction id (uuid hex): send it back with POST /feedback")
    label: str = Field(..., description="CPC section letter")
    name: str = Field(..., description="the section's name")
    label_id: int = Field(..., ge=0, le=8)
    confidence: float = Field(..., description="probability of the predicted section")
    probabilities: dict[str, float] = Field(..., description="all nine sections, by letter")
    truncated: bool = Field(..., description="the text was longer than the model's window; only its start was read")
    chunks: int = Field(1, description="windows read: more than 1 when the service runs with long_text=chunk")
    needs_review: bool = Field(..., description="confidence is below the service's review threshold")
    model_version: str
    sections: list[str] = Field(
        default_factory=list,
        description="every section the patent is predicted to belong to (multi-label), always including label; "
        "a model trained on section labels only answers [label]",
        examples=[["G", "H"]],
    )
    section_probabilities: dict[str, float] = Field(
        default_factory=dict,
        description="the probability of each section in sections, by letter",
        examples=[{"G": 0.93, "H": 0.58}],
    )
    classes: list[CodeSuggestion] = Field(
        default_factory=list, description="the top 5 main CPC classes, best first (empty for a model trained on sections only)"
    )
    subclasses: list[CodeSuggestion] = Field(
        default_factory=list, description="the top 5 main CPC subclasses, best first (empty for a model trained on sections only)"
    )


class BatchPredictionResponse(BaseModel):
    predictions: list[PredictionResponse]
    model_version: str


# --- service state ---------------------------------------------------------------------------


class HealthResponse(BaseModel):
    status: str = "ok"


class ReadyResponse(BaseModel):
    ready: bool
    model_version: str | None = None
    detail: str | None = None


class ModelInfoResponse(BaseModel):
    """The bundle's ``patentclf.json`` (labels, base model, training data and metrics...) plus its version."""

    model_config = ConfigDict(extra="allow")

    model_version: str
    base_model: str | None = None
    max_length: int | None = None
    labels: list[dict[str, Any]] = []
    metrics: dict[str, Any] = {}


class ErrorResponse(BaseModel):
    detail: Any


# --- feedback --------------------------------------------------------------------------------


class FeedbackRequest(BaseModel):
    """Either a ``prediction_id`` the API returned, or the ``text`` itself (or both), and the right section."""

    prediction_id: str | None = Field(None, description="id of an earlier prediction")
    text: str | None = Field(None, description="the text, when there is no prediction id or the server no longer holds it")
    label: str = Field(..., description="the correct section letter", examples=["G"])
    comment: str | None = Field(None, max_length=2000)

    _check_label = field_validator("label", mode="before")(_section_code)

    @field_validator("text")
    @classmethod
    def _check_text(cls, text: str | None) -> str | None:
        return None if text is None else _non_empty(text)

    @model_validator(mode="after")
    def _id_or_text(self) -> "FeedbackRequest":
        if not self.prediction_id and self.text is None:
            raise ValueError("give prediction_id or text")
        return self


class FeedbackResponse(BaseModel):
    feedback_id: int
    prediction_id: str | None
    label: str
    agreed: bool | None = Field(..., description="the label matches the model's prediction (null: no prediction known)")


# --- monitoring ------------------------------------------------------------------------------


class TimeBucket(BaseModel):
    time: str = Field(..., description="start of the bucket, ISO 8601 UTC (hour or minute)")
    count: int


class ConfidenceBin(BaseModel):
    bin: str = Field(..., examples=["0.9-1.0"])
    count: int


class FeedbackSummary(BaseModel):
    total: int
    agreed: int
    disagreed: int
    agreement_rate: float | None = Field(..., description="agreed / (agreed + disagreed); null without any")


class StatsResponse(BaseModel):
    predictions_total: int
    predictions_over_time: list[TimeBucket]
    label_mix: dict[str, int]
    training_mix: dict[str, int]
    confidence_histogram: list[ConfidenceBin]
    feedback: FeedbackSummary
    needs_review_total: int = 0
    model_version: str | None = None
    bucket: str = "hour"
