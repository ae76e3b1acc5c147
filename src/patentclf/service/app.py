"""The FastAPI application: lifespan (model loaded once), per-request log line and metrics, errors as
JSON, the request body limit and deadline, and the OpenAPI schema with the configured limits.

``create_app(config)`` builds an app; with no config it reads the environment (and
``PATENTCLF_CONFIG``, a config file), which is what ``uvicorn --factory patentclf.service.app:create_app`` uses.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from patentclf import __version__
from patentclf.service.config import ServiceConfig
from patentclf.service.limits import BodyLimit, RequestDeadline, body_limit
from patentclf.service.review_queue import router as queue_router
from patentclf.service.routes import router
from patentclf.service.runtime import ServiceRuntime, log, log_event
from patentclf.service.tag_sets import example_limits
from patentclf.service.tag_sets import router as tag_sets_router

DOCS_URL, REDOC_URL = "/docs", "/redoc"  # FastAPIOffline's defaults
DOCS_STATIC = "/static-offline-docs"  # where FastAPIOffline serves the pages' scripts
DESCRIPTION = """Classify patent text into CPC sections (A-H, Y), classes, subclasses and main groups, with the nearest
classified patents as evidence, using a LoRA-fine-tuned LLM.

* Errors are JSON `{"detail": ...}`: 413 for a text over `max_text_chars`, a batch over `max_batch` or
  a body over the byte limit, 422 for bad input (not JSON, missing/mistyped fields, empty text, unknown
  section), 503 with `Retry-After` while the model loads, when the request queue is full, or when a
  request is not answered within its deadline (`request_timeout_s`).
* `POST /feedback` needs the `X-API-Key` header. `/stats` and `/metrics` are open: counts only, no texts.
"""


def _setup_logging() -> None:
    """JSON lines on stderr (each message is already a JSON object), unless the host app set up its own."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False


def _body_limit(config: ServiceConfig) -> int:
    return body_limit(config.max_batch, config.max_text_chars)


def _document_limits(schema: dict, config: ServiceConfig) -> dict:
    """Add the limits that depend on the settings to the OpenAPI schema: text length, batch size."""
    models = schema["components"]["schemas"]

    def limit_text(prop: dict) -> None:
        for option in prop.get("anyOf", [prop]):
            if option.get("type") == "string":
                option["maxLength"] = config.max_text_chars

    limit_text(models["PredictRequest"]["properties"]["text"])
    limit_text(models["FeedbackRequest"]["properties"]["text"])
    texts = models["BatchPredictRequest"]["properties"]["texts"]
    texts["maxItems"] = config.max_batch
    limit_text(texts["items"])
    chars, most = example_limits(config.max_text_chars, _body_limit(config))  # a tag fit's body fits in the limit
    models["TagFitRequest"]["properties"]["examples"]["maxItems"] = most
    models["TagExample"]["properties"]["text"]["maxLength"] = chars
    return schema


def _stop_this_process(reason: str) -> None:
    """The default when the service cannot serve: SIGTERM to itself, which uvicorn turns into a graceful
    shutdown (answers in flight finish, the predictions log is flushed) and then a death by SIGTERM."""
    os.kill(os.getpid(), signal.SIGTERM)


def create_app(config: ServiceConfig | None = None, on_fatal: Callable[[str], None] | None = None) -> FastAPI:
    """``on_fatal(reason)``: how to stop when the service cannot serve (default: SIGTERM this process)."""
    config = config or ServiceConfig.load(os.environ.get("PATENTCLF_CONFIG"))
    _setup_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime = ServiceRuntime(config, on_fatal=on_fatal or _stop_this_process)
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    # Swagger UI and ReDoc from files installed with the package: /docs works offline (FastAPI's own
    # pages load their scripts from a CDN and stay blank without one).
    app = FastAPIOffline(
        docs_url=DOCS_URL,
        redoc_url=REDOC_URL,
        static_url=DOCS_STATIC,
        title="patentclf",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.include_router(router)
    app.include_router(queue_router)
    app.include_router(tag_sets_router)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        """A person who opens the bare address lands on the API's documentation."""
        return RedirectResponse(DOCS_URL)

    make_schema = app.openapi
    app.openapi = lambda: app.openapi_schema or _document_limits(make_schema(), config)
    # Inside `observe` (added below, so outermost): their 413s and 503s are logged and counted like any answer.
    app.add_middleware(BodyLimit, limit=_body_limit(config))
    app.add_middleware(RequestDeadline, seconds=config.request_timeout_s, retry_after_s=config.retry_after_s)
    docs_paths = {"/", DOCS_URL, REDOC_URL, app.openapi_url, app.swagger_ui_oauth2_redirect_url}

    @app.middleware("http")
    async def observe(request: Request, call_next):
        """Time the request, count it, and write its one log line."""
        started = time.perf_counter()
        request.state.started = started
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.log = {}
        try:
            response = await call_next(request)
        except Exception as exc:  # a bug, not bad input: answer 500 JSON, count and log it
            log_event("unhandled_error", request_id=request.state.request_id, error=f"{type(exc).__name__}: {exc}")
            response = JSONResponse({"detail": "internal server error"}, status.HTTP_500_INTERNAL_SERVER_ERROR)
        seconds = time.perf_counter() - started
        # The route template (bounded label values), the docs pages by path, their scripts as one, anything else "unmatched".
        path = request.url.path
        route = getattr(request.scope.get("route"), "path", None) or (
            path if path in docs_paths else DOCS_STATIC if path.startswith(DOCS_STATIC + "/") else "unmatched"
        )
        runtime: ServiceRuntime | None = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.metrics.observe_request(route, request.method, response.status_code, seconds)
        response.headers["X-Request-ID"] = request.state.request_id
        log_event(
            "request",
            request_id=request.state.request_id,
            method=request.method,
            route=route,
            status=response.status_code,
            latency_ms=round(seconds * 1000, 3),
            **request.state.log,
        )
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer echoes the whole input back; keep where, what and why.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(DBAPIError)
    async def database_unavailable(request: Request, exc: DBAPIError) -> JSONResponse:
        # A read of an unreachable database (PostgreSQL restarting, a full or locked disk): /stats,
        # feedback by an id from another replica. Writes say so themselves (routes._store_unavailable).
        log_event("database_unavailable", request_id=request.state.request_id, error=f"{type(exc.orig).__name__}: {exc.orig}")
        return JSONResponse(
            {"detail": f"the database is unavailable ({type(exc.orig).__name__}); retry later"},
            status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == status.HTTP_400_BAD_REQUEST:
            # FastAPI's answer to a body it cannot decode (not UTF-8): not JSON, so 422 like any other.
            errors = [{"loc": ["body"], "msg": "the body is not JSON text (UTF-8)", "type": "json_invalid"}]
            return JSONResponse({"detail": errors}, status.HTTP_422_UNPROCESSABLE_CONTENT)
        if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
            # Starlette's Allow names the methods of the first route on the path only; /feedback has
            # two (GET lists, POST sends): name every method the path takes.
            allowed = sorted(
                {
                    m
                    for r in router.routes
                    if getattr(r, "path", None) == request.url.path
                    for m in getattr(r, "methods", ()) or ()
                }
            )
            if allowed:
                return JSONResponse({"detail": "Method Not Allowed"}, exc.status_code, headers={"Allow": ", ".join(allowed)})
        return await http_exception_handler(request, exc)

    return app
