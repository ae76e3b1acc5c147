"""Limits on every request, as ASGI middleware: the size of its body and the time it may take.

Both answer in the API's error format, JSON ``{"detail": ...}``.
"""

from __future__ import annotations

import asyncio

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def body_limit(max_batch: int, max_text_chars: int) -> int:
    """Largest request body worth reading: a full batch of maximal texts, JSON-escaped (<= 6 bytes a char)."""
    return max_batch * max_text_chars * 6 + 64 * 1024


class BodyLimit:
    """413 for a body over ``limit`` bytes: by its Content-Length before any of it is read, and for a
    body without one (chunked) as soon as what was read passes the limit, so it is never held whole."""

    def __init__(self, app: ASGIApp, *, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        detail = f"the request body is over the limit of {self.limit} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the route's body reading: FastAPI passes it on, and it becomes the 413.
                    raise HTTPException(413, detail)
            return message

        await self.app(scope, receive_within_limit, send)


class RequestDeadline:
    """503 with ``Retry-After`` when the app has not started its answer within ``seconds`` of the
    request's arrival. The deadline covers reading the body (a client that trickles it in) and waiting
    for the model; at the deadline the request's task is cancelled, which cancels its place in the
    micro-batcher's queue, so no further model time is spent on it."""

    def __init__(self, app: ASGIApp, *, seconds: float, retry_after_s: int):
        self.app = app
        self.seconds = seconds
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        answering = False

        async def send_tracked(message: Message) -> None:
            nonlocal answering
            answering = answering or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, receive, send_tracked), self.seconds)
        except asyncio.TimeoutError:
            if answering:  # too late to change the status; the connection closes on a short answer
                return
            detail = f"the request was not answered within its deadline of {self.seconds:g} s; retry later"
            response = JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": str(self.retry_after_s)})
            await response(scope, receive, send)
