"""The micro-batcher on its own, with a real (plain Python) predict function: coalescing, order, bounds."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from patentclf.service.batching import MicroBatcher, QueueFull, WorkerDied


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


def test_a_small_request_is_served_between_the_calls_of_a_large_one():
    recorder = Recorder(delay=0.02)

    async def scenario():
        batcher = MicroBatcher(recorder, max_queue=10, max_batch_texts=4, max_wait_s=0)
        batcher.start()
        try:
            big = asyncio.ensure_future(batcher.submit([f"big {i}" for i in range(40)]))
            while not recorder.calls:  # the large request is being served
                await asyncio.sleep(0.001)
            small = await batcher.submit(["small"])
            return small, big.done(), await big
        finally:
            await batcher.stop()

    small, big_was_done, big = run(scenario())
    assert small == ["SMALL"] and big == [f"BIG {i}" for i in range(40)]
    assert not big_was_done  # the small one was answered while the large one still ran
    assert all(len(call) <= 4 for call in recorder.calls)
    small_call = next(i for i, call in enumerate(recorder.calls) if "small" in call)
    assert small_call <= 2  # behind the running call at most, not behind all ten of the large one


def test_switched_off_a_large_request_takes_turns_too():
    recorder = Recorder(delay=0.02)

    async def scenario():
        batcher = MicroBatcher(recorder, max_queue=10, max_batch_texts=4, max_wait_s=0, enabled=False)
        batcher.start()
        try:
            big = asyncio.ensure_future(batcher.submit([f"big {i}" for i in range(20)]))
            while not recorder.calls:
                await asyncio.sleep(0.001)
            assert await batcher.submit(["small"]) == ["SMALL"]
            return await big
        finally:
            await batcher.stop()

    assert run(scenario()) == [f"BIG {i}" for i in range(20)]
    assert ["small"] in recorder.calls[:3]  # a call of its own (no coalescing), early
    assert all(len(call) <= 4 and (call == ["small"] or all(t.startswith("big") for t in call)) for call in recorder.calls)


def test_one_bad_input_fails_only_its_own_request():
    def predict(texts):
        if "poison" in texts:
            raise ValueError("cannot read this text")
        return [t.upper() for t in texts]

    async def scenario():
        batcher = MicroBatcher(predict, max_queue=10, max_batch_texts=8, max_wait_s=0.2)
        batcher.start()
        try:
            return await asyncio.gather(
                batcher.submit(["fine"]), batcher.submit(["poison"]), batcher.submit(["also fine"]), return_exceptions=True
            )
        finally:
            await batcher.stop()

    good, bad, also_good = run(scenario())
    assert good == ["FINE"] and also_good == ["ALSO FINE"]
    assert isinstance(bad, ValueError)


def test_a_caller_that_went_away_is_not_served():
    recorder = Recorder(delay=0.05)

    async def scenario():
        batcher = MicroBatcher(recorder, max_queue=10, max_batch_texts=2, max_wait_s=0)
        batcher.start()
        try:
            gone = asyncio.ensure_future(batcher.submit([f"gone {i}" for i in range(20)]))
            while not recorder.calls:
                await asyncio.sleep(0.001)
            gone.cancel()  # a client that disconnected, or a request past its deadline
            return await batcher.submit(["stays"])
        finally:
            await batcher.stop()

    assert run(scenario()) == ["STAYS"]
    assert sum(t.startswith("gone") for call in recorder.calls for t in call) <= 4  # the call running, at most one more


def test_a_dead_worker_fails_every_waiting_request_and_says_so():
    deaths = []

    def broken_metrics(texts, seconds):  # a bug outside the model call ends the worker
        raise KeyError("metrics bug")

    async def scenario():
        batcher = MicroBatcher(
            Recorder(delay=0.05), max_queue=10, max_batch_texts=1, max_wait_s=0, on_batch=broken_metrics, on_death=deaths.append
        )
        batcher.start()
        try:
            answers = await asyncio.wait_for(
                asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(3)), return_exceptions=True), 10
            )
            with pytest.raises(WorkerDied):
                await batcher.submit(["later"])
            return answers
        finally:
            await batcher.stop()

    answers = run(scenario())
    # The first text was answered as its call handed it over, before the bug; the others fail, none hangs.
    assert answers[0] == ["T0"]
    assert all(isinstance(a, WorkerDied) for a in answers[1:])
    assert len(deaths) == 1 and "KeyError" in deaths[0]


def test_a_short_text_sharing_a_call_with_long_ones_is_answered_when_its_own_texts_are(tiny_bundle):
    """A one-liner sent while a batch of long texts runs shares the batch's next model call; the
    classifier runs that call as length-sorted sub-batches, so the one-liner's answer is handed over
    after the first of them, not when the whole call (or the batch) ends."""
    from patentclf.inference.classifier import Classifier

    classifier = Classifier.load(tiny_bundle, precision="fp32")
    long_text = " ".join(f"turbine valve engine pump {i}" for i in range(40))
    finished: dict[str, float] = {}
    calls: list[int] = []
    ended: dict[str, float] = {}  # when the call that held the one-liner ended

    def parts(texts):
        calls.append(len(texts))
        # Two texts per sub-batch, so a call of 16 hands over its texts in eight parts.
        yield from classifier.iter_predictions(texts, batch_size=2)
        if "a polymer" in texts:
            ended["one's call"] = time.monotonic()  # the clock of asyncio's loop.time()

    async def scenario():
        loop = asyncio.get_running_loop()
        batcher = MicroBatcher(parts, streams=True, max_queue=10, max_batch_texts=16, max_wait_s=0.0)
        batcher.start()

        async def timed(name, texts):
            result = await batcher.submit(texts)
            finished[name] = loop.time()
            return result

        try:
            batch = asyncio.create_task(timed("batch", [long_text] * 48))
            while not calls:  # the batch's first call is running
                await asyncio.sleep(0.001)
            one = await timed("one", ["a polymer"])
            return one, await batch
        finally:
            await batcher.stop()

    one, batch = run(scenario())
    assert one[0].label == classifier.predict(["a polymer"])[0].label
    for got, expected in zip(batch, classifier.predict([long_text] * 48)):
        assert got.probabilities == pytest.approx(expected.probabilities, abs=1e-6)
    assert len(calls) >= 3 and max(calls) == 16
    # Answered while its call still ran the long texts, not when the call (15 long texts) ended.
    assert finished["one"] < ended["one's call"] < finished["batch"]
