"""The Streamlit web UI. It talks to the patentclf API over HTTP only and never loads the model.

Start it with ``patentclf ui --api-url http://localhost:9000`` (or ``streamlit run`` on :func:`app_path`).
"""

from __future__ import annotations

from pathlib import Path


def app_path() -> Path:
    """The Streamlit entry script; its ``pages/`` folder holds the other pages."""
    return Path(__file__).with_name("app.py")
