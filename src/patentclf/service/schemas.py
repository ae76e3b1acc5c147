"""Pydantic models for every request and response of the API (they also make the OpenAPI docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..feedback import feedback_code

_TEXT_DOC = "patent text: title and abstract, claims or description (longer than the model's window: truncated, or read in overlapping windows with long_text=chunk)"


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace")
    return text


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
    label: str = Field(..., description="the right section (G), class (G06) or subclass (G06F)", examples=["G"])
    comment: str | None = Field(None, max_length=2000)

    _check_label = field_validator("label", mode="before")(feedback_code)

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
    label: str = Field(..., description="the correct section")
    code: str | None = Field(None, description="the finest code given: the section, class or subclass")
    agreed: bool | None = Field(..., description="the section matches the model's prediction (null: no prediction known)")
    status: str = Field("accepted", description="accepted, or pending until a reviewer accepts it (keys in review_required)")


class FeedbackReviewRequest(BaseModel):
    accept: bool = Field(..., description="true: the feedback may train the next model; false: it never will")


class FeedbackRecord(BaseModel):
    """A stored correction, as a reviewer sees it."""

    id: int
    time: str
    prediction_id: str | None
    text: str
    label: str
    code: str | None
    predicted_label: str | None
    agreed: bool | None
    comment: str | None
    model_version: str | None
    sender: str | None
    status: str
    reviewed_by: str | None
    reviewed_at: str | None


class FeedbackListResponse(BaseModel):
    feedback: list[FeedbackRecord]


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
    pending: int = Field(0, description="waiting for a reviewer")
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
