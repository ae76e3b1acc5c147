"""Monitoring: Prometheus metrics, the predictions log, and the figures behind ``GET /stats``.

The predictions log is table ``predictions`` of :mod:`patentclf.store.database`. Rows are buffered in memory and
written in one transaction every ``flush`` (the service calls it about once a second), so logging adds
no disk write to a request; a crash loses at most the last unflushed second of log rows, never
acknowledged feedback. The same transaction adds the rows to rolled-up counts (``prediction_totals``,
``prediction_buckets``), which ``/stats`` reads instead of the log; :meth:`PredictionLog.trim` keeps the
log itself to a retention (days or rows) while the counts cover all time.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from patentclf.corpus.labels import CODES
from patentclf.store.database import (
    Store,
    feedback,
    open_store,
    prediction_buckets,
    prediction_texts,
    prediction_totals,
    predictions,
)
from patentclf.store.feedback import utc_now

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
BUCKET_CHARS = {"hour": 13, "minute": 16}  # "2025-01-31T14" / "2025-01-31T14:05" of an ISO time
MINUTE_BUCKETS_DAYS = 7  # minute counts are kept a week (the most /stats asks for); hour counts forever
TRIM_CHUNK = 10_000  # rows deleted per transaction, so a long trim never holds the write lock for long


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "patentclf_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r
        )
        self.errors = Counter(
            "patentclf_request_errors_total", "HTTP requests answered 4xx or 5xx", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "patentclf_request_latency_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.predictions = Counter("patentclf_predictions_total", "predictions by section", ["label"], registry=r)
        self.confidence = Histogram(
            "patentclf_prediction_confidence", "confidence of the predicted section", buckets=CONFIDENCE_BUCKETS, registry=r
        )
        self.needs_review = Counter(
            "patentclf_predictions_needs_review_total", "predictions below the review threshold", registry=r
        )
        self.feedback = Counter(
            "patentclf_feedback_total", "feedback stored, by agreement with the model", ["agreed"], registry=r
        )
        self.queue_depth = Gauge("patentclf_queue_depth", "requests waiting for the model", registry=r)
        self.rejected = Counter("patentclf_queue_rejected_total", "requests refused because the queue was full", registry=r)
        self.batch_size = Histogram("patentclf_batch_texts", "texts per model call", buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("patentclf_inference_seconds", "time of one model call", buckets=LATENCY_BUCKETS, registry=r)
        for code in CODES:  # every section shows up, at 0, from the start
            self.predictions.labels(label=code)
        for agreed in ("true", "false", "unknown"):
            self.feedback.labels(agreed=agreed)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)
        if status >= 400:
            self.errors.labels(route=route, status=str(status)).inc()

    def observe_prediction(self, label: str, confidence: float, needs_review: bool) -> None:
        self.predictions.labels(label=label).inc()
        self.confidence.observe(confidence)
        if needs_review:
            self.needs_review.inc()

    def observe_batch(self, texts: int, seconds: float) -> None:
        self.batch_size.observe(texts)
        self.inference.observe(seconds)

    def observe_feedback(self, agreed: bool | None) -> None:
        self.feedback.labels(agreed="unknown" if agreed is None else str(agreed).lower()).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def new_prediction_id() -> str:
    """32 hex digits like a uuid4's; the first 12 are the time in milliseconds. Ids sort by time (the
    log's index grows at one end), and a replica that does not know an id can tell whether it is young
    enough to be still in another replica's unflushed buffer."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def prediction_id_age_s(prediction_id: str) -> float | None:
    """Seconds since a :func:`new_prediction_id` id was made (None if it is not hex)."""
    try:
        return time.time() - int(prediction_id[:12], 16) / 1000
    except ValueError:
        return None


def confidence_bin(confidence: float) -> int:
    return min(int(confidence * 10), 9)


@dataclass
class LoggedPrediction:
    id: str
    time: str
    model_version: str
    label: str
    confidence: float
    latency_ms: float
    needs_review: bool
    text: str | None = None
    review_score: float | None = None  # the review queue's order (higher: look first); None in rows from before
    review: str | None = None  # JSON: what a reviewer needs besides the text (see inference.review.queue_details)


QUEUE_CHUNK = 500  # ids asked about at once when held predictions are checked for feedback


def queue_item(row: LoggedPrediction) -> dict:
    """A prediction as the review queue lists it: the log row's fields with its ``review`` details spread
    out (reasons, evidence_disagrees, sections, levels; empty for rows from before the queue)."""
    details = json.loads(row.review) if row.review else {}
    item = {k: v for k, v in vars(row).items() if k not in ("review", "latency_ms")}
    return {
        **item,
        "needs_review": bool(row.needs_review),
        "reasons": details.get("reasons", []),
        "evidence_disagrees": details.get("evidence_disagrees"),
        "sections": details.get("sections", []),
        "levels": details.get("levels", []),
    }


def queue_order(rows: Iterable[LoggedPrediction]) -> list[LoggedPrediction]:
    """Highest score first, rows without one last; newest first among equals (two stable sorts)."""
    newest_first = sorted(rows, key=lambda r: r.time, reverse=True)
    return sorted(newest_first, key=lambda r: (r.review_score is None, -(r.review_score or 0.0)))


