"""Pydantic models for every request and response of the API (they also make the OpenAPI docs).

The request models state in the schema what the server enforces (non-blank texts, section codes,
an id or a text for feedback, a label or codes in one section), so a schema-valid request is never refused for its shape; the limits
that depend on the settings (text length, batch size) are added to the schema by ``app.py``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from patentclf.corpus.hierarchy import CodeError, canonical_code
from patentclf.corpus.labels import CODES
from patentclf.inference.options import PredictOptions
from patentclf.inference.prediction import PredictionRecord
from patentclf.store.feedback import MAX_CODES, MAX_TAGS, check_sections_agree, feedback_code

_TEXT_DOC = "patent text: title and abstract, claims or description (longer than the model's window: truncated, or read in overlapping windows with long_text=chunk)"

# A character that is not whitespace, where whitespace is exactly what Python's str.isspace() (and
# so the server's text.strip()) counts; spelled out so that every regex engine reads it alike.
NON_BLANK = r"[^\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace")
    return text


# A correction's code: a section letter (either case), class (G06) or subclass (G06F), or a section id.
FEEDBACK_CODE = r"^[A-HYa-hy]([0-9]{2}[A-Za-z]?)?$"


def _feedback_code(value: object) -> str:
    """A section letter, class or subclass (either case) or a section id 0..8 -> its upper-case code;
    anything else fails validation (422). Exactly what the schema below says."""
    if isinstance(value, str) and re.fullmatch(FEEDBACK_CODE, value):
        return feedback_code(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() and 0 <= value < len(CODES):
        return CODES[int(value)]
    raise ValueError(
        f"unknown code {value!r}: expected a section ({', '.join(CODES)}, either case, or an id 0..{len(CODES) - 1}), "
        "a class such as G06 or a subclass such as G06F"
    )


# A code in a correction's list: a section, class, subclass or main group (G06F 3/00 or G06F3/00), either
# case, spaces around it allowed (only spaces: what str.strip() removes besides them is refused here).
GROUP_CODE = r"^ *[A-HYa-hy]([0-9]{2}([A-Za-z]( *[0-9]{1,4} */ *00)?)?)? *$"


def _group_code(value: object) -> str:
    """A code of ``codes`` -> CPC's spelling (``g06f3/00`` -> ``G06F 3/00``); anything else fails validation
    (422) naming it, a subgroup with its main group. Exactly what the schema below says."""
    if isinstance(value, str) and re.fullmatch(GROUP_CODE, value):
        return canonical_code(value)
    try:
        canonical_code(value)
    except CodeError as exc:
        raise ValueError(str(exc)) from None
    raise ValueError(f"not a CPC code: {value!r} (only spaces may surround a code)")


# A text field: at least one character that is not whitespace.
Text = Annotated[str, Field(min_length=1, json_schema_extra={"pattern": NON_BLANK}), AfterValidator(_non_empty)]
FeedbackCode = Annotated[
    str,
    BeforeValidator(_feedback_code),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": FEEDBACK_CODE},
                {"type": "integer", "minimum": 0, "maximum": len(CODES) - 1},
            ],
            "description": "the right section (G), class (G06) or subclass (G06F), or a section id 0..8",
            "examples": ["G", "G06F"],
        }
    ),
]


GroupCode = Annotated[
    str,
    BeforeValidator(_group_code),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": GROUP_CODE,
            "description": "a section (G), class (G06), subclass (G06F) or main group (G06F 3/00 or G06F3/00)",
            "examples": ["G06F 3/00", "H04N"],
        }
    ),
]


def _same_section_schema() -> dict:
    """In the schema: ``label`` and the first of ``codes``, when both are given, are in one section."""
    branches: list[dict] = [{"properties": {"label": {"type": "null"}}}, {"properties": {"codes": {"type": "null"}}}]
    for number, code in enumerate(CODES):
        letters = f"[{code}{code.lower()}]"
        label = {"anyOf": [{"type": "string", "pattern": f"^{letters}"}, {"type": "integer", "const": number}]}
        codes = {"type": "array", "prefixItems": [{"type": "string", "pattern": f"^ *{letters}"}]}
        branches.append({"properties": {"label": label, "codes": codes}})
    return {"anyOf": branches}


# --- prediction ------------------------------------------------------------------------------


_OPTIONS_DOC = (
    "how the answer is shaped: suggestions per level (0 switches a level off), a probability threshold for codes, "
    "the sections threshold, the depth (section: no index search); left out, or a field left out: the defaults"
)


class PredictRequest(BaseModel):
    text: Text = Field(..., description=_TEXT_DOC, examples=["An optical sensor measuring the distance to an object."])
    options: PredictOptions = Field(
        default_factory=PredictOptions, description=_OPTIONS_DOC, examples=[{"classes": 3, "threshold": 0.05}]
    )


class BatchPredictRequest(BaseModel):
    texts: list[Text] = Field(..., min_length=1, description="texts to classify; answers keep this order")
    options: PredictOptions = Field(
        default_factory=PredictOptions, description=_OPTIONS_DOC + " (the same for every text)", examples=[{"depth": "section"}]
    )


class PredictionResponse(PredictionRecord):
    pass  # the record of a prediction (patentclf.inference.prediction), under the API's name


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
    index: dict[str, Any] | None = Field(
        None, description="the patent index behind groups and evidence: patents, faiss factory, group voting (null: none)"
    )
    tags: list[dict[str, Any]] = Field(
        [],
        description="the tag sets answers carry (`patentclf tags fit`): each one's name, model digest, examples and, per "
        "tag, its threshold and cross-validated examples, precision, recall and F1 (empty: none)",
    )


class ErrorResponse(BaseModel):
    detail: Any


# --- feedback --------------------------------------------------------------------------------


class TagName(BaseModel):
    """One of the user's own tags (``patentclf tags fit``): its set and its name."""

    set: str = Field(..., min_length=1, max_length=200, examples=["batteries"])
    name: str = Field(..., min_length=1, max_length=200, pattern=r"^[^;]*$", examples=["sodium-ion"])


