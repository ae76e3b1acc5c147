"""The review queue: its order measured on the shipped model's test answers (bench/review_queue.py), the
predictions log that keeps it (SQLite and PostgreSQL, the migration from 0003), and GET /feedback/queue
on a live server (keys, order, answered ones left out, a confirmation stored as a label)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from patentclf.inference.review import queue_score
from patentclf.store.database import SCHEMA_VERSION, Store, alembic_config
from patentclf.store.feedback import Feedback, FeedbackStore
from patentclf.store.monitoring import LoggedPrediction, PredictionLog, new_log_row

from .servers import LiveServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import review_queue as bench  # noqa: E402

# --- the order, measured ------------------------------------------------------------------------


def test_the_queues_score_finds_wrong_answers_far_sooner_than_random():
    rows, wrong = bench.snapshot_and_truth()
    assert len(rows) == 988 and 150 < wrong.sum() < 300
    result = bench.measure(rows, wrong, seeds=10)
    chosen = result[bench.CHOSEN]["catch"]
    draws = result["random (10 draws: mean, min-max)"]["random"]
    for share, caught, (_mean, _low, high) in zip(bench.SHARES, chosen, draws):
        assert caught >= 2 * share, f"first {share:.0%}: {caught:.1%} of the wrong answers"
        assert caught > high, "no random draw should do as well"
    assert result["perfect (every wrong answer first)"]["catch"][0] == pytest.approx(0.05 * 988 / wrong.sum(), abs=0.01)
    # The service's score orders the answers exactly as the measured one does.
    service = np.array([queue_score(r["confidence"]) for r in rows])
    assert [bench.catch_rate(service, wrong, f) for f in bench.SHARES] == chosen


def test_catch_rate_counts_the_first_rows_by_score():
    wrong = np.array([True, False, False, True, False, False, False, False, False, False])
    score = np.array([0.9, 0.8, 0.1, 0.2, 0, 0, 0, 0, 0, 0])
    assert bench.catch_rate(score, wrong, 0.10) == 0.5  # the first row: 1 of 2 wrong answers
    assert bench.catch_rate(score, wrong, 0.20) == 0.5
    assert bench.catch_rate(-score, wrong, 0.10) == 0.0


# --- the predictions log ------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return request.getfixturevalue("postgres_url")


def _row(i: int, confidence: float, *, text: str | None = None, minute: int = 0, scored: bool = True) -> LoggedPrediction:
    review = {"reasons": ["uncertain"] if confidence < 0.5 else [], "evidence_disagrees": False,
              "sections": [{"code": "G", "probability": confidence}], "levels": []}  # fmt: skip
    row = new_log_row(
        f"id{i}", model_version="m@1", label="G", confidence=confidence, latency_ms=3.0, needs_review=confidence < 0.5,
        text=text, review_score=queue_score(confidence) if scored else None, review=review if scored else None,
    )  # fmt: skip
    row.time = f"2026-12-06T10:{minute:02d}:00.000+00:00"
    return row


def test_the_queue_lists_known_texts_most_likely_wrong_first(database):
    log = PredictionLog(database, shared_texts=100)
    rows = [
        _row(1, 0.95, text="logged, sure"),
        _row(2, 0.30, text="logged, unsure"),
        _row(3, 0.60),  # shared below
        _row(4, 0.10),  # no text anywhere: cannot be reviewed
        _row(5, 0.30, text="logged, unsure, newer", minute=5),
        _row(6, 0.20, text="answered already"),
    ]
    log.add(rows, {"id3": "shared text"})
    log.flush()
    FeedbackStore(log.store).add(Feedback(text="answered already", label="H", prediction_id="id6", predicted_label="G"))
    queue = log.review_queue(10)
    assert [q["id"] for q in queue] == ["id5", "id2", "id3", "id1"]  # newest first among equal scores
    assert [q["text"] for q in queue][2] == "shared text"
    first = queue[0]
    assert first["review_score"] == pytest.approx(0.7) and first["confidence"] == 0.3 and first["needs_review"] is True
    assert first["reasons"] == ["uncertain"] and first["sections"] == [{"code": "G", "probability": 0.3}]
    assert "latency_ms" not in first and "review" not in first
    assert [q["id"] for q in log.review_queue(2)] == ["id5", "id2"]


def test_texts_held_in_memory_join_the_queue_unless_answered(database):
    log = PredictionLog(database)
    log.add([_row(1, 0.9, text="in the log"), _row(2, 0.4), _row(3, 0.2), _row(4, 0.5)])
    log.flush()
    FeedbackStore(log.store).add(Feedback(text="held, answered", label="G", prediction_id="id3", predicted_label="G"))
    held = [_row(2, 0.4, text="held"), _row(3, 0.2, text="held, answered"), _row(9, 0.45, text="held, unflushed")]
    queue = log.review_queue(10, held=held)
    assert [(q["id"], q["text"]) for q in queue] == [("id2", "held"), ("id9", "held, unflushed"), ("id1", "in the log")]
    assert [q["id"] for q in log.review_queue(1, held=held)] == ["id2"]


def test_rows_logged_before_scores_come_last(database):
    log = PredictionLog(database)
    log.add([_row(1, 0.1, text="old and unsure", scored=False), _row(2, 0.99, text="scored and sure")])
    log.flush()
    queue = log.review_queue(10)
    assert [q["id"] for q in queue] == ["id2", "id1"]
    assert queue[1]["review_score"] is None and queue[1]["reasons"] == [] and queue[1]["evidence_disagrees"] is None


def test_a_database_at_revision_0003_keeps_its_rows(database):
    from alembic import command

    old = Store(database, migrate=False)
    config = alembic_config()
    columns = "id, time, model_version, label, confidence, latency_ms, needs_review, text"
    logged = [
        ("p1", "2026-12-05T10:00:00.000+00:00", "m@1", "G", 0.95, 5.0, 0, "a logged text"),
        ("p2", "2026-12-05T10:01:00.000+00:00", "m@1", "A", 0.30, 6.0, 1, None),
    ]
    with old.write() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0003")
        names = columns.split(", ")
        conn.execute(
            sa.text(f"INSERT INTO predictions ({columns}) VALUES ({', '.join(':' + n for n in names)})"),
            [dict(zip(names, row)) for row in logged],
        )
        conn.execute(sa.text("INSERT INTO prediction_totals VALUES ('G', 9, 1, 0), ('A', 3, 1, 1)"))
    assert old.version() == "0003"
    old.dispose()

    log = PredictionLog(database)
    assert log.store.version() == SCHEMA_VERSION  # 0004 and every later revision applied
    with log.store.read() as conn:
        after = conn.execute(sa.text(f"SELECT {columns}, review_score, review FROM predictions ORDER BY id")).all()
    assert [tuple(r) for r in after] == [(*row, None, None) for row in logged]
    assert log.find("p2").confidence == 0.3 and log.stats()["predictions_total"] == 2
    log.add([_row(7, 0.5, text="new")])
    log.flush()
    assert [(q["id"], q["review_score"]) for q in log.review_queue(10)] == [("id7", 0.5), ("p1", None)]


# --- GET /feedback/queue ------------------------------------------------------------------------

KEYS = {"alice": "alice-key", "bob": "bob-key"}
ALICE, BOB = ({"X-API-Key": KEYS[name]} for name in ("alice", "bob"))


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    db = tmp_path_factory.mktemp("review-queue") / "feedback.db"
    env = {"PATENTCLF_API_KEYS": json.dumps(KEYS), "PATENTCLF_REVIEWERS": '["bob"]'}
    with LiveServer(tiny_bundle, env=env, feedback_db=db, log_flush_s=0.2) as live:
        live.db = db
        yield live


TEXTS = [
    "a turbine engine with a valve",
    "an optical sensor measuring a clock",
    "a polymer compound with an acid catalyst",
    "the device",
    "a woven fabric of yarn and paper",
]


def test_the_queue_needs_a_reviewers_key(server):
    assert httpx.get(server.url + "/feedback/queue").status_code == 401
    assert httpx.get(server.url + "/feedback/queue", headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(server.url + "/feedback/queue", headers=ALICE).status_code == 403


def test_the_queue_orders_by_confidence_and_a_confirmation_is_a_label(server):
    answers = httpx.post(server.url + "/predict/batch", json={"texts": TEXTS}, timeout=60).json()["predictions"]
    response = httpx.get(server.url + "/feedback/queue", params={"limit": 100}, headers=BOB, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "text is known" in body["scope"] and "1 - confidence" in body["order"]
    ours = {a["id"]: a for a in answers}
    items = [i for i in body["items"] if i["id"] in ours]
    assert len(items) == len(TEXTS)
    scores = [i["review_score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    for item in items:
        answer = ours[item["id"]]
        assert item["text"] in TEXTS and item["label"] == answer["label"]
        assert item["confidence"] == answer["confidence"] and item["review_score"] == pytest.approx(1 - answer["confidence"])
        assert item["reasons"] == [r["reason"] for r in answer["review_reasons"]]
        assert item["sections"][0] == {"code": answer["label"], "probability": answer["confidence"]}
        assert item["levels"][0]["code"] == answer["label"]

    # Confirm the first: POST /feedback with its own label; a correction for the second.
    first, second = items[0], items[1]
    confirmed = httpx.post(
        server.url + "/feedback", json={"prediction_id": first["id"], "label": first["label"]}, headers=BOB, timeout=30
    )
    assert confirmed.status_code == 201 and confirmed.json()["agreed"] is True
    other = "H" if second["label"] != "H" else "G"
    corrected = httpx.post(
        server.url + "/feedback", json={"prediction_id": second["id"], "codes": [f"{other}01"]}, headers=BOB, timeout=30
    )
    assert corrected.status_code == 201 and corrected.json()["agreed"] is False
    stored = {r["prediction_id"]: r for r in FeedbackStore(server.db).rows()}
    assert stored[first["id"]]["agreed"] == 1 and stored[first["id"]]["label"] == first["label"]
    assert stored[first["id"]]["text"] == first["text"]

    after = httpx.get(server.url + "/feedback/queue", params={"limit": 100}, headers=BOB, timeout=30).json()["items"]
    assert [i["id"] for i in after] == [i["id"] for i in body["items"] if i["id"] not in (first["id"], second["id"])]
    assert len(httpx.get(server.url + "/feedback/queue", params={"limit": 1}, headers=BOB).json()["items"]) == 1
    assert httpx.get(server.url + "/feedback/queue", params={"limit": 0}, headers=BOB).status_code == 422
