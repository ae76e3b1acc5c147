"""Two ``patentclf serve`` replicas on one PostgreSQL database (a real server, tests/pg_server.py):
predictions on one and feedback on the other, concurrent writers on both, /stats and the export see
every replica's rows, and a SIGKILL of one replica mid-write loses nothing it acknowledged."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from typer.testing import CliRunner

from patentclf.store.feedback import FeedbackStore

from .servers import LiveServer

API_KEY = "replica-key"
HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def replicas(tiny_bundle, postgres):
    url = postgres.create_database()
    env = {"PATENTCLF_API_KEY": API_KEY, "PATENTCLF_DATABASE_URL": url}
    servers = [LiveServer(tiny_bundle, env=env) for _ in range(2)]
    # Started together: both find an empty database and migrate it, one after the other.
    errors = []
    threads = [threading.Thread(target=lambda s=s: _start(s, errors)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        yield url, servers[0], servers[1]
    finally:
        for server in servers:
            server.stop()


def _start(server: LiveServer, errors: list) -> None:
    try:
        server.start()
    except Exception as exc:  # noqa: BLE001 - reported by the fixture
        errors.append(exc)


def predict(server: LiveServer, texts: list[str]) -> list[dict]:
    response = httpx.post(server.url + "/predict/batch", json={"texts": texts}, timeout=60)
    assert response.status_code == 200
    return response.json()["predictions"]


def feedback(server: LiveServer, body: dict) -> httpx.Response:
    return httpx.post(server.url + "/feedback", json=body, headers=HEADERS, timeout=60)


def test_feedback_by_id_works_on_the_replica_that_did_not_predict(replicas):
    url, a, b = replicas
    [prediction] = predict(a, ["a polymer and an acid"])
    # Straight away: A may not have flushed its log yet, and B has never seen the id or the text.
    response = feedback(b, {"prediction_id": prediction["id"], "label": "C", "comment": "cross"})
    assert response.status_code == 201, response.text
    assert response.json()["agreed"] == (prediction["label"] == "C")
    row = FeedbackStore(url).get(response.json()["feedback_id"])
    assert (row["text"], row["predicted_label"]) == ("a polymer and an acid", prediction["label"])
    assert row["model_version"] == prediction["model_version"]
    assert feedback(b, {"prediction_id": "0" * 32, "label": "C"}).status_code == 404


def test_stats_and_export_see_every_replica(replicas, tmp_path):
    from patentclf.cli import app

    url, a, b = replicas
    before = httpx.get(a.url + "/stats").json()
    predict(a, [f"a road and a bridge {i}" for i in range(5)])
    predict(b, [f"a yarn fabric {i}" for i in range(7)])
    ids = [feedback(server, {"text": f"stats {server.port}", "label": "E"}).json()["feedback_id"] for server in (a, b)]
    deadline = time.monotonic() + 30
    while True:  # each replica writes its log about once a second
        stats = [httpx.get(server.url + "/stats").json() for server in (a, b)]
        if all(s["predictions_total"] == before["predictions_total"] + 12 for s in stats) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    for s in stats:
        assert s["predictions_total"] == before["predictions_total"] + 12
        assert s["feedback"]["total"] == before["feedback"]["total"] + 2
        assert sum(bucket["count"] for bucket in s["predictions_over_time"]) == s["predictions_total"]

    output = tmp_path / "feedback.jsonl"
    result = CliRunner().invoke(app, ["feedback", "export", "--db", url, "--output", str(output)])
    assert result.exit_code == 0, result.output
    assert {f"feedback:{i}" for i in ids} <= {json.loads(line)["source"] for line in output.read_text().splitlines()}


def test_concurrent_writers_on_both_replicas_store_each_item_once(replicas):
    url, a, b = replicas
    texts_a, texts_b = [f"a sensor clock {i}" for i in range(20)], [f"a circuit antenna {i}" for i in range(20)]
    made_on_a, made_on_b = predict(a, texts_a), predict(b, texts_b)
    # Crossed: feedback on each prediction goes to the replica that did not make it.
    jobs = [(b, p, f"crossed a{i}") for i, p in enumerate(made_on_a)] + [(a, p, f"crossed b{i}") for i, p in enumerate(made_on_b)]

    async def post_all():
        async with httpx.AsyncClient(timeout=120) as client:
            requests = [
                client.post(s.url + "/feedback", json={"prediction_id": p["id"], "label": "H", "comment": c}, headers=HEADERS)
                for s, p, c in jobs
            ]
            return await asyncio.gather(*requests)

    responses = asyncio.run(post_all())
    assert [r.status_code for r in responses] == [201] * 40
    assert len({r.json()["feedback_id"] for r in responses}) == 40
    rows = [r for r in FeedbackStore(url).rows() if (r["comment"] or "").startswith("crossed ")]
    assert sorted(r["comment"] for r in rows) == sorted(tag for _, _, tag in jobs)
    texts = {p["id"]: text for p, text in zip(made_on_a + made_on_b, texts_a + texts_b)}
    assert all(r["text"] == texts[r["prediction_id"]] for r in rows)


def test_sigkill_of_a_replica_mid_write_loses_nothing_acknowledged(replicas):
    """Runs last: it kills replica A."""
    url, a, b = replicas
    acknowledged: dict[int, str] = {}
    stop = threading.Event()

    def writer(server: LiveServer, name: str) -> None:
        i = 0
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                text = f"kill test {name} {i}"
                try:
                    response = client.post(server.url + "/feedback", json={"text": text, "label": "B"}, headers=HEADERS)
                except httpx.TransportError:
                    if server is a:
                        return  # A is gone; nothing unanswered was acknowledged
                    raise
                if response.status_code == 201:
                    acknowledged[response.json()["feedback_id"]] = text
                i += 1

    threads = [threading.Thread(target=writer, args=(server, name)) for server, name in ((a, "a"), (a, "a2"), (b, "b"))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while sum(text.startswith("kill test a") for text in acknowledged.values()) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    a.kill()  # SIGKILL while its writers are mid-request
    assert a.process.returncode == -9
    time.sleep(1.0)  # B keeps taking writes after A died
    stop.set()
    for thread in threads:
        thread.join(60)
    from_a = [i for i, text in acknowledged.items() if text.startswith("kill test a")]
    from_b = [i for i, text in acknowledged.items() if text.startswith("kill test b")]
    assert len(from_a) >= 10 and len(from_b) >= 1

    stored = {row["id"]: row["text"] for row in FeedbackStore(url).rows()}
    assert {i: stored.get(i) for i in acknowledged} == acknowledged
    assert httpx.get(b.url + "/stats").json()["feedback"]["total"] == len(stored)
    assert feedback(b, {"text": "after the kill", "label": "B"}).status_code == 201
