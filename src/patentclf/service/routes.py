"""HTTP routes. Each handler validates, calls the runtime, and shapes the answer; no model code here."""

from __future__ import annotations

import asyncio
import secrets
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, Security, status
from fastapi.exceptions import RequestValidationError
from fastapi.security import APIKeyHeader
from sqlalchemy.exc import DBAPIError

from patentclf.inference.options import PredictOptions
from patentclf.service.batching import BatcherClosed, QueueFull
from patentclf.service.runtime import NotReady, ServedPrediction, ServiceRuntime
from patentclf.service.schemas import (
    BatchPredictionResponse,
    BatchPredictRequest,
    ErrorResponse,
    FeedbackListResponse,
    FeedbackRequest,
    FeedbackResponse,
    FeedbackReviewRequest,
    HealthResponse,
    ModelInfoResponse,
    PredictionResponse,
    PredictRequest,
    ReadyResponse,
    StatsResponse,
)
from patentclf.store.feedback import ACCEPTED, MAX_CODES, PENDING, Feedback, ReviewConflict, feedback_tags

router = APIRouter()
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="PATENTCLF_API_KEY or one of PATENTCLF_API_KEYS")

_ERRORS = {
    413: {"model": ErrorResponse, "description": "a text longer than max_text_chars, or more texts than max_batch"},
    422: {
        "model": ErrorResponse,
        "description": "not JSON, a missing or mistyped field, an empty text, an option out of its range, more texts "
        "than max_explain_batch with options.explain (detail names the field)",
    },
    503: {"model": ErrorResponse, "description": "model loading or broken, queue full, or deadline passed (see Retry-After)"},
}


def get_runtime(request: Request) -> ServiceRuntime:
    return request.app.state.runtime


def named_keys(runtime: ServiceRuntime) -> dict[str, bytes]:
    """Key name -> key: ``api_key`` is named "default", ``api_keys`` bring their own names."""
    config = runtime.config
    keys = {name: secret.get_secret_value().encode() for name, secret in config.api_keys.items()}
    if config.api_key is not None:
        keys.setdefault("default", config.api_key.get_secret_value().encode())
    return {name: key for name, key in keys.items() if key}


def require_api_key(request: Request, key: str | None = Security(api_key_header)) -> str:
    """The name of the key in X-API-Key (each key is compared in constant time)."""
    keys = named_keys(get_runtime(request))
    if not keys:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "feedback is disabled: the server has no API key (set PATENTCLF_API_KEY)"
        )
    given = (key or "").encode()
    matches = [name for name, expected in keys.items() if secrets.compare_digest(given, expected)]
    if not key or not matches:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong API key (header X-API-Key)")
    return matches[0]


def require_reviewer(request: Request, sender: str = Depends(require_api_key)) -> str:
    if sender not in get_runtime(request).config.reviewers:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"key {sender!r} is not a reviewer's (see the reviewers setting)")
    return sender