class FeedbackRequest(BaseModel):
    """A ``prediction_id`` the API returned, or the ``text`` itself, or both (the id links the
    correction to its prediction; the text is needed when the server no longer holds it), and the
    right codes: ``label`` (one section, class or subclass), or ``codes`` (several, down to main
    groups, main code first), or both when ``label`` is in the main code's section."""

    # "At least one of the two", in the schema: each branch needs its field present and not null.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["prediction_id"], "properties": {"prediction_id": {"type": "string"}}},
                {"required": ["text"], "properties": {"text": {"type": "string"}}},
            ],
            "allOf": [
                {
                    "anyOf": [
                        {"required": ["label"], "properties": {"label": {"not": {"type": "null"}}}},
                        {"required": ["codes"], "properties": {"codes": {"type": "array"}}},
                    ]
                },
                _same_section_schema(),
            ],
        }
    )

    prediction_id: str | None = Field(None, min_length=1, description="id of an earlier prediction")
    text: Text | None = Field(None, description="the text, when there is no prediction id or the server no longer holds it")
    label: FeedbackCode | None = Field(
        None,
        description="one section, class or subclass (the field from before codes): may be left out when codes are given, "
        "else it must be in the main code's section",
    )
    codes: Annotated[list[GroupCode], Field(min_length=1, max_length=MAX_CODES)] | None = Field(
        None,
        description=f"the right codes, main code first: up to {MAX_CODES} sections, classes, subclasses or main groups; "
        "stored in CPC's spelling (G06F 3/00), duplicates removed",
        examples=[["G06F 3/00", "G06F", "H04N 5/00"]],
    )
    tags: Annotated[list[TagName], Field(max_length=MAX_TAGS)] | None = Field(
        None,
        description=f"the patent's right tags (up to {MAX_TAGS}) in the user's tag sets, as well as the codes: accepted "
        "ones become examples for `patentclf tags fit --add` (`patentclf feedback export-tags`)",
        examples=[[{"set": "batteries", "name": "sodium-ion"}]],
    )
    comment: str | None = Field(None, max_length=2000)

    @model_validator(mode="after")
    def _id_or_text(self) -> "FeedbackRequest":
        if self.prediction_id is None and self.text is None:
            raise ValueError("give prediction_id or text")
        if self.label is None and self.codes is None:
            raise ValueError("give label or codes")
        if self.codes is not None:
            self.codes = list(dict.fromkeys(self.codes))  # in order, each once
            if self.label is not None:
                check_sections_agree(self.label, self.codes)
        return self


class FeedbackResponse(BaseModel):
    feedback_id: int
    prediction_id: str | None
    label: str = Field(..., description="the correct section: the main code's")
    code: str | None = Field(None, description="the main code: a section, class, subclass or main group")
    codes: list[str] = Field([], description="every code given, main code first, in CPC's spelling")
    tags: list[TagName] | None = Field(
        None, description="the tags given (absent when none were)", exclude_if=lambda tags: tags is None
    )
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
    codes: list[str] = Field(..., description="every code given, main first (rows from before lists: their one code)")
    tags: list[TagName] | None = Field(
        None, description="the patent's tags the correction names (absent when none)", exclude_if=lambda tags: tags is None
    )
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
    storage: str | None = Field(
        None,
        description="where feedback and the predictions log are kept: a SQLite file's path, or the database URL without its password",
    )
