"""The running service: the loaded classifier behind its micro-batcher, the stores, the metrics.

Routes reach it through ``request.app.state.runtime``; it knows nothing about HTTP.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from patentclf.inference.classifier import Classifier
from patentclf.inference.engines.vllm import EngineUnavailable
from patentclf.inference.explain import expand
from patentclf.inference.options import DEFAULT_OPTIONS, PredictOptions
from patentclf.inference.prediction import Prediction, prediction_record
from patentclf.inference.review import queue_details, queue_score
from patentclf.model.base import conversion_message
from patentclf.model.bundle import BundleInfo, default_model_dir, read_info
from patentclf.service.batching import MicroBatcher
from patentclf.service.config import ServiceConfig
from patentclf.store.database import describe_target, open_store
from patentclf.store.feedback import FeedbackStore
from patentclf.store.monitoring import (
    LoggedPrediction,
    Metrics,
    PredictionLog,
    new_log_row,
    new_prediction_id,
    prediction_id_age_s,
)

log = logging.getLogger("patentclf.service")
TRIM_EVERY_S = 60.0  # how often the predictions log is cut to its retention
ENGINE_CHECK_S = 2.0  # how often a vLLM engine's server is asked if it is healthy


def log_event(event: str, **fields) -> None:
    """One JSON object per line on the service log."""
    log.info(json.dumps({"event": event, **fields}, ensure_ascii=False, default=str))


class NotReady(Exception):
    """The model is still loading, or the service cannot serve (see ``ServiceRuntime.fatal_error``)."""


@dataclass
class RecentPrediction:
    text: str
    label: str
    model_version: str
    logged: LoggedPrediction | None = None  # its log row (without the text): the review queue lists it


class RecentTexts:
    """The last ``capacity`` prediction ids and their texts, so feedback by id can carry the text
    even when texts are not logged; at most ``max_chars`` characters of text in all, so long texts
    cannot fill the memory. Held in memory only: lost on restart, by design."""

    def __init__(self, capacity: int, max_chars: int = 20_000_000):
        self.capacity, self.max_chars = capacity, max_chars
        self.chars = 0
        self._items: OrderedDict[str, RecentPrediction] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, prediction_id: str, item: RecentPrediction) -> None:
        if self.capacity <= 0 or len(item.text) > self.max_chars:
            return
        previous = self._items.pop(prediction_id, None)
        self.chars += len(item.text) - (len(previous.text) if previous else 0)
        self._items[prediction_id] = item
        while len(self._items) > self.capacity or self.chars > self.max_chars:
            _, dropped = self._items.popitem(last=False)
            self.chars -= len(dropped.text)

    def get(self, prediction_id: str) -> RecentPrediction | None:
        return self._items.get(prediction_id)

    def values(self) -> list[RecentPrediction]:
        return list(self._items.values())


@dataclass
class ServedPrediction:
    """A classifier prediction with what the service adds to it."""

    id: str
    prediction: Prediction
    needs_review: bool  # the prediction's own (the bundle's review rules and the service's threshold)
    model_version: str

    def to_response(self) -> dict:
        return prediction_record(self.prediction, id=self.id, needs_review=self.needs_review, model_version=self.model_version)


class ServiceRuntime:
    """``on_fatal(reason)`` is called once if the service can no longer serve (the model failed to
    load, or the batcher's worker died): the app uses it to stop the process, so a supervisor
    restarts it."""

    def __init__(self, config: ServiceConfig, on_fatal: Callable[[str], None] | None = None):
        self.config = config
        self.on_fatal = on_fatal
        self.model_dir = Path(config.model) if config.model else default_model_dir()
        self.metrics = Metrics()
        target = config.database_url.get_secret_value() if config.database_url else config.feedback_db
        self.store = open_store(target)
        self.storage = describe_target(target)  # where the data lives, for people (no password)
        self.feedback = FeedbackStore(self.store)
        # On a shared database, recent texts go there too, so feedback by id works on every replica.
        self.prediction_log = PredictionLog(self.store, shared_texts=config.recent_texts if self.store.shared else 0)
        self.recent = RecentTexts(config.recent_texts, config.recent_texts_chars)
        self.classifier: Classifier | None = None
        self.batcher: MicroBatcher | None = None
        self.info: BundleInfo | None = None  # read at start
        self.loading_note: str | None = None  # what /ready says while the model loads, beyond "loading"
        self.fatal_error: str | None = None
        self.engine_error: str | None = None  # engine vllm: why its server does not answer now
        self._tasks: list[asyncio.Task] = []
        self.tag_jobs: dict = {}  # job id -> service.tag_sets.TagFitJob: tag sets fitted through the API
        # Where those are kept: the tags_dir setting, else a "tags" folder beside the feedback database file.
        self.tags_dir = Path(config.tags_dir) if config.tags_dir else Path(config.feedback_db).with_name("tags")

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the bundle now (a wrong path fails start-up), load the weights in the background
        so that /health answers and /ready says 503 until the model is in."""
        self.info = read_info(self.model_dir)
        self.loading_note = conversion_message(self.info.base_model)  # a first start converts the base model
        self._tasks.append(asyncio.create_task(self._load(), name="patentclf-load"))
        self._tasks.append(asyncio.create_task(self._flush_forever(), name="patentclf-log-flush"))

    async def _load(self) -> None:
        log_event("model_loading", model=str(self.model_dir), precision=self.config.precision)
        try:
            # With compile, loading also compiles (a warm-up prediction), so /ready waits for it.
            classifier = await asyncio.to_thread(
                Classifier.load,
                self.model_dir,
                precision=self.config.precision,
                compile=self.config.compile,
                engine=self.config.engine,
                vllm_url=self.config.vllm_url,
                # The vLLM engine gives no representations: no index there (unless one is asked for, which fails).
                index=False
                if self.config.no_index or (self.config.engine == "vllm" and not self.config.index)
                else self.config.index,
                tags=self.config.tags or None,
            )
        except Exception as exc:
            log_event("model_load_failed", error=f"{type(exc).__name__}: {exc}")
            self._fatal(f"the model failed to load: {type(exc).__name__}: {exc}")
            return
        cfg = self.config
        if cfg.review_threshold is not None:  # the operator's threshold for "uncertain" over the bundle's
            classifier.review.uncertain_below = cfg.review_threshold
        # The batcher's items are (text, options): requests with different options share model calls
        # (the forward pass does not depend on them), and each text's answer is made with its own.
        batcher = MicroBatcher(
            lambda items: classifier.iter_predictions(
                [text for text, _ in items],
                batch_size=cfg.micro_batch_size,
                long_text=cfg.long_text,
                options=[options for _, options in items],
            ),
            streams=True,
            max_queue=cfg.queue_size,
            max_batch_texts=cfg.micro_batch_size,
            max_wait_s=cfg.micro_batch_wait_ms / 1000,
            enabled=cfg.micro_batching,
            on_batch=self.metrics.observe_batch,
            on_death=self._fatal,
        )
        batcher.start()
        if cfg.engine == "vllm":
            # A model in another process can go away and come back: /ready follows its health check.
            await self._check_engine(classifier)
            self._tasks.append(asyncio.create_task(self._watch_engine(classifier), name="patentclf-engine-check"))
        self.batcher, self.classifier = batcher, classifier
        log_event("model_ready", model_version=classifier.version, device=str(classifier.device), config=cfg.public_dict())

    async def _check_engine(self, classifier: Classifier) -> None:
        try:
            await asyncio.to_thread(classifier.engine.check)
        except RuntimeError as exc:
            if self.engine_error is None:
                log_event("engine_unavailable", error=str(exc))
            self.engine_error = str(exc)
        else:
            if self.engine_error is not None:
                log_event("engine_available")
            self.engine_error = None

    async def _watch_engine(self, classifier: Classifier) -> None:
        while True:
            await asyncio.sleep(ENGINE_CHECK_S)
            await self._check_engine(classifier)

    def _fatal(self, reason: str) -> None:
        """Stop serving for good: /ready says 503 with the reason, and the app stops the process."""
        if self.fatal_error is not None:
            return
        self.fatal_error = reason
        log_event("fatal", error=reason)
        if self.on_fatal:
            self.on_fatal(reason)

    async def _flush_forever(self) -> None:
        last_trim = 0.0
        while True:
            await asyncio.sleep(self.config.log_flush_s)
            try:
                await asyncio.to_thread(self.prediction_log.flush)
            except Exception as exc:  # a locked or full disk must not stop serving; rows stay buffered
                log_event("log_flush_failed", error=str(exc))
            if time.monotonic() - last_trim >= TRIM_EVERY_S:
                last_trim = time.monotonic()
                try:
                    days, rows = self.config.log_retention_days, self.config.log_retention_rows
                    deleted = await asyncio.to_thread(self.prediction_log.trim, days=days, rows=rows)
                    if deleted:
                        log_event("log_trimmed", deleted=deleted)
                except Exception as exc:
                    log_event("log_trim_failed", error=str(exc))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.batcher:
            await self.batcher.stop()
        await asyncio.to_thread(self.prediction_log.flush)
        log_event("stopped")

    @property
    def ready(self) -> bool:
        return self.classifier is not None and self.fatal_error is None and self.engine_error is None

    @property
    def not_ready_reason(self) -> str:
        loading = f"the model is still loading: {self.loading_note}" if self.loading_note else "the model is still loading"
        return self.fatal_error or self.engine_error or loading

    @property
    def model_version(self) -> str | None:
        return self.classifier.version if self.classifier else None

    # -- predictions ------------------------------------------------------------------------------

    async def predict(
        self, texts: list[str], *, started: float, options: PredictOptions = DEFAULT_OPTIONS
    ) -> list[ServedPrediction]:
        """Classify through the batcher; raises NotReady, QueueFull or BatcherClosed.
        ``started``: ``time.perf_counter()`` when the request came in (for the logged latency);
        ``options``: how every text's answer is shaped."""
        if not self.ready:
            raise NotReady(self.not_ready_reason)
        self.metrics.queue_depth.set(self.batcher.depth + 1)
        try:
            # An explained text comes with its variants (one per sentence left out): they queue as texts
            # of this request, so a large explained request takes its turns with the others, a share
            # of a model call at a time, like any large request.
            expansion = expand(texts, [options] * len(texts))
            every = await self.batcher.submit(list(zip(expansion.texts, expansion.options)))
            predictions: list[Prediction] = expansion.collect(every)
        except EngineUnavailable as exc:  # the vLLM server went away since the last check
            self.engine_error = str(exc)
            raise NotReady(str(exc)) from exc
        self.metrics.queue_depth.set(self.batcher.depth)
        return self._record(texts, predictions, latency_ms=(time.perf_counter() - started) * 1000)

    def _record(self, texts: list[str], predictions: list[Prediction], latency_ms: float) -> list[ServedPrediction]:
        version = self.classifier.version
        served, rows, shared = [], [], {}
        for text, p in zip(texts, predictions):
            prediction_id = new_prediction_id()
            shared[prediction_id] = text
            review = p.needs_review
            served.append(ServedPrediction(prediction_id, p, review, version))
            self.metrics.observe_prediction(p.label, p.confidence, review)
            row = new_log_row(
                prediction_id,
                model_version=version,
                label=p.label,
                confidence=p.confidence,
                latency_ms=latency_ms,
                needs_review=review,
                text=text if self.config.log_texts else None,
                review_score=queue_score(p.confidence),
                review=queue_details(p),
            )
            rows.append(row)
            self.recent.add(prediction_id, RecentPrediction(text, p.label, version, replace(row, text=None)))
        self.prediction_log.add(rows, shared)
        return served

    async def review_queue(self, limit: int) -> list[dict]:
        """The predictions a reviewer should look at first (``PredictionLog.review_queue``): those whose
        text is in the database, and those whose text this process holds in memory."""
        held = [replace(r.logged, text=r.text) for r in self.recent.values() if r.logged is not None]
        try:  # this replica's last second of predictions too; if the write fails, they are held or wait
            await asyncio.to_thread(self.prediction_log.flush)
        except Exception as exc:
            log_event("log_flush_failed", error=str(exc))
        return await asyncio.to_thread(self.prediction_log.review_queue, limit, held=held)

    def queue_scope(self) -> str:
        """Which predictions the review queue can list, in a sentence: only those whose text is known."""
        cfg = self.config
        where = [f"the last {cfg.recent_texts} this server holds in memory (lost on restart)"]
        if cfg.log_texts:
            where.append("those logged with their text (log_texts), for the log's retention")
        if self.prediction_log.shared_texts:
            where.append(f"the newest {self.prediction_log.shared_texts} shared in the database by every replica")
        return (
            "Only predictions whose text is known can be reviewed: " + "; ".join(where) + ". "
            "Others are not listed, nor predictions that feedback already names."
        )

    async def find_prediction(self, prediction_id: str) -> RecentPrediction | LoggedPrediction | None:
        """Recent predictions (with their text) first, then the predictions log (text if logged or shared).
        An id made in the last moments may still wait in another replica's buffer: look again until it
        would have been flushed (allowing a little clock skew between machines)."""
        recent = self.recent.get(prediction_id)
        if recent is not None:
            return recent
        while True:
            found = await asyncio.to_thread(self.prediction_log.find, prediction_id)
            age = prediction_id_age_s(prediction_id)
            if found is not None or age is None or not -2.0 <= age < self.config.log_flush_s + 3.0:
                return found
            await asyncio.sleep(0.1)