def _store_unavailable(exc: DBAPIError) -> HTTPException:
    """A database that refuses a write (locked, full, unreachable): nothing was acknowledged; retry."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"the feedback store could not commit ({type(exc.orig).__name__}); nothing was stored, retry later",
        headers={"Retry-After": "5"},
    )


def _check_lengths(runtime: ServiceRuntime, texts: list[str]) -> None:
    limit = runtime.config.max_text_chars
    too_long = [i for i, t in enumerate(texts) if len(t) > limit]
    if too_long:
        where = "the text" if len(texts) == 1 else f"texts at positions {too_long[:10]}"
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"{where} exceed(s) the limit of {limit} characters")


async def _predict(
    request: Request, runtime: ServiceRuntime, texts: list[str], options: PredictOptions
) -> list[ServedPrediction]:
    try:
        served = await runtime.predict(texts, started=request.state.started, options=options)
    except QueueFull:
        runtime.metrics.rejected.inc()
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the server is busy: too many requests are waiting; retry later",
            headers={"Retry-After": str(runtime.config.retry_after_s)},
        ) from None
    except (NotReady, BatcherClosed) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": str(runtime.config.retry_after_s)}
        ) from None
    # What the request log line reports (see app.py's middleware).
    request.state.log.update(
        prediction_ids=[s.id for s in served],
        labels=[s.prediction.label for s in served],
        confidences=[s.prediction.confidence for s in served],
    )
    steered = options.model_dump(exclude_defaults=True)
    if steered:  # only what differs from the defaults
        request.state.log["options"] = steered
    if runtime.config.log_texts:
        request.state.log["texts"] = texts
    return served


@router.post("/predict", response_model=PredictionResponse, responses=_ERRORS, tags=["predict"])
async def predict(body: PredictRequest, request: Request, runtime: ServiceRuntime = Depends(get_runtime)) -> dict:
    """Classify one text into a CPC section, and below it as far as ``options`` ask (default: the five
    best classes, subclasses, main groups and similar patents)."""
    _check_lengths(runtime, [body.text])
    [served] = await _predict(request, runtime, [body.text], body.options)
    return served.to_response()


@router.post("/predict/batch", response_model=BatchPredictionResponse, responses=_ERRORS, tags=["predict"])
async def predict_batch(body: BatchPredictRequest, request: Request, runtime: ServiceRuntime = Depends(get_runtime)) -> dict:
    """Classify up to ``max_batch`` texts; the answers keep the order of ``texts``. More texts: 413."""
    if len(body.texts) > runtime.config.max_batch:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"{len(body.texts)} texts: at most {runtime.config.max_batch} per request"
        )
    _check_lengths(runtime, body.texts)
    limit = runtime.config.max_explain_batch
    if body.options.explain and len(body.texts) > limit:
        # An explained text costs about one prediction per sentence: a bound keeps a request within its deadline.
        message = f"explain is offered for at most {limit} texts per request ({len(body.texts)} given): send fewer"
        raise RequestValidationError([{"loc": ("body", "options", "explain"), "msg": message, "type": "too_many_explained"}])
    served = await _predict(request, runtime, body.texts, body.options)
    return {"predictions": [s.to_response() for s in served], "model_version": served[0].model_version}


@router.get("/health", response_model=HealthResponse, tags=["service"])
async def health() -> dict:
    """The process is up (the model may still be loading: see /ready)."""
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyResponse, responses={503: {"model": ReadyResponse}}, tags=["service"])
async def ready(response: Response, runtime: ServiceRuntime = Depends(get_runtime)) -> dict:
    """200 once the model is loaded and predictions are served; 503 before, and when the service can no
    longer serve (the model failed to load, or its worker died: the process then exits for a restart)."""
    if not runtime.ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"ready": False, "model_version": None, "detail": runtime.not_ready_reason}
    return {"ready": True, "model_version": runtime.model_version}


@router.get("/model", response_model=ModelInfoResponse, responses={503: {"model": ErrorResponse}}, tags=["service"])
async def model_info(runtime: ServiceRuntime = Depends(get_runtime)) -> dict:
    """The bundle's ``patentclf.json``: base model, labels, training data and settings, metrics."""
    if not runtime.ready:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, runtime.fatal_error or "the model is loading")
    index = runtime.classifier.index
    described = None if index is None else {"patents": len(index), "factory": index.factory, "voting": index.voting}
    return {
        **runtime.classifier.info.model_dump(mode="json"),
        "model_version": runtime.model_version,
        "index": described,
        "tags": runtime.classifier.tags.describe(),
    }


_KEY_ERRORS = {
    401: {"model": ErrorResponse, "description": "missing or wrong X-API-Key"},
    503: {"model": ErrorResponse, "description": "no API key is configured on the server, or the store could not commit"},
}


@router.post(
    "/feedback",
    status_code=status.HTTP_201_CREATED,
    response_model=FeedbackResponse,
    responses={
        **_KEY_ERRORS,
        404: {"model": ErrorResponse, "description": "unknown prediction_id"},
        413: {"model": ErrorResponse, "description": "a text longer than max_text_chars"},
        422: {
            "model": ErrorResponse,
            "description": "an unknown section or code (named), label and codes in different sections, more than "
            f"{MAX_CODES} codes, no id and no text, or the text is needed",
        },
        503: {
            "model": ErrorResponse,
            "description": "no API key is configured, the store could not commit, or the deadline passed",
        },
    },
    tags=["feedback"],
)
async def feedback(
    body: FeedbackRequest,
    request: Request,
    runtime: ServiceRuntime = Depends(get_runtime),
    sender: str = Depends(require_api_key),
) -> dict:
    """Record the right codes for a prediction (by id) or for a text: ``label``, one section, class or
    subclass, or ``codes``, several down to main groups (``G06F 3/00``), main code first. Stored
    durably before the 201, with the name of the key that sent it; feedback from keys listed in
    ``review_required`` (such as the web UI's) is stored as ``pending`` until a reviewer accepts it.

    By id, the text comes from the server's memory of recent predictions (or its log, if texts are
    logged or shared between replicas); when it has neither, the answer is 422 and the request should
    be sent again with the text.
    """
    _check_lengths(runtime, [body.text] if body.text else [])
    text, predicted, version = body.text, None, runtime.model_version
    if body.prediction_id:
        known = await runtime.find_prediction(body.prediction_id)
        if known is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown prediction_id {body.prediction_id!r}")
        predicted, version = known.label, known.model_version
        text = text or known.text
        if not text:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f'the server no longer holds the text of prediction {body.prediction_id!r}: send it again with its "text"',
            )
    item = Feedback(
        text=text, label=body.label, codes=body.codes, prediction_id=body.prediction_id, predicted_label=predicted,
        comment=body.comment, model_version=version, sender=sender,
        tags=[t.model_dump() for t in body.tags] if body.tags else None,
        status=PENDING if sender in runtime.config.review_required else ACCEPTED,
    )  # fmt: skip
    try:
        feedback_id = await asyncio.to_thread(runtime.feedback.add, item)  # committed when this returns
    except DBAPIError as exc:
        raise _store_unavailable(exc) from None
    runtime.metrics.observe_feedback(item.agreed)
    request.state.log.update(
        feedback_id=feedback_id, label=item.code, codes=item.all_codes, agreed=item.agreed, sender=sender,
        feedback_status=item.status,
    )  # fmt: skip
    return {
        "feedback_id": feedback_id, "prediction_id": body.prediction_id, "label": item.section, "code": item.code,
        "codes": item.all_codes, "agreed": item.agreed, "status": item.status,
        **({"tags": feedback_tags(item.tags)} if item.tags else {}),
    }  # fmt: skip


