"""``GET /feedback/queue``: the recent predictions a reviewer should look at first, most likely wrong
first (``inference.review.queue_score``), with what the reviewer needs to judge them. A reviewer
confirms an answer with ``POST /feedback`` giving the predicted section as the label (a confirmation is
a label too: it is stored with ``agreed`` true), or corrects it with the same route's codes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError

from patentclf.inference.review import QUEUE_ORDER
from patentclf.service.routes import _KEY_ERRORS, get_runtime, require_reviewer
from patentclf.service.runtime import ServiceRuntime
from patentclf.service.schemas import ErrorResponse

router = APIRouter()


class QueueSection(BaseModel):
    code: str = Field(..., examples=["G"])
    probability: float = Field(..., ge=0, le=1)


class QueueLevel(BaseModel):
    level: str = Field(..., description="section, class, subclass or group", examples=["subclass"])
    code: str = Field(..., examples=["G06F"])
    title: str = ""
    probability: float = Field(..., ge=0, le=1)


class QueueItem(BaseModel):
    """A logged prediction waiting for a reviewer's look."""

    id: str = Field(..., description="the prediction id: POST /feedback with it to confirm or correct")
    time: str = Field(..., description="when it was made, ISO 8601 UTC")
    model_version: str
    label: str = Field(..., description="the predicted section")
    confidence: float = Field(..., ge=0, le=1, description="the calibrated probability of the predicted section")
    needs_review: bool
    review_score: float | None = Field(
        ..., description="the queue's order, highest first (null: logged before scores were kept; listed last)"
    )
    text: str = Field(..., description="the text that was classified")
    reasons: list[str] = Field(
        [], description="why the answer was marked needs_review: too_short, not_english, not_patent_like, uncertain"
    )
    evidence_disagrees: bool | None = Field(
        None, description="most of the nearest indexed patents vote for another section (null: not recorded)"
    )
    sections: list[QueueSection] = Field([], description="the three most probable sections, best first")
    levels: list[QueueLevel] = Field([], description="the best code of each level the model answers")


class QueueResponse(BaseModel):
    items: list[QueueItem] = Field(..., description="most likely wrong first")
    order: str = Field(..., description="what orders the queue and how well it was measured to find wrong answers")
    scope: str = Field(..., description="which predictions can be listed: only those whose text is known")


@router.get(
    "/feedback/queue",
    response_model=QueueResponse,
    responses={**_KEY_ERRORS, 403: {"model": ErrorResponse, "description": "the key is not a reviewer's"}},
    tags=["feedback"],
)
async def review_queue(
    runtime: ServiceRuntime = Depends(get_runtime),
    _reviewer: str = Depends(require_reviewer),
    limit: int = Query(50, ge=1, le=1000, description="most predictions to list"),
) -> dict:
    """Recent predictions a reviewer should look at first, most likely wrong first, leaving out those
    that feedback already names (reviewers' keys only). Confirm one with ``POST /feedback``
    ``{"prediction_id": id, "label": its label}``, or correct it there with the right codes."""
    try:
        items = await runtime.review_queue(limit)
    except DBAPIError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the predictions log could not be read ({type(exc.orig).__name__}); retry later",
            headers={"Retry-After": "5"},
        ) from None
    return {"items": items, "order": QUEUE_ORDER, "scope": runtime.queue_scope()}
