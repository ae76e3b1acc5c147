"""The HTTP service: FastAPI app (``app``), routes, request/response schemas, micro-batching, config.

Start it with ``patentclf serve`` or ``uvicorn --factory patentclf.service.app:create_app``.
"""

from patentclf.service.config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]


def create_app(config: ServiceConfig | None = None, on_fatal=None):
    from patentclf.service.app import create_app as _create_app

    return _create_app(config, on_fatal=on_fatal)
