"""Commands that run the service and its web UI: serve, ui."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from patentclf.cli.common import console, err, fail, settings_flags
from patentclf.service.config import ServiceConfig  # light (pydantic-settings): the serve flags are built from it


def ui(
    api_url: str = typer.Option("http://localhost:9000", envvar="PATENTCLF_API_URL", help="the patentclf API the UI talks to"),
    port: int = typer.Option(8501, help="port of the web UI"),
    host: str = typer.Option("localhost", help="address the web UI listens on (0.0.0.0: all interfaces)"),
) -> None:
    """Start the Streamlit web UI against a running API (start that with `patentclf serve`)."""
    import os
    import subprocess

    from patentclf.ui import app_path

    # The UI reads its settings from its environment; PATENTCLF_API_KEY, if set, passes through
    # to the Streamlit process and stays server-side.
    env = {**os.environ, "PATENTCLF_API_URL": api_url}
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path()),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",  # no e-mail prompt, no browser opened on a server
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
    ]
    console.print(f"web UI on http://{host}:{port} talking to the API at {api_url}")
    process = subprocess.Popen(command, env=env)
    try:
        code = process.wait()
    except KeyboardInterrupt:  # Ctrl-C reached Streamlit too: let it shut down cleanly
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            code = 130
    raise typer.Exit(code=code)


EXIT_CANNOT_SERVE = 3  # serve: the model failed to load, or the service broke while running


@settings_flags(ServiceConfig)
def serve(
    config_file: Optional[Path] = typer.Option(
        None, "--config", help="YAML/JSON file of service settings (keys: the setting names); env and flags override it"
    ),
    **flags,
) -> None:
    """Serve the model over HTTP (FastAPI + uvicorn); API docs at /docs.

    Each setting: its default < the --config file < the environment < its flag.

    Exits with status 3 when the model cannot be loaded or the service breaks, so that a supervisor restarts it.
    """
    import uvicorn
    from pydantic import ValidationError

    from patentclf.service import create_app

    try:
        config = ServiceConfig.load(config_file, **flags)
    except (ValidationError, ValueError, OSError) as exc:
        fail(f"service configuration: {exc}")
    from patentclf.model.base import ModelError
    from patentclf.model.bundle import default_model_dir, read_info

    try:  # a wrong --model fails here with one line, not a traceback from inside uvicorn
        read_info(config.model or default_model_dir())
    except ModelError as exc:
        fail(str(exc))
    if config.database_url:
        from sqlalchemy.exc import ArgumentError

        from patentclf.store.database import StoreError, database_url

        try:  # the same for a URL that names no database patentclf can use
            database_url(config.database_url.get_secret_value())
        except (StoreError, ArgumentError) as exc:
            fail(f"database_url: {exc}")
    server: uvicorn.Server | None = None

    def stop(reason: str) -> None:  # the service cannot serve: shut down gracefully, then exit non-zero
        server.should_exit = True

    application = create_app(config, on_fatal=stop)
    # uvicorn's access log is off: the service writes its own JSON line per request.
    server = uvicorn.Server(uvicorn.Config(application, host=config.host, port=config.port, access_log=False, log_level="info"))
    server.run()
    runtime = getattr(application.state, "runtime", None)
    if runtime is not None and runtime.fatal_error:
        err.print(f"[bold red]error:[/] {runtime.fatal_error}")
        raise typer.Exit(code=EXIT_CANNOT_SERVE)
    if not server.started:
        raise typer.Exit(code=EXIT_CANNOT_SERVE)  # e.g. the port is taken (uvicorn logged why)
