"""Run the service under uvicorn until it stops: what ``patentclf serve`` does."""

from __future__ import annotations

from patentclf.service.config import ServiceConfig

EXIT_CANNOT_SERVE = 3  # the model failed to load, or the service broke while running: a supervisor restarts it


class CannotServe(RuntimeError):
    """The service cannot start or had to stop; the message says why in one line."""


def check_config(config: ServiceConfig) -> None:
    """Refuse, in one line, a model folder that is no bundle and a database URL patentclf cannot use,
    before uvicorn starts (inside it they would be tracebacks)."""
    from patentclf.model.base import ModelError
    from patentclf.model.bundle import default_model_dir, read_info

    try:
        read_info(config.model or default_model_dir())
    except ModelError as exc:
        raise CannotServe(str(exc)) from None
    if config.tags:
        from patentclf.inference.tags import TagSetError, load_tag_sets
        from patentclf.model.bundle import model_digest

        try:  # a missing folder or another model's tag set: one line, before the model loads
            load_tag_sets(config.tags, model_digest=model_digest(config.model or default_model_dir()))
        except TagSetError as exc:
            raise CannotServe(f"tags: {exc}") from None
    if config.database_url:
        from sqlalchemy.exc import ArgumentError

        from patentclf.store.database import StoreError, database_url

        try:
            database_url(config.database_url.get_secret_value())
        except (StoreError, ArgumentError) as exc:
            raise CannotServe(f"database_url: {exc}") from None


def run_service(config: ServiceConfig) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM: a graceful shutdown); :func:`check_config` first. Raises
    :class:`CannotServe` when the model cannot be loaded, the service breaks or uvicorn could not start
    (e.g. the port is taken)."""
    import uvicorn

    from patentclf.service.app import create_app

    server: uvicorn.Server | None = None

    def stop(reason: str) -> None:  # the service cannot serve: shut down gracefully, then say why
        server.should_exit = True

    application = create_app(config, on_fatal=stop)
    # uvicorn's access log is off: the service writes its own JSON line per request.
    server = uvicorn.Server(uvicorn.Config(application, host=config.host, port=config.port, access_log=False, log_level="info"))
    server.run()
    runtime = getattr(application.state, "runtime", None)
    if runtime is not None and runtime.fatal_error:
        raise CannotServe(runtime.fatal_error)
    if not server.started:
        raise CannotServe("the server did not start (uvicorn logged why above, e.g. the port is taken)")
