"""A deadline for every request: an ASGI middleware that answers 503 with ``Retry-After`` when the
app has not started its answer within ``seconds`` of the request's arrival.

The deadline covers reading the body (a client that trickles it in) and waiting for the model. At
the deadline the request's task is cancelled, which cancels its place in the micro-batcher's queue,
so no further model time is spent on it.
"""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestDeadline:
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
