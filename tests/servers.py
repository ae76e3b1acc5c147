"""Real servers on loopback for the tests and the benchmarks (``bench/`` imports ``tests.servers``).

* ``LiveServer``: ``patentclf serve`` with a bundle, its options in a config file;
* ``UiServer``: the Streamlit UI through ``patentclf ui``;
* ``run_api`` / ``run_ui``: the two as the UI tests use them (an API key, files in one folder);
* ``silent_server``, ``canned_server``, ``json_api``: tiny HTTP servers that misbehave on purpose.

Each child process runs in its own session on a free port and is stopped with everything it started;
every wait polls with a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

API_KEY = "ui-test-key"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A server run as a child process on ``self.port``: ``with Server(...) as server: httpx.get(server.url)``.

    A subclass gives ``command()`` and ``ready_path`` (a path that answers 200 once it serves). ``env``
    adds environment variables; the output goes to ``log_path``. The child runs in its own session, so
    that stopping it also stops what it started (``patentclf ui`` starts Streamlit).
    """

    ready_path = "/"

    def __init__(self, *, env: dict[str, str] | None = None, log_path: str | Path | None = None):
        self.env = env or {}
        self.workdir = Path(tempfile.mkdtemp(prefix="patentclf-live-"))
        self.log_path = Path(log_path) if log_path else self.workdir / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 300) -> "ServerProcess":
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.command(), env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"{self.url} was not ready within {timeout:.0f} s:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict]:
        """The server's JSON log lines (other lines, such as uvicorn's own, are skipped)."""
        records = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        return records

    def stop(self, timeout: float = 30) -> None:
        """A graceful stop (SIGTERM, as Ctrl-C or a process manager would), SIGKILL if it lingers."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log and not log.closed:
            log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LiveServer(ServerProcess):
    """``with LiveServer(model, feedback_db=..., queue_size=2) as server: httpx.get(server.url + "/ready")``.

    Options are written to a JSON config file (the ``--config`` path); ``env`` adds environment
    variables (e.g. ``PATENTCLF_API_KEY``), which take precedence over the file.
    """

    ready_path = "/ready"
    entry = ["-m", "patentclf.cli"]  # what the Python interpreter runs with the ``serve ...`` arguments

    def __init__(self, model: str | Path, *, env: dict[str, str] | None = None, log_path: str | Path | None = None, **options):
        super().__init__(env=env, log_path=log_path)
        self.model = Path(model)
        self.options = {"precision": "fp32", **options}

    @property
    def feedback_db(self) -> Path | None:
        return Path(self.options["feedback_db"]) if "feedback_db" in self.options else None

    def command(self) -> list[str]:
        config = self.workdir / "service.json"
        config.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in self.options.items()}))
        serve = ["serve", "--model", str(self.model), "--host", "127.0.0.1", "--port", str(self.port), "--config", str(config)]
        return [sys.executable, *self.entry, *serve]

    def stats(self) -> dict:
        return httpx.get(self.url + "/stats", timeout=10).json()


class UiServer(ServerProcess):
    """The Streamlit UI through the real CLI (``patentclf ui``), headless, talking to ``api_url``."""

    ready_path = "/_stcore/health"

    def __init__(self, api_url: str, *, env: dict[str, str] | None = None, log_path: str | Path | None = None):
        super().__init__(env=env, log_path=log_path)
        self.api_url = api_url

    def command(self) -> list[str]:
        return [str(BIN / "patentclf"), "ui", "--api-url", self.api_url, "--port", str(self.port), "--host", "127.0.0.1"]


def run_api(bundle: Path, folder: Path, env: dict[str, str] | None = None) -> LiveServer:
    """The service as the UI tests use it (``with run_api(...) as api``): ``API_KEY``, its feedback
    database and log in ``folder``; ``env`` adds or overrides settings (``PATENTCLF_<SETTING>``)."""
    env = {"PATENTCLF_API_KEY": API_KEY, **(env or {})}
    # A short flush interval: the predictions log reaches /stats quickly.
    return LiveServer(bundle, env=env, log_path=folder / "api.log", feedback_db=folder / "feedback.db", log_flush_s=0.2)


@contextmanager
def run_ui(api_url: str, folder: Path, timeout: float = 90) -> Iterator[str]:
    """The UI on a free port, its log in ``folder``; yields its URL."""
    server = UiServer(api_url, env={"PATENTCLF_API_KEY": API_KEY}, log_path=folder / "ui.log").start(timeout)
    try:
        yield server.url
    finally:
        server.stop()


# -- servers that misbehave on purpose ------------------------------------------------------------


@contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog does) but never answers: a hung API."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@contextmanager
def _serve(answer) -> Iterator[str]:
    """A threaded HTTP server on a free port whose every GET and POST is ``answer(path) -> (status,
    headers, body)``; yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, body = answer(self.path.split("?")[0])
            self.send_response(status)
            for name, value in headers.items():
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


def canned_server(status: int, body: bytes, headers: dict[str, str] | None = None):
    """Answers every request with the same status, body and headers (e.g. a 503 with Retry-After)."""
    return _serve(lambda path: (status, headers or {}, body))


def json_api(answers: dict[str, object]):
    """Answers each path in ``answers`` (any method) with 200 and that JSON; other paths 404. It stands
    in for an API whose model has heads the tests cannot train yet (e.g. CPC classes)."""

    def answer(path: str) -> tuple[int, dict[str, str], bytes]:
        found = path in answers
        return (
            (200 if found else 404),
            {"Content-Type": "application/json"},
            json_body(answers[path] if found else {"detail": "Not Found"}),
        )

    return _serve(answer)


def json_body(value: object) -> bytes:
    return json.dumps(value).encode()
