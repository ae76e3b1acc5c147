"""The service under abuse and faults, against real servers on loopback: fairness between large and
small requests, the body limit while reading, the request deadline, and what happens when the
service cannot serve (it says so on /ready and exits non-zero for a supervisor to restart it)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from patentclf.service import ServiceConfig, create_app

from .conftest import FILLER, TOY_WORDS
from .servers import LiveServer, free_port

API_KEY = "hardening-key"


def metric(url: str, name: str) -> float:
    """The sum of a metric's samples named ``name`` (all label values)."""
    families = text_string_to_metric_families(httpx.get(url + "/metrics", timeout=30).text)
    return sum(s.value for f in families for s in f.samples if s.name == name)


def long_text(seed: int, words: int) -> str:
    vocabulary = FILLER + TOY_WORDS["G"]
    return " ".join(vocabulary[(seed * 7 + i * 13) % len(vocabulary)] for i in range(words))


# --- head-of-line blocking ----------------------------------------------------------------------


def test_a_small_request_is_answered_while_a_large_batch_is_still_running(tiny_bundle, tmp_path):
    # Chunk mode and long texts make the large batch slow; two texts per model call make it many calls.
    options = dict(feedback_db=tmp_path / "fb.db", long_text="chunk", micro_batch_size=2, max_batch=64, request_timeout_s=600)
    big = [long_text(i, 3000) for i in range(64)]
    with LiveServer(tiny_bundle, **options) as live:

        async def scenario():
            async with httpx.AsyncClient(base_url=live.url, timeout=600) as client:
                large = asyncio.ensure_future(client.post("/predict/batch", json={"texts": big}))
                # Wait until the large batch is being served: its first model call has finished.
                while await asyncio.to_thread(metric, live.url, "patentclf_batch_texts_count") < 1:
                    assert not large.done(), "the large batch was served in one piece"
                    await asyncio.sleep(0.05)
                small = await client.post("/predict", json={"text": "an optical sensor"})
                large_done_first = large.done()
                return small, large_done_first, await large

        small, large_done_first, large = asyncio.run(scenario())
    assert small.status_code == 200 and small.json()["label"] == "G"
    assert not large_done_first  # answered between the large batch's model calls, not after all of them
    assert large.status_code == 200 and len(large.json()["predictions"]) == 64


# --- body size ----------------------------------------------------------------------------------

LIMITS = dict(max_text_chars=2000, max_batch=8)
BODY_LIMIT = 8 * 2000 * 6 + 64 * 1024  # app.py's _body_limit for these settings


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("hardening") / "feedback.db"
    with LiveServer(
        tiny_bundle, env={"PATENTCLF_API_KEY": API_KEY}, feedback_db=db, request_timeout_s=3, retry_after_s=2, **LIMITS
    ) as live:
        yield live


def raw_request(url: str, head: bytes, body_parts: list[bytes], timeout: float = 30) -> bytes:
    """Send a request's head and body pieces on one socket, then read what the server answers."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            sock.sendall(part)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer


def test_a_body_over_the_byte_limit_is_refused_even_when_its_text_is_fine(server):
    # The text is short: only the limit on the whole body can refuse this (extra fields are ignored).
    body = {"text": "an optical sensor", "padding": " " * BODY_LIMIT}
    response = httpx.post(server.url + "/predict", json=body, timeout=60)
    assert response.status_code == 413, response.text
    assert "detail" in response.json()
    assert httpx.post(server.url + "/predict", json={"text": "an optical sensor", "padding": "small"}).status_code == 200


def test_a_chunked_body_is_refused_as_soon_as_it_grows_over_the_limit(server):
    # No Content-Length, and the body never ends: only a limit applied while reading can answer.
    head = b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    piece = b'{"text": "' + b"x" * 16_000
    parts = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (BODY_LIMIT // len(piece) + 1)
    answer = raw_request(server.url, head, parts)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_declared_length_over_the_limit_is_refused_before_any_body(server):
    head = b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
    assert raw_request(server.url, head, []).startswith(b"HTTP/1.1 413")


# --- deadline -----------------------------------------------------------------------------------


def test_a_request_past_its_deadline_gets_503_with_retry_after(server):
    # A client that sends half its body and stalls: the server lets go at the deadline (3 s here).
    head = b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    started = time.monotonic()
    answer = raw_request(server.url, head, [b'{"text": "an optical'], timeout=60)
    assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
    assert b"retry-after: 2" in answer.lower()
    assert time.monotonic() - started < 50  # at the deadline, not at the client's own timeout
    assert httpx.post(server.url + "/predict", json={"text": "an optical sensor"}).status_code == 200
    assert metric(server.url, "patentclf_request_errors_total") >= 1


def test_a_request_queued_past_its_deadline_gets_503_and_is_dropped(tiny_bundle, tmp_path):
    # One text per model call, a half-second deadline and a large chunk-mode batch (~12,000 windows):
    # the batch cannot finish in time, and its remaining texts never reach the model.
    options = dict(
        feedback_db=tmp_path / "fb.db",
        long_text="chunk",
        micro_batch_size=1,
        max_batch=64,
        request_timeout_s=0.5,
        retry_after_s=5,
    )
    with LiveServer(tiny_bundle, **options) as live:
        texts = [long_text(i, 7000) for i in range(64)]
        response = httpx.post(live.url + "/predict/batch", json={"texts": texts}, timeout=120)
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert "deadline" in response.json()["detail"]
        time.sleep(2)  # the running model call, if any, ends
        served = metric(live.url, "patentclf_batch_texts_sum")
        assert served < 64
        time.sleep(2)
        assert metric(live.url, "patentclf_batch_texts_sum") == served  # nothing more of it is served
        assert httpx.get(live.url + "/ready").status_code == 200  # and the service goes on


# --- when the service cannot serve --------------------------------------------------------------


def test_a_model_that_fails_to_load_ends_the_process_non_zero(tiny_bundle, tmp_path):
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_bundle, broken)
    (broken / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    server = LiveServer(broken, feedback_db=tmp_path / "fb.db")
    try:
        with pytest.raises(RuntimeError, match="exited with 3:"):
            server.start()
    finally:
        server.stop()
    text = server.log_text()
    assert '"event": "model_load_failed"' in text and "the model failed to load" in text


# Starts `patentclf serve` with a fault planted where the issue found one: the metrics callback the
# batcher calls after each model call (outside its guard around the model) fails for a batch of 7 texts.
FAULTY_SERVE = """
import sys
from patentclf.store.monitoring import Metrics
from patentclf.cli import main

