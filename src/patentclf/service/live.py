"""Run ``patentclf serve`` as a child process on a free loopback port: for tests and the load benchmark."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``with LiveServer(model, feedback_db=..., queue_size=2) as server: httpx.get(server.url + "/ready")``.

    Options are written to a JSON config file (the ``--config`` path); ``env`` adds environment
    variables (e.g. ``PATENTCLF_API_KEY``). The server's stderr (its JSON log lines) goes to ``log_path``.
    """

    def __init__(self, model: str | Path, *, env: dict[str, str] | None = None, log_path: str | Path | None = None, **options):
        self.model = Path(model)
        self.options = {"precision": "fp32", **options}
        self.env = env or {}
        self.workdir = Path(tempfile.mkdtemp(prefix="patentclf-live-"))
        self.log_path = Path(log_path) if log_path else self.workdir / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> "LiveServer":
        config = self.workdir / "service.json"
        config.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in self.options.items()}))
        command = [
            sys.executable,
            "-m",
            "patentclf.cli",
            "serve",
            "--model",
            str(self.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--config",
            str(config),
        ]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **self.env}
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(command, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"the server was not ready within {timeout} s:\n{self.log_text()[-3000:]}")

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
        """A graceful stop (SIGTERM, as Ctrl-C or a process manager would)."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log and not log.closed:
            log.close()

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
