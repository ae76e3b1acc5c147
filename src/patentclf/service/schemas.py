"""Pydantic models for every request and response of the API (they also make the OpenAPI docs).

The request models state in the schema what the server enforces (non-blank texts, section codes,
an id or a text for feedback), so a schema-valid request is never refused for its shape; the limits
that depend on the settings (text length, batch size) are added to the schema by ``app.py``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from ..labels import CODES

_TEXT_DOC = "patent text: title and abstract, claims or description (longer than the model's window: truncated, or read in overlapping windows with long_text=chunk)"

# A character that is not whitespace, where whitespace is exactly what Python's str.isspace() (and
# so the server's text.strip()) counts; spelled out so that every regex engine reads it alike.
NON_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
SECTION_LETTERS = [*CODES, *(c.lower() for c in CODES)]


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace")
    return text


def _section_code(value: object) -> str:
    """A section letter (either case) or an id 0..8 -> the letter; anything else fails validation (422)."""
    if isinstance(value, str) and value in SECTION_LETTERS:
        return value.upper()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() and 0 <= value < len(CODES):
        return CODES[int(value)]
    raise ValueError(f"unknown section {value!r}: expected one of {', '.join(CODES)} (either case) or an id 0..{len(CODES) - 1}")


# A text field: at least one character that is not whitespace.
Text = Annotated[str, Field(min_length=1, json_schema_extra={"pattern": NON_BLANK}), AfterValidator(_non_empty)]
SectionCode = Annotated[
    str,
    BeforeValidator(_section_code),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "enum": SECTION_LETTERS},
                {"type": "integer", "minimum": 0, "maximum": len(CODES) - 1},
            ],
            "description": "the correct section: its letter (either case) or its id 0..8",
            "examples": ["G"],
        }
    ),
]


# --- prediction ------------------------------------------------------------------------------


class PredictRequest(BaseModel):
    text: Text = Field(..., description=_TEXT_DOC, examples=["An optical sensor measuring the distance to an object."])


class BatchPredictRequest(BaseModel):
    texts: list[Text] = Field(..., min_length=1, description="texts to classify; answers keep this order")


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
    """A ``prediction_id`` the API returned, or the ``text`` itself, or both (the id links the
    correction to its prediction; the text is needed when the server no longer holds it), and the
    right section."""

    # "At least one of the two", in the schema: each branch needs its field present and not null.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["prediction_id"], "properties": {"prediction_id": {"type": "string"}}},
                {"required": ["text"], "properties": {"text": {"type": "string"}}},
            ]
        }
    )

    prediction_id: str | None = Field(None, min_length=1, description="id of an earlier prediction")
    text: Text | None = Field(None, description="the text, when there is no prediction id or the server no longer holds it")
    label: SectionCode
    comment: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _id_or_text(self) -> "FeedbackRequest":
        if self.prediction_id is None and self.text is None:
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
