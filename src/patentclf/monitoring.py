"""Monitoring: Prometheus metrics, the predictions log, and the figures behind ``GET /stats``.

The predictions log lives in the feedback database (table ``predictions``). Rows are buffered in
memory and written in one transaction every ``flush`` (the service calls it about once a second),
so logging adds no disk write to a request; a crash loses at most the last unflushed second of log
rows, never acknowledged feedback.
"""

from __future__ import annotations

import threading
from dataclasses import astuple, dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .feedback import Database, utc_now
from .labels import CODES

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONFIDENCE_BUCKETS = tuple(round(0.1 * i, 1) for i in range(1, 11))
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

PREDICTIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id TEXT PRIMARY KEY,              -- the prediction id the API returned
    time TEXT NOT NULL,               -- ISO 8601 UTC
    model_version TEXT NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    latency_ms REAL NOT NULL,         -- of the request that carried it
    needs_review INTEGER NOT NULL,
    text TEXT                         -- only when the service is configured to log texts
);
CREATE INDEX IF NOT EXISTS predictions_time ON predictions (time)
"""


class Metrics:
    """The service's Prometheus metrics, in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("patentclf_requests_total", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r)
        self.errors = Counter("patentclf_request_errors_total", "HTTP requests answered 4xx or 5xx", ["route", "status"], registry=r)
        self.latency = Histogram("patentclf_request_latency_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("patentclf_predictions_total", "predictions by section", ["label"], registry=r)
        self.confidence = Histogram("patentclf_prediction_confidence", "confidence of the predicted section", buckets=CONFIDENCE_BUCKETS, registry=r)
        self.needs_review = Counter("patentclf_predictions_needs_review_total", "predictions below the review threshold", registry=r)
        self.feedback = Counter("patentclf_feedback_total", "feedback stored, by agreement with the model", ["agreed"], registry=r)
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


class PredictionLog:
    """Buffered writer and reader of the ``predictions`` table."""

    def __init__(self, path: str | Path):
        self.db = Database(path, PREDICTIONS_SCHEMA)
        self._buffer: list[LoggedPrediction] = []
        self._lock = threading.Lock()

    def add(self, rows: list[LoggedPrediction]) -> None:
        with self._lock:
            self._buffer.extend(rows)

    def flush(self) -> int:
        """Write the buffered rows in one transaction; returns how many."""
        with self._lock:
            rows, self._buffer = self._buffer, []
        if not rows:
            return 0
        try:
            with self.db.write() as conn:
                conn.executemany(
                    "INSERT OR IGNORE INTO predictions (id, time, model_version, label, confidence, latency_ms, needs_review, text)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [astuple(r) for r in rows],
                )
        except Exception:
            with self._lock:  # keep them for the next flush
                self._buffer[:0] = rows
            raise
        return len(rows)

    def find(self, prediction_id: str) -> LoggedPrediction | None:
        with self._lock:
            for row in self._buffer:
                if row.id == prediction_id:
                    return row
        found = self.db.connection().execute("SELECT * FROM predictions WHERE id = ?", (prediction_id,)).fetchone()
        if found is None:
            return None
        values = dict(found)
        values["needs_review"] = bool(values["needs_review"])
        return LoggedPrediction(**values)

    # -- figures for /stats -----------------------------------------------------------------------

    def stats(self, *, bucket: str = "hour", buckets: int = 48) -> dict:
        """Totals, the most recent ``buckets`` time buckets, the label mix and the confidence histogram."""
        width = {"hour": 13, "minute": 16}[bucket]  # "2025-01-31T14" / "2025-01-31T14:05"
        suffix = ":00:00+00:00" if bucket == "hour" else ":00+00:00"
        conn = self.db.connection()
        total, review = conn.execute("SELECT COUNT(*), COALESCE(SUM(needs_review), 0) FROM predictions").fetchone()
        over_time = conn.execute(
            f"SELECT substr(time, 1, {width}) AS b, COUNT(*) FROM predictions GROUP BY b ORDER BY b DESC LIMIT ?", (buckets,)
        ).fetchall()
        mix = dict(conn.execute("SELECT label, COUNT(*) FROM predictions GROUP BY label").fetchall())
        bins = dict(conn.execute("SELECT MIN(CAST(confidence * 10 AS INTEGER), 9) AS b, COUNT(*) FROM predictions GROUP BY b").fetchall())
        return {
            "predictions_total": int(total),
            "needs_review_total": int(review),
            "predictions_over_time": [{"time": b + suffix, "count": int(n)} for b, n in reversed(over_time)],
            "label_mix": {code: int(mix.get(code, 0)) for code in CODES},
            "confidence_histogram": [
                {"bin": f"{i / 10:.1f}-{(i + 1) / 10:.1f}", "count": int(bins.get(i, 0))} for i in range(10)
            ],
        }


def new_log_row(prediction_id: str, *, model_version: str, label: str, confidence: float, latency_ms: float, needs_review: bool, text: str | None) -> LoggedPrediction:
    return LoggedPrediction(prediction_id, utc_now(), model_version, label, confidence, round(latency_ms, 3), needs_review, text)
