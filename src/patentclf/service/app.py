"""The FastAPI application: lifespan (model loaded once), per-request log line and metrics, errors as JSON.

``create_app(config)`` builds an app; with no config it reads the environment (and
``PATENTCLF_CONFIG``, a config file), which is what ``uvicorn --factory patentclf.service.app:create_app`` uses.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from .. import __version__
from .config import ServiceConfig
from .routes import router
from .runtime import ServiceRuntime, log, log_event

DESCRIPTION = """Classify patent text into the nine CPC sections (A-H, Y) with a LoRA-fine-tuned LLM.

* Errors are JSON `{"detail": ...}`: 413 for a text over `max_text_chars` or a batch over `max_batch`,
  422 for bad input (not JSON, missing/mistyped fields, empty text, unknown section), 503 with
  `Retry-After` while the model loads or when the request queue is full.
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
    """Largest request body worth reading: a full batch of maximal texts, JSON-escaped (<= 6 bytes a char)."""
    return config.max_batch * config.max_text_chars * 6 + 64 * 1024


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    config = config or ServiceConfig.load(os.environ.get("PATENTCLF_CONFIG"))
    _setup_logging()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        runtime = ServiceRuntime(config)
        app.state.runtime = runtime
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="patentclf", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.include_router(router)
    body_limit = _body_limit(config)
    docs_paths = {app.docs_url, app.redoc_url, app.openapi_url, app.swagger_ui_oauth2_redirect_url}

    @app.middleware("http")
    async def observe(request: Request, call_next):
        """Time the request, count it, and write its one log line."""
        started = time.perf_counter()
        request.state.started = started
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.log = {}
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > body_limit:
            response = JSONResponse({"detail": f"request body of {length} bytes is over the limit of {body_limit}"}, status.HTTP_413_CONTENT_TOO_LARGE)
        else:
            try:
                response = await call_next(request)
            except Exception as exc:  # a bug, not bad input: answer 500 JSON, count and log it
                log_event("unhandled_error", request_id=request.state.request_id, error=f"{type(exc).__name__}: {exc}")
                response = JSONResponse({"detail": "internal server error"}, status.HTTP_500_INTERNAL_SERVER_ERROR)
        seconds = time.perf_counter() - started
        # The route template (bounded label values), the docs pages by path, anything else "unmatched".
        route = getattr(request.scope.get("route"), "path", None) or (request.url.path if request.url.path in docs_paths else "unmatched")
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

    return app