class PredictionLog:
    """Buffered writer and reader of the predictions log and its rolled-up counts.

    ``shared_texts``: how many recent prediction texts to keep in the database (table
    ``prediction_texts``) so that feedback by id works on another replica; 0 keeps them in memory only.
    """

    def __init__(self, target: Store | str, *, shared_texts: int = 0):
        self.store = open_store(target)
        self.shared_texts = shared_texts
        self._buffer: list[LoggedPrediction] = []
        self._texts: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, rows: list[LoggedPrediction], texts: dict[str, str] | None = None) -> None:
        """Buffer log rows; ``texts`` (prediction id -> text) go to the shared texts, if kept."""
        with self._lock:
            self._buffer.extend(rows)
            if self.shared_texts and texts:
                self._texts.update(texts)

    def flush(self) -> int:
        """Write the buffered rows and their counts in one transaction; returns how many rows were new."""
        with self._lock:
            rows, self._buffer = self._buffer, []
            texts, self._texts = self._texts, {}
        if not rows:
            return 0
        try:
            with self.store.write() as conn:
                # Rows already there (a retried flush whose COMMIT had gone through) are neither
                # inserted nor counted again.
                inserted = set(
                    conn.execute(
                        self.store.insert_ignoring_duplicates(predictions).returning(predictions.c.id),
                        [{**vars(r), "needs_review": int(r.needs_review)} for r in rows],  # vars(): asdict deep-copies
                    ).scalars()
                )
                new = [r for r in rows if r.id in inserted]
                if new:
                    totals, buckets = _roll_up(new)
                    conn.execute(self.store.insert_adding(prediction_totals, ["count", "needs_review"]), totals)
                    conn.execute(self.store.insert_adding(prediction_buckets, ["count"]), buckets)
                shared = [{"prediction_id": r.id, "time": r.time, "text": texts[r.id]} for r in new if r.id in texts]
                if shared:
                    conn.execute(self.store.insert_ignoring_duplicates(prediction_texts), shared)
        except Exception:
            with self._lock:  # keep them for the next flush
                self._buffer[:0] = rows
                self._texts.update(texts)
            raise
        return len(new)

    def find(self, prediction_id: str) -> LoggedPrediction | None:
        """A logged prediction, with its text if it was logged or shared."""
        with self._lock:
            for row in self._buffer:
                if row.id == prediction_id:
                    return LoggedPrediction(**{**vars(row), "text": row.text or self._texts.get(row.id)})
        query = (
            sa.select(predictions, prediction_texts.c.text.label("shared_text"))
            .outerjoin(prediction_texts, prediction_texts.c.prediction_id == predictions.c.id)
            .where(predictions.c.id == prediction_id)
        )
        with self.store.read() as conn:
            found = conn.execute(query).first()
        if found is None:
            return None
        values = dict(found._mapping)
        shared = values.pop("shared_text")
        values["text"] = values["text"] or shared
        values["needs_review"] = bool(values["needs_review"])
        return LoggedPrediction(**values)

    def review_queue(self, limit: int, *, held: Iterable[LoggedPrediction] = ()) -> list[dict]:
        """The predictions a reviewer should look at first (see :func:`queue_item`): the highest
        ``review_score`` first, rows from before scores last, newest first among equals; only those
        whose text is known and that no feedback names yet.

        Texts are known for rows logged with their text or shared between replicas (in the database),
        and for ``held``: predictions whose text this process keeps in memory, with their text. Buffered
        rows count once flushed (the caller flushes first) or when held."""
        answered = sa.exists().where(feedback.c.prediction_id == predictions.c.id)
        query = (
            sa.select(predictions, prediction_texts.c.text.label("shared_text"))
            .outerjoin(prediction_texts, prediction_texts.c.prediction_id == predictions.c.id)
            .where(~answered, sa.or_(predictions.c.text.is_not(None), prediction_texts.c.text.is_not(None)))
            .order_by(predictions.c.review_score.desc().nulls_last(), predictions.c.time.desc())
            .limit(limit)
        )
        found: dict[str, LoggedPrediction] = {}
        with self.store.read() as conn:
            for record in conn.execute(query):
                values = dict(record._mapping)
                shared = values.pop("shared_text")
                values["text"] = values["text"] or shared
                found[values["id"]] = LoggedPrediction(**values)
        # Held ones, best first, until ``limit`` of them are known not to be answered.
        candidates = queue_order(r for r in held if r.text and r.id not in found)
        kept: list[LoggedPrediction] = []
        for start in range(0, len(candidates), QUEUE_CHUNK):
            if len(kept) >= limit:
                break
            chunk = candidates[start : start + QUEUE_CHUNK]
            with self.store.read() as conn:
                ids = [r.id for r in chunk]
                done = set(conn.execute(sa.select(feedback.c.prediction_id).where(feedback.c.prediction_id.in_(ids))).scalars())
            kept += [r for r in chunk if r.id not in done]
        rows = queue_order([*found.values(), *kept[:limit]])[:limit]
        return [queue_item(r) for r in rows]

    def trim(self, *, days: float | None = None, rows: int | None = None, now: datetime | None = None) -> int:
        """Delete log rows older than ``days`` and beyond the newest ``rows``; shared texts beyond the
        newest ``shared_texts``; minute counts older than a week. Returns how many log rows went."""
        now = now or datetime.now(timezone.utc)
        deleted = 0
        cutoffs = []
        if days is not None:
            cutoffs.append((now - timedelta(days=days)).isoformat(timespec="milliseconds"))
        if rows is not None:
            cutoffs.append(self._nth_newest_time(predictions, rows))
        for cutoff in filter(None, cutoffs):
            deleted += self._delete_older(predictions, predictions.c.id, cutoff)
        if self.shared_texts:
            newest = self._nth_newest_time(prediction_texts, self.shared_texts)
            self._delete_older(prediction_texts, prediction_texts.c.prediction_id, newest)
        week_ago = (now - timedelta(days=MINUTE_BUCKETS_DAYS)).isoformat()[: BUCKET_CHARS["minute"]]
        with self.store.write() as conn:
            old = (prediction_buckets.c.width == "minute") & (prediction_buckets.c.start < week_ago)
            conn.execute(prediction_buckets.delete().where(old))
        return deleted

    def _nth_newest_time(self, table: sa.Table, n: int) -> str | None:
        """Rows older than the returned time are beyond the newest ``n``; None when there are fewer."""
        with self.store.read() as conn:
            return conn.execute(sa.select(table.c.time).order_by(table.c.time.desc()).offset(max(n, 1) - 1).limit(1)).scalar()

    def _delete_older(self, table: sa.Table, key: sa.Column, cutoff: str | None) -> int:
        if cutoff is None:
            return 0
        deleted = 0
        while True:
            with self.store.write() as conn:
                chunk = sa.select(key).where(table.c.time < cutoff).limit(TRIM_CHUNK).scalar_subquery()
                count = conn.execute(table.delete().where(key.in_(chunk))).rowcount
            deleted += count
            if count < TRIM_CHUNK:
                return deleted

    # -- figures for /stats -----------------------------------------------------------------------

    def stats(self, *, bucket: str = "hour", buckets: int = 48) -> dict:
        """Totals, the most recent ``buckets`` time buckets, the label mix and the confidence histogram,
        from the rolled-up counts (a few hundred rows at most, however long the log)."""
        suffix = ":00:00+00:00" if bucket == "hour" else ":00+00:00"
        recent = (
            sa.select(prediction_buckets.c.start, prediction_buckets.c.count)
            .where(prediction_buckets.c.width == bucket)
            .order_by(prediction_buckets.c.start.desc())
            .limit(buckets)
        )
        with self.store.read() as conn:
            totals = conn.execute(sa.select(prediction_totals)).all()
            over_time = conn.execute(recent).all()
        mix, bins = Tally(), Tally()
        for row in totals:
            mix[row.label] += row.count
            bins[row.bin] += row.count
        return {
            "predictions_total": int(sum(row.count for row in totals)),
            "needs_review_total": int(sum(row.needs_review for row in totals)),
            "predictions_over_time": [{"time": start + suffix, "count": int(n)} for start, n in reversed(over_time)],
            "label_mix": {code: int(mix.get(code, 0)) for code in CODES},
            "confidence_histogram": [
                {"bin": f"{i / 10:.1f}-{(i + 1) / 10:.1f}", "count": int(bins.get(i, 0))} for i in range(10)
            ],
        }


