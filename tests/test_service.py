"""The API against a real uvicorn server (``patentclf serve`` in a child process) on loopback,
serving the tiny bundle trained by conftest."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from patentclf.corpus.labels import CODES
from patentclf.inference.classifier import Classifier

from .conftest import toy_rows
from .servers import LiveServer

API_KEY = "test-key"
LIMITS = dict(max_text_chars=2000, max_batch=8)


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("service") / "feedback.db"
    with LiveServer(tiny_bundle, env={"PATENTCLF_API_KEY": API_KEY}, feedback_db=db, micro_batch_wait_ms=20, **LIMITS) as live:
        yield live


@pytest.fixture(scope="module")
def server_without_batching(tiny_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("service-off") / "feedback.db"
    with LiveServer(tiny_bundle, feedback_db=db, micro_batching=False, **LIMITS) as live:
        yield live


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    return Classifier.load(tiny_bundle, precision="fp32")


def assert_same_prediction(answer: dict, expected) -> None:
    assert answer["label"] == expected.label
    assert answer["label_id"] == expected.label_id
    assert answer["name"] == expected.name
    assert answer["truncated"] == expected.truncated
    assert answer["confidence"] == pytest.approx(expected.confidence, abs=1e-3)
    for code in CODES:
        assert answer["probabilities"][code] == pytest.approx(expected.probabilities[code], abs=1e-3)


# --- the happy path ----------------------------------------------------------------------------


def test_health_ready_model_and_docs(server, tiny_bundle):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/ready").json()
    assert ready["ready"] is True and ready["model_version"].startswith("model@")
    info = httpx.get(server.url + "/model").json()
    assert info["model_version"] == ready["model_version"]
    assert [label["code"] for label in info["labels"]] == list(CODES)
    assert info["data"]["train"]["labels"]["A"] > 0 and "validation" in info["metrics"]
    assert httpx.get(server.url + "/docs").status_code == 200
    paths = httpx.get(server.url + "/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/feedback", "/stats", "/metrics", "/health", "/ready", "/model"} <= set(paths)


def test_serve_says_where_its_database_is(server):
    assert f"feedback and the predictions log: {server.feedback_db}" in server.log_path.read_text()


def test_the_docs_work_offline_and_the_bare_address_leads_to_them(server):
    for page, script in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = httpx.get(server.url + page).text
        assert "cdn." not in html and "https://" not in html.split("<body")[0], f"{page} loads from another host"
        src = next(part.split('"')[0] for part in html.split('src="')[1:] if script in part.split('"')[0])
        asset = httpx.get(server.url + src)
        assert asset.status_code == 200 and len(asset.content) > 100_000, f"{src} is not served"
    landing = httpx.get(server.url + "/", follow_redirects=False)
    assert landing.status_code in (302, 307) and landing.headers["location"] == "/docs"


def test_predict_answers_the_contract_and_matches_the_classifier(server, classifier):
    text = "a turbine engine with a heating valve"
    response = httpx.post(server.url + "/predict", json={"text": text})
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) >= {
        "id",
        "label",
        "name",
        "label_id",
        "confidence",
        "probabilities",
        "truncated",
        "needs_review",
        "model_version",
    }
    assert len(answer["id"]) == 32 and int(answer["id"], 16) >= 0
    assert answer["label"] == "F"  # the toy task's F words
    # Seven words: too short to trust (the tiny bundle has no fitted rules: text checks and 0.5).
    reasons = [r["reason"] for r in answer["review_reasons"]]
    assert answer["needs_review"] and reasons == ["too_short"] + (["uncertain"] if answer["confidence"] < 0.5 else [])
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert_same_prediction(answer, classifier.predict([text])[0])


def test_batch_keeps_the_order(server, classifier):
    texts = [row["text"] for row in toy_rows(8, seed=11)]
    response = httpx.post(server.url + "/predict/batch", json={"texts": texts})
    assert response.status_code == 200
    body = response.json()
    assert len(body["predictions"]) == len(texts) and body["model_version"]
    assert len({p["id"] for p in body["predictions"]}) == len(texts)
    for answer, expected in zip(body["predictions"], classifier.predict(texts)):
        assert_same_prediction(answer, expected)


def test_text_longer_than_the_window_is_truncated_and_says_so(server):
    long_text = " ".join(["optical sensor measuring"] * 60)  # ~180 tokens: over the tiny model's 64, under 2000 chars
    answer = httpx.post(server.url + "/predict", json={"text": long_text}).json()
    assert answer["truncated"] is True
    assert httpx.post(server.url + "/predict", json={"text": "optical sensor"}).json()["truncated"] is False


def test_chunk_mode_reads_long_texts_in_windows(tiny_bundle, tmp_path):
    long_text = " ".join(["optical sensor measuring"] * 60)
    with LiveServer(tiny_bundle, feedback_db=tmp_path / "fb.db", long_text="chunk") as live:
        answer = httpx.post(live.url + "/predict", json={"text": long_text}).json()
    expected = Classifier.load(tiny_bundle, precision="fp32").predict([long_text], long_text="chunk")[0]
    assert answer["truncated"] is False and answer["chunks"] == expected.chunks > 1
    assert_same_prediction(answer, expected)


def test_compiled_service_answers_like_the_classifier(tiny_bundle, tmp_path):
    texts = ["an optical sensor measuring", "a polymer compound with a catalyst and an acid"]
    with LiveServer(tiny_bundle, feedback_db=tmp_path / "fb.db", compile=True) as live:
        answers = httpx.post(live.url + "/predict/batch", json={"texts": texts}).json()["predictions"]
    ready = next(r for r in live.log_records() if r.get("event") == "model_ready")
    assert ready["config"]["compile"] is True
    for answer, expected in zip(answers, Classifier.load(tiny_bundle, precision="fp32").predict(texts)):
        assert_same_prediction(answer, expected)


# --- bad input: a clear 4xx, never a 500 ------------------------------------------------------

BAD_PREDICT = [
    ("not JSON", b"this is not json", "application/json", 422),
    ("not UTF-8", b'{"text": "\xff\xfe"}', "application/json", 422),
    ("JSON array", b'["a text"]', "application/json", 422),
    ("missing field", b'{"txt": "a text"}', "application/json", 422),
    ("number", b'{"text": 42}', "application/json", 422),
    ("null", b'{"text": null}', "application/json", 422),
    ("list", b'{"text": ["a"]}', "application/json", 422),
    ("empty", b'{"text": ""}', "application/json", 422),
    ("whitespace", b'{"text": " \\n\\t "}', "application/json", 422),
    ("text/plain body", b"a plain text", "text/plain", 422),
    ("over max_text_chars", json.dumps({"text": "x" * 2001}).encode(), "application/json", 413),
    # A short text padded with an ignored field: only the limit on the whole body refuses it.
    ("body over the byte limit", json.dumps({"text": "a sensor", "padding": " " * 200_000}).encode(), "application/json", 413),
]

BAD_BATCH = [
    ("not a list", b'{"texts": "a text"}', 422),
    ("empty list", b'{"texts": []}', 422),
    ("an empty item", b'{"texts": ["fine", "  "]}', 422),
    ("a number item", b'{"texts": ["fine", 3]}', 422),
    ("missing field", b"{}", 422),
    ("over max_batch", json.dumps({"texts": ["a text"] * 9}).encode(), 413),
    ("an item over max_text_chars", json.dumps({"texts": ["fine", "y" * 2001]}).encode(), 413),
]


@pytest.mark.parametrize("name,body,content_type,expected", BAD_PREDICT, ids=[c[0] for c in BAD_PREDICT])
def test_bad_predict_input_gets_a_json_4xx(server, name, body, content_type, expected):
    response = httpx.post(server.url + "/predict", content=body, headers={"content-type": content_type})
    assert response.status_code == expected, response.text
    assert "detail" in response.json()


@pytest.mark.parametrize("name,body,expected", BAD_BATCH, ids=[c[0] for c in BAD_BATCH])
def test_bad_batch_input_gets_a_json_4xx(server, name, body, expected):
    response = httpx.post(server.url + "/predict/batch", content=body, headers={"content-type": "application/json"})
    assert response.status_code == expected, response.text
    assert "detail" in response.json()


BAD_OPTIONS = [
    ({"classes": 51}, "classes"),
    ({"groups": -1}, "groups"),
    ({"similar": "3"}, "similar"),
    ({"threshold": 2}, "threshold"),
    ({"sections_threshold": -0.5}, "sections_threshold"),
    ({"depth": "subgroup"}, "depth"),
    ({"limit": 3}, "limit"),
]


@pytest.mark.parametrize("options,field", BAD_OPTIONS, ids=[f for _, f in BAD_OPTIONS])
def test_a_bad_option_is_a_422_naming_the_field(server, options, field):
    for path, body in (("/predict", {"text": "a valve"}), ("/predict/batch", {"texts": ["a valve"]})):
        response = httpx.post(server.url + path, json={**body, "options": options})
        assert response.status_code == 422, response.text
        [error] = response.json()["detail"]
        assert error["loc"] == ["body", "options", field]


def test_options_are_honoured_per_request_in_shared_model_calls(tiny_hierarchy_bundle, tmp_path):
    from patentclf.inference.options import PredictOptions

    texts = [r["text"] for r in toy_rows(12, seed=5)]
    chosen = [
        {},
        {"classes": 1, "subclasses": 0},
        {"depth": "section"},
        {"threshold": 0.3, "sections_threshold": 0.0},
        {"depth": "class", "classes": 2},
        {"classes": 50, "subclasses": 50},
    ]
    bodies = [("/predict", {"text": t, "options": chosen[i % len(chosen)]}) for i, t in enumerate(texts[:10])]
    bodies.append(("/predict/batch", {"texts": texts[10:], "options": {"depth": "subclass", "subclasses": 1}}))
    db = tmp_path / "fb.db"
    with LiveServer(tiny_hierarchy_bundle, feedback_db=db, micro_batch_wait_ms=200, **LIMITS) as live:
        responses = asyncio.run(_post_all(live.url, bodies))
        metrics = httpx.get(live.url + "/metrics").text
    assert [r.status_code for r in responses] == [200] * len(bodies)
    answers = [r.json() for r in responses[:10]] + responses[10].json()["predictions"]
    options = [PredictOptions(**chosen[i % len(chosen)]) for i in range(10)] + [
        PredictOptions(depth="subclass", subclasses=1)
    ] * 2
    expected = Classifier.load(tiny_hierarchy_bundle, precision="fp32").predict(texts, options=options)
    for answer, prediction, asked in zip(answers, expected, options):
        assert_same_prediction(answer, prediction)
        assert [c["code"] for c in answer["classes"]] == [c.code for c in prediction.classes]
        assert [c["code"] for c in answer["subclasses"]] == [c.code for c in prediction.subclasses]
        assert answer["sections"] == prediction.sections
        assert [level["level"] for level in answer["levels"]] == [level.level for level in prediction.levels]
        assert len(answer["classes"]) <= asked.count("class") and len(answer["subclasses"]) <= asked.count("subclass")
    assert answers[2]["classes"] == [] and [level["level"] for level in answers[2]["levels"]] == ["section"]
    assert len(answers[5]["classes"]) > 5
    # The requests shared model calls: fewer calls than texts.
    calls = [line for line in metrics.splitlines() if line.startswith("patentclf_batch_texts_count")]
    assert calls and float(calls[0].split()[-1]) < len(texts)


def test_wrong_method_and_unknown_route_are_4xx(server):
    assert httpx.get(server.url + "/predict").status_code == 405
    assert httpx.get(server.url + "/nowhere").status_code == 404


# --- concurrency ------------------------------------------------------------------------------


async def _post_all(url: str, bodies: list[tuple[str, dict]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=64)) as client:
        return await asyncio.gather(*(client.post(url + path, json=body) for path, body in bodies))


@pytest.mark.parametrize("mode", ["micro-batching on", "micro-batching off"])
def test_many_concurrent_requests_each_get_their_own_answer(mode, request, classifier):
    live = request.getfixturevalue("server" if mode.endswith("on") else "server_without_batching")
    rows = toy_rows(48, seed=21)
    texts = [r["text"] for r in rows]
    bodies = [("/predict", {"text": t}) for t in texts[:40]] + [
        ("/predict/batch", {"texts": texts[40 + i : 42 + i]}) for i in range(0, 8, 2)
    ]
    responses = asyncio.run(_post_all(live.url, bodies))
    assert [r.status_code for r in responses] == [200] * len(bodies)
    answers = [r.json() for r in responses[:40]] + [p for r in responses[40:] for p in r.json()["predictions"]]
    expected = classifier.predict(texts)
    for answer, prediction in zip(answers, expected):
        assert_same_prediction(answer, prediction)
    assert len({a["id"] for a in answers}) == len(texts)


def test_a_full_queue_answers_503_with_retry_after(tiny_bundle, tmp_path):
    # A two-request queue and a batch that waits 3 s to fill: the first two requests sit in the
    # queue, so everything after them finds it full.
    options = dict(feedback_db=tmp_path / "fb.db", queue_size=2, micro_batch_size=64, micro_batch_wait_ms=3000, retry_after_s=2)
    with LiveServer(tiny_bundle, **options) as live:
        responses = asyncio.run(_post_all(live.url, [("/predict", {"text": f"sensor number {i}"}) for i in range(8)]))
        codes = sorted(r.status_code for r in responses)
        assert set(codes) == {200, 503}, codes
        assert codes.count(200) >= 1 and codes.count(503) >= 1
        for response in responses:
            if response.status_code == 503:
                assert response.headers["Retry-After"] == "2"
                assert "busy" in response.json()["detail"]
        # The queue drains, and the server serves again.
        assert httpx.post(live.url + "/predict", json={"text": "a sensor"}, timeout=60).status_code == 200
        metrics = httpx.get(live.url + "/metrics").text
        assert f"patentclf_queue_rejected_total {float(codes.count(503))}" in metrics


# --- logs, metrics, stats ---------------------------------------------------------------------


def test_one_json_log_line_per_request_without_the_text(server):
    secret = "a distinctive clock sensor text that must not be logged"
    response = httpx.post(server.url + "/predict", json={"text": secret}, headers={"X-Request-ID": "trace-me-123"})
    assert response.headers["X-Request-ID"] == "trace-me-123"
    lines = [r for r in server.log_records() if r.get("request_id") == "trace-me-123"]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "request" and line["route"] == "/predict" and line["status"] == 200
    assert line["latency_ms"] > 0
    assert line["labels"] == [response.json()["label"]] and line["prediction_ids"] == [response.json()["id"]]
    assert line["confidences"] == [response.json()["confidence"]]
    assert secret not in server.log_text()


def metric_samples(url: str) -> dict[tuple, float]:
    """/metrics as {(sample name, sorted label items): value}."""
    families = text_string_to_metric_families(httpx.get(url + "/metrics").text)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_metrics_count_what_happens(server):
    before = metric_samples(server.url)
    answer = httpx.post(server.url + "/predict", json={"text": "an antenna circuit"}).json()
    assert httpx.post(server.url + "/predict", json={"text": ""}).status_code == 422
    wrong = "A" if answer["label"] != "A" else "B"
    feedback = httpx.post(
        server.url + "/feedback", json={"prediction_id": answer["id"], "label": wrong}, headers={"X-API-Key": API_KEY}
    )
    assert feedback.status_code == 201
    after = metric_samples(server.url)

    def grew(name: str, **labels) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("patentclf_requests_total", method="POST", route="/predict", status="200") == 1
    assert grew("patentclf_requests_total", method="POST", route="/predict", status="422") == 1
    assert grew("patentclf_request_errors_total", route="/predict", status="422") == 1
    assert grew("patentclf_request_errors_total", route="/predict", status="200") == 0
    assert grew("patentclf_request_latency_seconds_count", route="/predict") == 2
    assert grew("patentclf_request_latency_seconds_bucket", route="/predict", le="+Inf") == 2
    assert grew("patentclf_predictions_total", label=answer["label"]) == 1
    assert sum(grew("patentclf_predictions_total", label=code) for code in CODES) == 1
    assert grew("patentclf_prediction_confidence_count") == 1
    assert grew("patentclf_prediction_confidence_sum") == pytest.approx(answer["confidence"], abs=1e-6)
    assert grew("patentclf_feedback_total", agreed="false") == 1 and grew("patentclf_feedback_total", agreed="true") == 0
    assert grew("patentclf_batch_texts_count") == 1 and grew("patentclf_batch_texts_sum") == 1
    assert grew("patentclf_inference_seconds_count") == 1
    assert after[("patentclf_queue_depth", ())] == 0


def test_stats_have_the_monitoring_shapes(server, tiny_bundle):
    httpx.post(server.url + "/predict/batch", json={"texts": ["a yarn fabric", "a polymer acid"]})
    stats = httpx.get(server.url + "/stats").json()
    assert stats["predictions_total"] >= 2
    assert sum(b["count"] for b in stats["predictions_over_time"]) == stats["predictions_total"]
    assert all(b["time"].endswith(":00:00+00:00") for b in stats["predictions_over_time"])
    assert set(stats["label_mix"]) == set(CODES) and sum(stats["label_mix"].values()) == stats["predictions_total"]
    assert set(stats["training_mix"]) == set(CODES) and stats["training_mix"]["A"] > 0 and stats["training_mix"]["Y"] == 0
    assert [b["bin"] for b in stats["confidence_histogram"]][-1] == "0.9-1.0"
    assert sum(b["count"] for b in stats["confidence_histogram"]) == stats["predictions_total"]
    assert set(stats["feedback"]) == {"total", "agreed", "disagreed", "pending", "agreement_rate"}
    # Where the data lives, for people: this server's SQLite file.
    assert stats["storage"].endswith("feedback.db") and "service" in stats["storage"]
    by_minute = httpx.get(server.url + "/stats", params={"bucket": "minute", "buckets": 5}).json()
    assert len(by_minute["predictions_over_time"]) <= 5 and by_minute["bucket"] == "minute"
    assert httpx.get(server.url + "/stats", params={"bucket": "week"}).status_code == 422
