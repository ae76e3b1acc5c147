"""The Streamlit web UI. It talks to the patentclf API over HTTP only and never loads the model.

Start it with ``patentclf ui --api-url http://localhost:9000`` (or ``streamlit run`` on :func:`app_path`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def app_path() -> Path:
    """The Streamlit entry script; its ``pages/`` folder holds the other pages."""
    return Path(__file__).with_name("app.py")


def run_ui(api_url: str, port: int = 8501, host: str = "localhost") -> int:
    """Run the UI under Streamlit until it stops; its exit status. The UI reads its settings from its
    environment: ``PATENTCLF_API_KEY``, if set, passes through to the Streamlit process and stays server-side."""
    command = [sys.executable, "-m", "streamlit", "run", str(app_path()), "--server.port", str(port)]
    command += ["--server.address", host, "--server.headless", "true"]  # headless: no e-mail prompt, no browser opened
    command += ["--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal"]
    process = subprocess.Popen(command, env={**os.environ, "PATENTCLF_API_URL": api_url})
    try:
        return process.wait()
    except KeyboardInterrupt:  # Ctrl-C reached Streamlit too: let it shut down cleanly
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return 130
