"""A local Ray head on loopback for tests and benchmarks: ``with RayHead(num_cpus=4) as address: ...``.

Started with ``ray start --head --block`` as a child process, so stopping it stops only this cluster
(never ``ray stop``, which stops every Ray on the machine). Every agent port is fixed up front: with
dynamic ports the raylet waits for its agents to report theirs, and on a busy 2-core machine that
wait outlasts ``ray.init``'s 30-second start-up limit. The cluster has its own token, in its own
temporary folder, which this process and its children get through the environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    def __init__(self, num_cpus: int, pythonpath: str | None = None, timeout: float = 600):
        self.num_cpus, self.pythonpath, self.timeout = num_cpus, pythonpath, timeout
        self.saved_env: dict[str, str | None] = {}

    def __enter__(self) -> str:
        self.temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths stay under 108 bytes
        token = Path(self.temp) / "token"
        token.write_text(secrets.token_hex(32))
        env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
        if self.pythonpath:  # workers import this checkout, whatever their current folder
            env["PYTHONPATH"] = os.pathsep.join(p for p in (self.pythonpath, os.environ.get("PYTHONPATH")) if p)
        for key, value in env.items():
            self.saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        ray = str(Path(sys.executable).with_name("ray"))
        command = [
            ray,
            "start",
            "--head",
            "--block",
            "--port",
            str(port),
            "--node-ip-address",
            "127.0.0.1",
            "--num-cpus",
            str(self.num_cpus),
            "--include-dashboard",
            "false",
            "--temp-dir",
            self.temp,
            "--dashboard-agent-grpc-port",
            str(_free_port()),
            "--dashboard-agent-listen-port",
            str(_free_port()),
            "--runtime-env-agent-port",
            str(_free_port()),
            "--metrics-export-port",
            str(_free_port()),
        ]
        self.log = open(Path(self.temp) / "head.log", "w+")
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while "Ray runtime started" not in Path(self.log.name).read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"ray start failed:\n{Path(self.log.name).read_text()[-3000:]}")
            time.sleep(0.5)
        return self.address

    def __exit__(self, *exc) -> None:
        # `ray start --block` stops the processes it started when it gets SIGTERM; its session
        # (start_new_session) holds only those, so anything left is ended with it.
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self.log.close()
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.temp, ignore_errors=True)
