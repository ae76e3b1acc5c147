"""Micro-batching: concurrent requests wait briefly in one bounded queue, and a single worker hands
them to the model together, off the event loop.

Requests stay in the queue until their batch is cut, so the queue bound covers everything waiting
for the model; a request that finds it full is refused at once (:class:`QueueFull`, a 503) instead
of piling up in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("patentclf.service")


class QueueFull(Exception):
    """The queue holds its maximum number of requests."""


class BatcherClosed(Exception):
    """The service is shutting down."""


@dataclass
class _Job:
    texts: list[str]
    future: asyncio.Future
    arrived: float = field(default=0.0)


class MicroBatcher:
    """``await batcher.submit(texts)`` -> the model's outputs for ``texts``, in order.

    * ``enabled``: coalesce queued requests into one call of at most ``max_batch_texts`` texts,
      waiting at most ``max_wait_s`` after the oldest request arrived for others to join;
      off: one request per model call, in arrival order (the baseline the benchmark compares with).
    * ``max_queue``: requests waiting (not yet handed to the model).
    """

    def __init__(
        self,
        predict: Callable[[list[str]], Sequence[Any]],
        *,
        max_queue: int,
        max_batch_texts: int,
        max_wait_s: float,
        enabled: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self._predict = predict
        self.max_queue = max_queue
        self.max_batch_texts = max_batch_texts
        self.max_wait_s = max_wait_s
        self.enabled = enabled
        self._on_batch = on_batch  # told (texts in the batch, seconds of inference)
        self._queue: deque[_Job] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        # One thread: the model runs one batch at a time, and never on the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="patentclf-inference")
        self._closed = False

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="patentclf-batcher")

    async def stop(self) -> None:
        self._closed = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(BatcherClosed("the service is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, texts: Sequence[str]) -> list[Any]:
        if self._closed:
            raise BatcherClosed("the service is shutting down")
        if len(self._queue) >= self.max_queue:
            raise QueueFull(f"{len(self._queue)} requests are waiting for the model")
        loop = asyncio.get_running_loop()
        job = _Job(list(texts), loop.create_future(), loop.time())
        self._queue.append(job)
        self._wake.set()
        # A client that goes away cancels this await, which cancels the future: the worker skips it.
        return await job.future

    # -- the worker -------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            jobs = [j for j in await self._next_batch() if not j.future.done()]
            if not jobs:
                continue
            texts = [t for j in jobs for t in j.texts]
            started = loop.time()
            try:
                outputs = await loop.run_in_executor(self._executor, self._predict, texts)
            except asyncio.CancelledError:  # shutting down mid-batch: answer these, then stop
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(BatcherClosed("the service is shutting down"))
                raise
            except Exception as exc:  # a model failure fails these requests, not the worker
                log.exception("inference failed for a batch of %d texts", len(texts))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            if self._on_batch:
                self._on_batch(len(texts), loop.time() - started)
            position = 0
            for job in jobs:
                if not job.future.done():
                    job.future.set_result(list(outputs[position : position + len(job.texts)]))
                position += len(job.texts)

    async def _next_batch(self) -> list[_Job]:
        if not self.enabled:
            return [self._queue.popleft()]
        loop = asyncio.get_running_loop()
        deadline = self._queue[0].arrived + self.max_wait_s
        # Wait (queued requests stay counted against the bound) until the batch is full or the
        # oldest request has waited long enough.
        while sum(len(j.texts) for j in self._queue) < self.max_batch_texts:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except asyncio.TimeoutError:
                break
        jobs = [self._queue.popleft()]  # the oldest always goes, even if alone it exceeds the size
        count = len(jobs[0].texts)
        while self._queue and count + len(self._queue[0].texts) <= self.max_batch_texts:
            job = self._queue.popleft()
            jobs.append(job)
            count += len(job.texts)
        return jobs
