"""Micro-batching: concurrent requests wait briefly in one bounded queue, and a single worker hands
their texts to the model together, off the event loop.

Requests stay in the queue until all their texts are handed to the model, so the queue bound covers
everything waiting for it; a request that finds it full is refused at once (:class:`QueueFull`, a
503) instead of piling up in memory.

Fairness: a model call takes at most ``max_batch_texts`` texts, shared round-robin between the
waiting requests, so a one-text request never waits behind all of a large batch, only behind the
model call already running. Within a call, each request is answered as soon as its own texts are
done (the classifier runs a call as length-sorted sub-batches and hands over each one's texts), so a
short text that shares a call with long ones does not wait for them. A request whose caller went
away (disconnected, or past its deadline) is dropped before its next texts reach the model.

The batcher never looks inside what it is given: the service hands it ``(text, options)`` pairs, so
requests with different per-request options (``PredictOptions``) share model calls on the same
round-robin terms, and each text's answer is shaped by its own request's options after the shared
forward pass (keying calls on options would split the queue and let a rare option wait alone).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("patentclf.service")


class QueueFull(Exception):
    """The queue holds its maximum number of requests."""


class BatcherClosed(Exception):
    """The service is shutting down."""


class WorkerDied(BatcherClosed):
    """The worker that feeds the model has stopped: nothing will be served until a restart."""


@dataclass(eq=False)
class _Job:
    texts: list[str]
    future: asyncio.Future
    arrived: float = 0.0
    sent: int = 0  # texts handed to the model so far
    done: int = 0  # texts with an answer
    results: list[Any] = field(default_factory=list)
    answered: list[bool] = field(default_factory=list)

    @property
    def unsent(self) -> int:
        return len(self.texts) - self.sent


# (job, start, stop): texts[start:stop] of one request, within one model call.
_Slice = tuple[_Job, int, int]
# What a model call hands over as it goes: (position in the call's texts, output) pairs.
Parts = Iterable[list[tuple[int, Any]]]


class MicroBatcher:
    """``await batcher.submit(texts)`` -> the model's outputs for ``texts``, in order.

    * ``predict(texts)``: the outputs of one call, in order; or, with ``streams=True``, an iterable of
      parts, each a list of ``(index, output)`` pairs handed over as soon as they are done (e.g.
      ``Classifier.iter_predictions``), so each request is answered when its own texts are.
    * ``enabled``: coalesce queued requests into one call of at most ``max_batch_texts`` texts,
      waiting at most ``max_wait_s`` after the oldest request arrived for others to join;
      off: each model call holds texts of one request only (the baseline the benchmark compares
      with); a request of more than ``max_batch_texts`` texts takes turns with the others.
    * ``max_queue``: requests waiting (not all their texts handed to the model yet).
    * ``on_death(reason)``: told if the worker ever stops for any reason but :meth:`stop`.
    """

    def __init__(
        self,
        predict: Callable[[list[str]], Sequence[Any] | Parts],
        *,
        streams: bool = False,
        max_queue: int,
        max_batch_texts: int,
        max_wait_s: float,
        enabled: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
        on_death: Callable[[str], None] | None = None,
    ):
        self._parts: Callable[[list[str]], Parts] = predict if streams else (lambda texts: [list(enumerate(predict(texts)))])
        self.max_queue = max_queue
        self.max_batch_texts = max_batch_texts
        self.max_wait_s = max_wait_s
        self.enabled = enabled
        self._on_batch = on_batch  # told (texts in the batch, seconds of inference)
        self._on_death = on_death
        self._queue: deque[_Job] = deque()  # requests with texts not yet handed to the model
        self._pending: set[_Job] = set()  # every request not answered yet (queued or in the running call)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # One thread: the model runs one batch at a time, and never on the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patentclf-inference")
        self._closed = False
        self.death: str | None = None  # why the worker stopped, if it did

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="patentclf-batcher")
        self._task.add_done_callback(self._worker_stopped)

    async def stop(self) -> None:
        self._closed = True
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)  # a dead worker's error is already told
        self._fail_pending(BatcherClosed("the service is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, texts: Sequence[str]) -> list[Any]:
        if self.death is not None:
            raise WorkerDied(self.death)
        if self._closed:
            raise BatcherClosed("the service is shutting down")
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"{len(self._queue)} requests are waiting for the model")
        loop = asyncio.get_running_loop()
        job = _Job(list(texts), loop.create_future(), loop.time(), results=[None] * len(texts), answered=[False] * len(texts))
        self._queue.append(job)
        self._pending.add(job)
        self._wake.set()
        # A client that goes away cancels this await, which cancels the future: the worker drops it.
        try:
            return await job.future
        finally:
            self._pending.discard(job)

    # -- the worker -------------------------------------------------------------------------------

    def _worker_stopped(self, task: asyncio.Task) -> None:
        """A worker that ends outside stop() is a bug; fail everything waiting (no request hangs) and say so."""
        if self._closed:
            return
        error = None if task.cancelled() else task.exception()
        self.death = f"the model worker stopped: {type(error).__name__}: {error}" if error else "the model worker stopped"
        log.error(self.death, exc_info=error)
        self._fail_pending(WorkerDied(self.death))
        if self._on_death:
            self._on_death(self.death)

    def _fail_pending(self, error: Exception) -> None:
        self._queue.clear()
        for job in list(self._pending):
            if not job.future.done():
                job.future.set_exception(error)
        self._pending.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            slices = await self._next_batch()
            if not slices:
                continue
            texts = [t for job, start, stop in slices for t in job.texts[start:stop]]
            started = loop.time()
            await self._call_model(slices)  # cancelled by stop(), which answers everyone
            if self._on_batch:
                self._on_batch(len(texts), loop.time() - started)

    async def _call_model(self, slices: list[_Slice]) -> None:
        """Run one call; its outputs reach their requests as they come. A model failure fails
        requests, not the worker."""
        try:
            return await self._predict_slices(slices)
        except Exception as exc:
            if len(slices) == 1:
                return self._fail(slices[0][0], exc)
        # A shared call failed: try each request on its own, so that one bad input fails only its request.
        for piece in slices:
            if piece[0].future.done():
                continue
            try:
                await self._predict_slices([piece])
            except Exception as exc:
                self._fail(piece[0], exc)

    async def _predict_slices(self, slices: list[_Slice]) -> None:
        owners = [(job, i) for job, start, stop in slices for i in range(start, stop)]
        texts = [job.texts[i] for job, i in owners]
        loop = asyncio.get_running_loop()

        def run() -> None:  # in the inference thread; each part is handed to the event loop at once
            count = 0
            for part in self._parts(texts):
                count += len(part)
                loop.call_soon_threadsafe(self._deliver, [(owners[i], output) for i, output in part])
            if count != len(texts):
                raise RuntimeError(f"the model gave {count} outputs for {len(texts)} texts")

        try:
            await loop.run_in_executor(self._executor, run)
        except Exception:
            log.exception("inference failed for a batch of %d texts", len(texts))
            raise

    def _deliver(self, items: list[tuple[tuple[_Job, int], Any]]) -> None:
        for (job, index), output in items:
            if job.future.done():  # the caller went away meanwhile
                continue
            job.results[index] = output
            if not job.answered[index]:  # a retried call may answer a text twice
                job.answered[index] = True
                job.done += 1
            if job.done == len(job.texts):
                job.future.set_result(job.results)

    def _fail(self, job: _Job, error: Exception) -> None:
        if not job.future.done():
            job.future.set_exception(error)
        if job in self._queue:
            self._queue.remove(job)

    async def _next_batch(self) -> list[_Slice]:
        self._drop_abandoned()
        if not self._queue:
            return []
        if self.enabled:
            await self._wait_for_company()
            self._drop_abandoned()
            counts = self._fair_shares()
        else:
            counts = {self._queue[0]: min(self._queue[0].unsent, self.max_batch_texts)}
        slices = []
        for job, count in counts.items():
            slices.append((job, job.sent, job.sent + count))
            job.sent += count
        # Requests with texts left go to the back, so the next call starts with someone else.
        for job in counts:
            self._queue.remove(job)
            if job.unsent:
                self._queue.append(job)
        return slices

    async def _wait_for_company(self) -> None:
        """Wait (queued requests stay counted against the bound) until a call's worth of texts is
        queued or the oldest request has waited ``max_wait_s``."""
        loop = asyncio.get_running_loop()
        deadline = min(job.arrived for job in self._queue) + self.max_wait_s
        while self._queue and sum(job.unsent for job in self._queue) < self.max_batch_texts:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                break

    def _fair_shares(self) -> dict[_Job, int]:
        """Texts per queued request for the next call: one each in queue order, round after round,
        until the call is full or every request's texts are in."""
        counts: dict[_Job, int] = {}
        budget = self.max_batch_texts
        while budget:
            grew = False
            for job in self._queue:
                if budget and counts.get(job, 0) < job.unsent:
                    counts[job] = counts.get(job, 0) + 1
                    budget -= 1
                    grew = True
            if not grew:
                break
        return counts

    def _drop_abandoned(self) -> None:
        for job in [j for j in self._queue if j.future.done()]:
            self._queue.remove(job)