def _roll_up(rows: list[LoggedPrediction]) -> tuple[list[dict], list[dict]]:
    """Counts to add for new log rows, sorted by key (concurrent writers then lock rows in one order)."""
    totals: Tally = Tally()
    review: Tally = Tally()
    buckets: Tally = Tally()
    for r in rows:
        key = (r.label, confidence_bin(r.confidence))
        totals[key] += 1
        review[key] += int(r.needs_review)
        for width, chars in BUCKET_CHARS.items():
            buckets[(width, r.time[:chars])] += 1
    return (
        [{"label": k[0], "bin": k[1], "count": n, "needs_review": review[k]} for k, n in sorted(totals.items())],
        [{"width": k[0], "start": k[1], "count": n} for k, n in sorted(buckets.items())],
    )


def new_log_row(
    prediction_id: str,
    *,
    model_version: str,
    label: str,
    confidence: float,
    latency_ms: float,
    needs_review: bool,
    text: str | None,
    review_score: float | None = None,
    review: dict | None = None,
) -> LoggedPrediction:
    """``review``: what a reviewer needs besides the text (``inference.review.queue_details``), stored as JSON."""
    details = None if review is None else json.dumps(review, ensure_ascii=False)
    return LoggedPrediction(
        prediction_id,
        utc_now(),
        model_version,
        label,
        confidence,
        round(latency_ms, 3),
        needs_review,
        text,
        review_score,
        details,
    )
