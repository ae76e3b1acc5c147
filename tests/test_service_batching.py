"""The micro-batcher on its own, with a real (plain Python) predict function: coalescing, order, bounds."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from patentclf.service.batching import MicroBatcher, QueueFull


class Recorder:
    """predict(texts) -> their upper-case forms; remembers each call and the thread it ran on."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.delay = delay

    def __call__(self, texts: list[str]) -> list[str]:
        self.calls.append(list(texts))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        return [t.upper() for t in texts]


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_model_calls_and_get_their_own_answers():
    recorder = Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_queue=100, max_batch_texts=8, max_wait_s=0.2)
        batcher.start()
        try:
            texts = [[f"text {i}"] if i % 3 else [f"text {i}a", f"text {i}b"] for i in range(20)]
            answers = await asyncio.gather(*(batcher.submit(t) for t in texts))
        finally:
            await batcher.stop()
        return texts, answers

    texts, answers = run(scenario())
    assert answers == [[t.upper() for t in group] for group in texts]
    assert all(len(call) <= 8 for call in recorder.calls)
    assert len(recorder.calls) < 20  # coalesced: fewer model calls than requests
    assert recorder.threads and threading.main_thread().name not in recorder.threads  # off the event loop


def test_switched_off_it_calls_the_model_once_per_request_in_order():
    recorder = Recorder()

    async def scenario():
        batcher = MicroBatcher(recorder, max_queue=100, max_batch_texts=8, max_wait_s=0.2, enabled=False)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(6)))
        finally:
            await batcher.stop()

    assert run(scenario()) == [[f"T{i}"] for i in range(6)]
    assert recorder.calls == [[f"t{i}"] for i in range(6)]


def test_a_full_queue_refuses_at_once():
    recorder = Recorder()

    async def scenario():
        # A long wait and a large batch: queued requests stay queued, so the queue really fills.
        batcher = MicroBatcher(recorder, max_queue=2, max_batch_texts=64, max_wait_s=1.0)
        batcher.start()
        try:
            waiting = [asyncio.ensure_future(batcher.submit([f"t{i}"])) for i in range(2)]
            await asyncio.sleep(0.05)
            assert batcher.depth == 2
            with pytest.raises(QueueFull):
                await batcher.submit(["one too many"])
            return await asyncio.gather(*waiting)
        finally:
            await batcher.stop()

    assert run(scenario()) == [["T0"], ["T1"]]
    assert recorder.calls == [["t0", "t1"]]


def test_a_failing_model_call_fails_its_requests_and_the_worker_goes_on():
    def predict(texts):
        if "bad" in texts:
            raise RuntimeError("model failure")
        return texts

    async def scenario():
        batcher = MicroBatcher(predict, max_queue=10, max_batch_texts=4, max_wait_s=0, enabled=False)
        batcher.start()
        try:
            with pytest.raises(RuntimeError, match="model failure"):
                await batcher.submit(["bad"])
            return await batcher.submit(["good"])
        finally:
            await batcher.stop()

    assert run(scenario()) == ["good"]
