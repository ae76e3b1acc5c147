"""A local Ray head on loopback for tests and benchmarks: ``with RayHead(num_cpus=4) as address: ...``.

Started with ``ray start --head --block`` as a child process, so stopping it stops only this cluster
(never ``ray stop``, which stops every Ray on the machine). Every agent port is fixed up front: with
dynamic ports the raylet waits for its agents to report theirs, and on a busy 2-core machine that
wait outlasts ``ray.init``'s 30-second start-up limit. The cluster has its own token, in its own
temporary folder, which this process and its children get through the environment. Everything
stays on loopback: see ``LOOPBACK_ONLY``, which tests/conftest.py sets before anything imports Ray.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .servers import free_port

# Ray names a node by the machine's network address even when told 127.0.0.1 (it resolves loopback
# to "a remotely reachable IP"), and drivers then connect to that address. With this variable at 0
# (meant for Windows and macOS, where multi-node clusters are off by default) it keeps 127.0.0.1:
# a one-node cluster, all of its traffic on loopback. Ray reads it once, when it is imported.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _check_loopback() -> None:
    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None and constants.ENABLE_RAY_CLUSTER:
        raise RuntimeError(f"Ray was imported before {LOOPBACK_ONLY}=0 was set: it would leave loopback (see tests/conftest.py)")


def _reload_auth() -> None:
    """A Ray imported in this process has cached its authentication settings: read them again."""
    if "ray._raylet" in sys.modules:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies waiting to be reaped do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)": state ppid pgrp ...
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _stop_with_parent() -> None:
    """In the child before exec: Linux sends it SIGTERM when this process dies, even by SIGKILL, so a
    killed test run leaves no cluster behind (`ray start --block` stops its processes on SIGTERM)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class RayHead:
    def __init__(self, num_cpus: int, pythonpath: str | None = None, timeout: float = 600):
        self.num_cpus, self.pythonpath, self.timeout = num_cpus, pythonpath, timeout
        self.saved_env: dict[str, str | None] = {}

    def __enter__(self) -> str:
        self.temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths stay under 108 bytes
        token = Path(self.temp) / "token"
        token.write_text(secrets.token_hex(32))
        env = {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0",
            LOOPBACK_ONLY: "0",
        }
        if self.pythonpath:  # workers import this checkout, whatever their current folder
            env["PYTHONPATH"] = os.pathsep.join(p for p in (self.pythonpath, os.environ.get("PYTHONPATH")) if p)
        for key, value in env.items():
            self.saved_env[key] = os.environ.get(key)
            os.environ[key] = value
        _check_loopback()
        _reload_auth()
        for attempt in range(3):
            failure = self._start()
            if failure is None:
                return self.address
            # It stopped at once, e.g. a port picked free was taken by another program before Ray bound
            # it (other tests start servers too): new ports, again. A head that hangs is not retried.
            if self.process.poll() is None or attempt == 2:
                self.__exit__(None, None, None)
                raise RuntimeError(f"ray start failed:\n{failure}")
            self._stop()
        raise AssertionError("unreachable")

    def _start(self) -> str | None:
        """Start the head; None once it runs, else the end of its log."""
        port = free_port()
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
            str(free_port()),
            "--dashboard-agent-listen-port",
            str(free_port()),
            "--runtime-env-agent-port",
            str(free_port()),
            "--metrics-export-port",
            str(free_port()),
        ]
        self.log = open(Path(self.temp) / "head.log", "w+")
        self.process = subprocess.Popen(
            command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_stop_with_parent
        )
        deadline = time.monotonic() + self.timeout
        while "Ray runtime started" not in Path(self.log.name).read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                return Path(self.log.name).read_text()[-3000:] or f"exit status {self.process.poll()}"
            time.sleep(0.5)
        return None

    def __exit__(self, *exc) -> None:
        self._stop()
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _reload_auth()
        shutil.rmtree(self.temp, ignore_errors=True)

    def _stop(self) -> None:
        # Its session (start_new_session) holds only this cluster's processes: SIGTERM to all of them at
        # once, as `ray stop` does, then SIGKILL to whatever is left after a few seconds (the raylet
        # takes 10 s or more to go gracefully on a busy machine, and this cluster has nothing to keep).
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and _group_alive(self.process.pid):
                self.process.poll()
                time.sleep(0.2)
        self.process.wait()
        self.log.close()
