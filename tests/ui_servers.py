"""Real servers on loopback for the UI tests: the patentclf API (uvicorn subprocess with a bundle),
the Streamlit UI (``patentclf ui`` subprocess), and two tiny misbehaving HTTP servers (silent, busy).

Every wait polls with a deadline; every subprocess runs in its own session and is stopped with it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

API_KEY = "ui-test-key"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    """Poll ``url`` until it answers 200; fail early, with the log, if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process's session (a CLI and the server it started), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@dataclass
class LiveApi:
    url: str
    feedback_db: Path

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/stats", timeout=10).json()


@contextmanager
def run_api(bundle: Path, folder: Path, timeout: float = 180, env: dict[str, str] | None = None) -> Iterator[LiveApi]:
    """The real service (``uvicorn --factory patentclf.service.app:create_app``) on a free port;
    ``env`` adds or overrides service settings (``PATENTCLF_<SETTING>``)."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "feedback.db"
    env = {
        **os.environ,
        "PATENTCLF_MODEL": str(bundle),
        "PATENTCLF_API_KEY": API_KEY,
        "PATENTCLF_FEEDBACK_DB": str(db),
        "PATENTCLF_PRECISION": "fp32",
        "PATENTCLF_LOG_FLUSH_S": "0.2",  # the predictions log reaches /stats quickly
        **(env or {}),
    }
    log = folder / "api.log"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "patentclf.service.app:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/ready", process, log, timeout)
        yield LiveApi(url=url, feedback_db=db)
    finally:
        stop(process)


@contextmanager
def run_ui(api_url: str, folder: Path, timeout: float = 90) -> Iterator[str]:
    """The Streamlit UI through the real CLI (``patentclf ui``), headless, on a free port."""
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PATENTCLF_API_KEY": API_KEY}
    log = folder / "ui.log"
    command = [str(BIN / "patentclf"), "ui", "--api-url", api_url, "--port", str(port), "--host", "127.0.0.1"]
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/_stcore/health", process, log, timeout)
        yield url
    finally:
        stop(process)


# -- servers that misbehave on purpose ------------------------------------------------------------


@contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog does) but never answers: a hung API."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@contextmanager
def canned_server(status: int, body: bytes, headers: dict[str, str] | None = None) -> Iterator[str]:
    """Answers every request with the same status, body and headers (e.g. a 503 with Retry-After)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def json_api(answers: dict[str, object]) -> Iterator[str]:
    """Answers each path in ``answers`` (any method) with 200 and that JSON; other paths 404. It stands
    in for an API whose model has heads the tests cannot train yet (e.g. CPC classes)."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = self.path.split("?")[0]
            found = path in answers
            body = json_body(answers[path] if found else {"detail": "Not Found"})
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def json_body(value: object) -> bytes:
    return json.dumps(value).encode()