observe = Metrics.observe_batch
def faulty(self, texts, seconds):
    if texts == 7:
        raise RuntimeError("planted fault")
    observe(self, texts, seconds)
Metrics.observe_batch = faulty
sys.argv = ["patentclf", *sys.argv[1:]]
main()
"""


class FaultyServer(LiveServer):
    entry = ["-c", FAULTY_SERVE]


def test_a_dead_worker_ends_the_process_non_zero_and_no_request_hangs(tiny_bundle, tmp_path):
    with FaultyServer(tiny_bundle, feedback_db=tmp_path / "fb.db") as server:
        assert httpx.post(server.url + "/predict", json={"text": "an optical sensor"}, timeout=30).status_code == 200
        # The batch's texts were answered as its call handed them over; the planted fault comes after.
        response = httpx.post(server.url + "/predict/batch", json={"texts": ["an optical sensor"] * 7}, timeout=30)
        assert response.status_code == 200
        try:  # the worker is dead: the next request is refused, or the process has already gone
            later = httpx.post(server.url + "/predict", json={"text": "an optical sensor"}, timeout=30)
            assert later.status_code == 503 and "worker stopped" in later.json()["detail"]
        except httpx.TransportError:
            pass
        code = server.process.wait(timeout=60)
    text = server.log_text()
    assert code == 3, text[-3000:]
    assert '"event": "fatal"' in text and "planted fault" in text


@contextmanager
def in_process_server(app):
    """uvicorn in a thread of this process (no signal handlers there), so the app can be looked at."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(60)


def test_a_dead_worker_turns_ready_to_503_and_asks_to_stop(tiny_bundle, tmp_path, monkeypatch):
    from patentclf.store.monitoring import Metrics

    def faulty(self, texts, seconds):
        raise RuntimeError("planted fault")

    monkeypatch.setattr(Metrics, "observe_batch", faulty)
    stops = []
    app = create_app(ServiceConfig(model=tiny_bundle, feedback_db=tmp_path / "fb.db", precision="fp32"), on_fatal=stops.append)
    with in_process_server(app) as url:
        deadline = time.monotonic() + 120
        while httpx.get(url + "/ready").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        # Its text is answered as the call hands it over; the fault after the call then ends the worker.
        assert httpx.post(url + "/predict", json={"text": "an optical sensor"}, timeout=30).status_code == 200
        deadline = time.monotonic() + 30
        while (ready := httpx.get(url + "/ready")).status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.status_code == 503 and "planted fault" in ready.json()["detail"]
        later = httpx.post(url + "/predict", json={"text": "an optical sensor"}, timeout=30)
        assert later.status_code == 503 and "Retry-After" in later.headers
    assert len(stops) == 1 and "planted fault" in stops[0]


def test_recent_texts_hold_at_most_their_count_and_their_characters():
    from patentclf.service.runtime import RecentPrediction, RecentTexts

    recent = RecentTexts(capacity=3, max_chars=100)
    for i in range(5):
        recent.add(f"id{i}", RecentPrediction("x" * 10, "A", "v"))
    assert len(recent) == 3 and recent.get("id0") is None and recent.get("id4") is not None
    recent.add("long", RecentPrediction("y" * 90, "B", "v"))  # over the characters: the oldest go
    assert recent.chars <= 100 and recent.get("long") is not None and recent.get("id3") is None
    recent.add("huge", RecentPrediction("z" * 101, "C", "v"))  # longer than the whole budget: not kept
    assert recent.get("huge") is None and recent.get("long") is not None
    recent.add("long", RecentPrediction("w" * 5, "B", "v"))  # the same id again replaces, not double-counts
    assert recent.chars == 5 + 10 and len(recent) == 2
