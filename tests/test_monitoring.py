"""The predictions log (buffered, in the feedback database) and the Prometheus metrics, on their own."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from patentclf.corpus.labels import CODES
from patentclf.store.monitoring import Metrics, PredictionLog, new_log_row


def row(i: int, label: str, confidence: float, text: str | None = None):
    return new_log_row(
        f"id{i}",
        model_version="m@1",
        label=label,
        confidence=confidence,
        latency_ms=12.5,
        needs_review=confidence < 0.5,
        text=text,
    )


def test_log_buffers_then_flushes_and_finds_rows_either_way(tmp_path):
    log = PredictionLog(tmp_path / "db.sqlite")
    log.add([row(1, "G", 0.95, text="an optical sensor")])
    assert log.find("id1").text == "an optical sensor"  # still in the buffer
    assert log.flush() == 1 and log.flush() == 0
    found = log.find("id1")
    assert found.label == "G" and found.confidence == 0.95 and found.needs_review is False and found.model_version == "m@1"
    assert log.find("nope") is None
    # A second log on the same file (a restarted server) sees what was flushed.
    assert PredictionLog(tmp_path / "db.sqlite").find("id1").text == "an optical sensor"


def test_stats_count_labels_bins_and_buckets(tmp_path):
    log = PredictionLog(tmp_path / "db.sqlite")
    log.add([row(1, "G", 0.95), row(2, "G", 1.0), row(3, "A", 0.42), row(4, "Y", 0.05)])
    log.flush()
    stats = log.stats()
    assert stats["predictions_total"] == 4 and stats["needs_review_total"] == 2
    assert stats["label_mix"] == {code: {"G": 2, "A": 1, "Y": 1}.get(code, 0) for code in CODES}
    bins = {b["bin"]: b["count"] for b in stats["confidence_histogram"]}
    assert bins["0.9-1.0"] == 2 and bins["0.4-0.5"] == 1 and bins["0.0-0.1"] == 1 and sum(bins.values()) == 4
    [bucket] = stats["predictions_over_time"]
    assert bucket["count"] == 4 and bucket["time"].endswith(":00:00+00:00")
    assert log.stats(bucket="minute")["predictions_over_time"][0]["time"].endswith(":00+00:00")


def test_metrics_render_the_named_series():
    metrics = Metrics()
    metrics.observe_request("/predict", "POST", 200, 0.02)
    metrics.observe_request("/predict", "POST", 422, 0.001)
    metrics.observe_prediction("H", 0.3, needs_review=True)
    metrics.observe_feedback(False)
    metrics.observe_batch(5, 0.1)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(body.decode())
        for s in f.samples
    }
    assert samples[("patentclf_requests_total", (("method", "POST"), ("route", "/predict"), ("status", "200")))] == 1
    assert samples[("patentclf_request_errors_total", (("route", "/predict"), ("status", "422")))] == 1
    assert samples[("patentclf_predictions_total", (("label", "H"),))] == 1
    assert samples[("patentclf_predictions_total", (("label", "A"),))] == 0
    assert samples[("patentclf_predictions_needs_review_total", ())] == 1
    assert samples[("patentclf_feedback_total", (("agreed", "false"),))] == 1
    assert samples[("patentclf_batch_texts_sum", ())] == 5
    # Two apps in one process keep separate registries.
    assert b"patentclf_requests_total{" not in Metrics().render()[0]