@router.get(
    "/feedback",
    response_model=FeedbackListResponse,
    responses={**_KEY_ERRORS, 403: {"model": ErrorResponse, "description": "the key is not a reviewer's"}},
    tags=["feedback"],
)
async def list_feedback(
    runtime: ServiceRuntime = Depends(get_runtime),
    _reviewer: str = Depends(require_reviewer),
    status_: Literal["pending", "accepted", "rejected"] = Query("pending", alias="status"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict:
    """Stored feedback with its texts, oldest first (reviewers' keys only): what waits for review, by default."""
    rows = await asyncio.to_thread(runtime.feedback.rows, status_, limit=limit)
    return {"feedback": [{**row, "agreed": None if row["agreed"] is None else bool(row["agreed"])} for row in rows]}


@router.post(
    "/feedback/{feedback_id}/review",
    response_model=FeedbackListResponse,
    responses={
        **_KEY_ERRORS,
        403: {"model": ErrorResponse, "description": "the key is not a reviewer's"},
        404: {"model": ErrorResponse, "description": "unknown feedback id"},
        409: {"model": ErrorResponse, "description": "already accepted or rejected"},
    },
    tags=["feedback"],
)
async def review_feedback(
    feedback_id: int,
    body: FeedbackReviewRequest,
    request: Request,
    runtime: ServiceRuntime = Depends(get_runtime),
    reviewer: str = Depends(require_reviewer),
) -> dict:
    """Accept (it may train the next model) or reject pending feedback; the row records the reviewer."""
    try:
        row = await asyncio.to_thread(runtime.feedback.review, feedback_id, accept=body.accept, reviewer=reviewer)
    except KeyError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no feedback {feedback_id}") from None
    except ReviewConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except DBAPIError as exc:
        raise _store_unavailable(exc) from None
    request.state.log.update(feedback_id=feedback_id, reviewer=reviewer, feedback_status=row["status"])
    return {"feedback": [{**row, "agreed": None if row["agreed"] is None else bool(row["agreed"])}]}


@router.get("/metrics", tags=["monitoring"], response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(runtime: ServiceRuntime = Depends(get_runtime)) -> Response:
    """Prometheus metrics (text format)."""
    if runtime.batcher:
        runtime.metrics.queue_depth.set(runtime.batcher.depth)
    body, content_type = runtime.metrics.render()
    return Response(body, media_type=content_type)


@router.get("/stats", response_model=StatsResponse, tags=["monitoring"])
async def stats(
    runtime: ServiceRuntime = Depends(get_runtime),
    bucket: Literal["hour", "minute"] = Query("hour", description="width of the predictions_over_time buckets"),
    buckets: int = Query(48, ge=1, le=10_000, description="most recent buckets to return"),
) -> dict:
    """Figures for the monitoring page, from the rolled-up counts of the predictions log and the feedback
    store (all time, across restarts, every replica on the database). Open, no key: counts only, never texts."""
    try:  # this replica's last second of predictions too; if the write fails, the figures wait for the next flush
        await asyncio.to_thread(runtime.prediction_log.flush)
    except DBAPIError:
        pass
    figures = await asyncio.to_thread(runtime.prediction_log.stats, bucket=bucket, buckets=buckets)
    feedback = await asyncio.to_thread(runtime.feedback.summary)
    trained_on = runtime.info.data.get("train") if runtime.info else None
    training = trained_on.labels if trained_on else {}
    return {
        **figures,
        "training_mix": {code: int(training.get(code, 0)) for code in figures["label_mix"]},
        "feedback": feedback,
        "model_version": runtime.model_version,
        "bucket": bucket,
        "storage": runtime.storage,
    }
