"""`make serve` tells a new user the API key it made up, so the README's feedback calls work and the
UI's review queue opens with it."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(
    shutil.which("make") is None or not (ROOT / ".venv" / ".installed").is_file(), reason="needs make and the repo's .venv"
)
def test_make_serve_prints_the_api_key_of_the_run():
    drop = ("PATENTCLF_API_KEY", "PATENTCLF_REVIEWERS", "MAKEFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    api_port = free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "serve", f"API_PORT={api_port}", f"UI_PORT={free_port()}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # one process group: make, the API and the UI stop together
    )
    try:
        deadline, line = time.monotonic() + 60, ""
        while time.monotonic() < deadline and "API key" not in line:
            line = process.stdout.readline()
        key = line.strip().rsplit(" ", 1)[-1]
        assert "API key for this run" in line and len(key) == 32 and int(key, 16) >= 0, line
        # The printed key is a reviewer's: the review queue answers it once the model is loaded.
        url, deadline = f"http://127.0.0.1:{api_port}", time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        queue = httpx.get(url + "/feedback/queue", headers={"X-API-Key": key}, timeout=30)
        assert queue.status_code == 200, queue.text
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
