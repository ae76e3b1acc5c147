"""Commands that run the service and its web UI: serve, ui."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from patentclf.cli.common import console, err, fail, settings_flags
from patentclf.service.config import ServiceConfig  # light (pydantic-settings): the serve flags are built from it
from patentclf.service.server import EXIT_CANNOT_SERVE  # light: the run's imports are inside run_service


def ui(
    api_url: str = typer.Option("http://localhost:9000", envvar="PATENTCLF_API_URL", help="the patentclf API the UI talks to"),
    port: int = typer.Option(8501, help="port of the web UI"),
    host: str = typer.Option("localhost", help="address the web UI listens on (0.0.0.0: all interfaces)"),
) -> None:
    """Start the Streamlit web UI against a running API (start that with `patentclf serve`)."""
    from patentclf.ui import run_ui

    console.print(f"web UI on http://{host}:{port} talking to the API at {api_url}")
    raise typer.Exit(code=run_ui(api_url, port, host))


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
    from pydantic import ValidationError

    from patentclf.service.server import CannotServe, check_config, run_service

    try:
        config = ServiceConfig.load(config_file, **flags)
        check_config(config)  # a wrong --model or database URL: one line and status 2, before uvicorn starts
    except (ValidationError, ValueError, OSError) as exc:
        fail(f"service configuration: {exc}")
    except CannotServe as exc:
        fail(str(exc))
    from patentclf.store.database import describe_target

    database = config.database_url.get_secret_value() if config.database_url else config.feedback_db
    console.print(f"feedback and the predictions log: {describe_target(database)}")
    try:
        run_service(config)
    except CannotServe as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(code=EXIT_CANNOT_SERVE) from None
